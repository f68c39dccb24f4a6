//! Sign-in: challenges, signed login, bearer tokens (CONTRACT.md "Members and
//! authentication").
//!
//! Tokens are 32 random bytes shown once to the client and stored only as SHA-256 hashes.
//! Resolving a token is cached per node for at most [`CACHE_TTL_MS`]; revoking on this
//! node evicts at once. With Redis, sign-out is broadcast and waits (briefly) until every
//! node evicted the token; a node whose subscription is down asks the database every time
//! (see [`crate::cluster`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entity::{auth_challenge, auth_token};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Actor, members};
use crate::crypto;
use crate::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// How long a challenge may be answered.
pub const CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
/// How long a node trusts a cached token before asking the database again.
pub const CACHE_TTL_MS: i64 = 60 * 1000;
/// The one message for every failed sign-in.
const LOGIN_FAILED: &str = "Invalid credentials";
/// Prefix of every token, so leaked tokens are easy to recognise.
const TOKEN_PREFIX: &str = "bct_";

/// Token hash → (member, token expiry, cached until); and the sign-outs seen by this node,
/// announced to its open sockets so they close at once.
pub struct TokenCache {
    cache: quick_cache::sync::Cache<[u8; 32], (Uuid, i64, i64)>,
    revoked: tokio::sync::broadcast::Sender<[u8; 32]>,
}

/// How many sign-outs a socket may fall behind on before it re-checks its token anyway.
const REVOCATIONS_QUEUED: usize = 1024;

/// A socket's view of the sign-outs seen by this node (see [`TokenCache::revocations`]).
pub type Revocations = tokio::sync::broadcast::Receiver<[u8; 32]>;

impl TokenCache {
    pub fn new() -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(100_000),
            revoked: tokio::sync::broadcast::channel(REVOCATIONS_QUEUED).0,
        }
    }

    /// Forgets one token (revoked here or on another node) and tells this node's open
    /// sockets, so one signed in with it closes at once.
    pub fn evict(&self, hash: &[u8; 32]) {
        self.cache.remove(hash);
        // No receiver (no open socket) is fine.
        let _ = self.revoked.send(*hash);
    }

    /// The sign-outs this node sees from now on, for a long-lived connection to wait on
    /// with [`maybe_revoked`].
    pub fn revocations(&self) -> Revocations {
        self.revoked.subscribe()
    }

    /// Forgets every token: revocations may have been missed.
    pub fn clear(&self) {
        self.cache.clear();
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

/// `POST /api/auth/challenge` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeRequest {
    pub member_id: Uuid,
}

/// A challenge to sign.
#[derive(Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Challenge")]
pub struct ChallengeView {
    /// 32 random bytes, hex.
    pub challenge: String,
    pub expires_at: String,
}

/// `POST /api/auth/login` body.
#[derive(Debug, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub member_id: Uuid,
    /// The challenge, hex, as issued.
    pub challenge: String,
    /// ECDSA/secp256k1 over SHA-256 of the 32 challenge bytes: DER or 64-byte `r||s`, hex.
    pub signature: String,
}

/// A bearer token.
#[derive(Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Session")]
pub struct TokenView {
    pub token: String,
    pub expires_at: String,
}

/// `{"revoked": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub revoked: bool,
}

/// Issues a single-use challenge. Unknown member ids get one too, so the answer tells
/// nothing about who is registered.
pub async fn challenge(state: &AppState, input: ChallengeRequest) -> ServiceResult<ChallengeView> {
    let bytes = crypto::random_bytes::<32>();
    let expires_at = now_ms() + CHALLENGE_TTL_MS;
    let row = auth_challenge::ActiveModel {
        challenge: Set(bytes.to_vec()),
        member_id: Set(input.member_id),
        expires_at: Set(expires_at),
    };
    auth_challenge::Entity::insert(row)
        .exec_without_returning(&state.db.write)
        .await?;
    Ok(ChallengeView {
        challenge: hex::encode(bytes),
        expires_at: rfc3339(expires_at),
    })
}

/// Exchanges a signed challenge for a token. Every failure is the same 401.
pub async fn login(state: &AppState, input: LoginRequest) -> ServiceResult<TokenView> {
    let failed = || ServiceError::unauthorized(LOGIN_FAILED);
    let challenge = hex::decode(input.challenge.trim()).map_err(|_| failed())?;
    let signature = hex::decode(input.signature.trim()).map_err(|_| failed())?;
    if challenge.len() != 32 {
        return Err(failed());
    }
    let now = now_ms();
    // Consume the challenge whatever happens next: it is single use. Deleting with every
    // condition in one statement makes the use atomic across nodes.
    let used = auth_challenge::Entity::delete_many()
        .filter(auth_challenge::Column::Challenge.eq(challenge.clone()))
        .filter(auth_challenge::Column::MemberId.eq(input.member_id))
        .filter(auth_challenge::Column::ExpiresAt.gt(now))
        .exec(&state.db.write)
        .await?;
    if used.rows_affected != 1 {
        return Err(failed());
    }
    let member = members::find(&state.db.read, input.member_id)
        .await?
        .ok_or_else(failed)?;
    if !crypto::verify_signature(&member.public_key, &challenge, &signature) {
        return Err(failed());
    }
    let secret = crypto::random_bytes::<32>();
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let expires_at = now + state.config.token_ttl.as_millis() as i64;
    let row = auth_token::ActiveModel {
        token_hash: Set(hash_token(&token).to_vec()),
        member_id: Set(member.id),
        created_at: Set(now),
        expires_at: Set(expires_at),
    };
    auth_token::Entity::insert(row)
        .exec_without_returning(&state.db.write)
        .await?;
    Ok(TokenView {
        token,
        expires_at: rfc3339(expires_at),
    })
}

/// Resolves a bearer token to the member it belongs to.
pub async fn authenticate(state: &AppState, token: &str) -> ServiceResult<Actor> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Err(ServiceError::unauthorized("Authentication required"));
    }
    resolve(state, hash_token(token)).await
}

/// Resolves when the token `hash` may have been revoked: its sign-out was seen on this node
/// (here, or from another node through Redis), or so many sign-outs came at once that some
/// were missed. The caller then re-checks the token ([`still_valid`]). Cancel-safe.
pub async fn maybe_revoked(revocations: &mut Revocations, hash: &[u8; 32]) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match revocations.recv().await {
            Ok(revoked) if revoked == *hash => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Whether the token an actor signed in with is still valid (not revoked, not expired):
/// long-lived connections ask this periodically.
pub async fn still_valid(state: &AppState, actor: &Actor) -> ServiceResult<bool> {
    match resolve(state, actor.token_hash).await {
        Ok(_) => Ok(true),
        Err(ServiceError::Unauthorized(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

async fn resolve(state: &AppState, hash: [u8; 32]) -> ServiceResult<Actor> {
    let unauthorized = || ServiceError::unauthorized("Authentication required");
    let now = now_ms();
    // Without a live subscription to other nodes' revocations the cache may be stale.
    let trusted = state
        .cluster
        .as_ref()
        .is_none_or(|cluster| cluster.healthy());
    if let Some((member_id, expires_at, cached_until)) =
        state.tokens.cache.get(&hash).filter(|_| trusted)
    {
        if now < expires_at && now < cached_until {
            return Ok(Actor {
                member_id,
                token_hash: hash,
            });
        }
        state.tokens.cache.remove(&hash);
    }
    let row = auth_token::Entity::find_by_id(hash.to_vec())
        .one(&state.db.read)
        .await?
        .filter(|row| row.expires_at > now)
        .ok_or_else(unauthorized)?;
    state
        .tokens
        .cache
        .insert(hash, (row.member_id, row.expires_at, now + CACHE_TTL_MS));
    Ok(Actor {
        member_id: row.member_id,
        token_hash: hash,
    })
}

/// Revokes the token the actor signed in with.
pub async fn logout(state: &AppState, actor: &Actor) -> ServiceResult<Revoked> {
    auth_token::Entity::delete_by_id(actor.token_hash.to_vec())
        .exec(&state.db.write)
        .await?;
    state.tokens.evict(&actor.token_hash);
    if let Some(cluster) = &state.cluster {
        // Other nodes evict it too; waits a bounded time for their acknowledgements.
        cluster.revoke(&actor.token_hash).await;
    }
    Ok(Revoked { revoked: true })
}

/// Deletes expired challenges and tokens (run periodically).
pub async fn prune_expired(state: &AppState) -> ServiceResult<()> {
    let now = now_ms();
    auth_challenge::Entity::delete_many()
        .filter(auth_challenge::Column::ExpiresAt.lte(now))
        .exec(&state.db.write)
        .await?;
    auth_token::Entity::delete_many()
        .filter(auth_token::Column::ExpiresAt.lte(now))
        .exec(&state.db.write)
        .await?;
    Ok(())
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
