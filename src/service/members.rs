//! Members: registration, lookup and blocking (CONTRACT.md "Members and authentication").

use entity::{block, member};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Actor, unique_violation_or, validate};
use crate::config::Registration;
use crate::crypto;
use crate::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// A member as every API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Member")]
pub struct MemberView {
    pub id: Uuid,
    pub display_name: String,
    /// Compressed secp256k1 public key, hex.
    #[schema(example = "03e34b42d5c14ab6307efbe6d2208c3ef7a77ec69b17b26a15ea4b5dde6c8ef786")]
    pub public_key: String,
    #[schema(example = "2026-03-13T10:00:00.000Z")]
    pub created_at: String,
}

impl From<member::Model> for MemberView {
    fn from(model: member::Model) -> Self {
        Self {
            id: model.id,
            display_name: model.display_name,
            public_key: hex::encode(model.public_key),
            created_at: rfc3339(model.created_at),
        }
    }
}

/// `POST /api/members` body.
#[derive(Debug, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
pub struct RegisterMember {
    pub display_name: String,
    /// secp256k1 public key in hex, 33-byte compressed or 65-byte uncompressed.
    pub public_key: String,
}

/// Registers a new member.
pub async fn register(state: &AppState, input: RegisterMember) -> ServiceResult<MemberView> {
    if state.config.registration == Registration::Closed {
        return Err(ServiceError::forbidden(
            "Registration is closed on this server",
        ));
    }
    let display_name = validate::display_name(&input.display_name)?;
    let key_bytes = hex::decode(input.public_key.trim())
        .map_err(|_| ServiceError::validation("publicKey must be hex"))?;
    let public_key = crypto::compress_public_key(&key_bytes)
        .map_err(|_| ServiceError::validation("publicKey is not a valid secp256k1 public key"))?;
    let pending = profile_hook(state, None, "register", &display_name, None).await?;
    let result = store_new(
        state,
        chosen_name(&pending, display_name),
        public_key.to_vec(),
    )
    .await;
    super::hooks::after(state, pending).await;
    result
}

async fn store_new(
    state: &AppState,
    display_name: ServiceResult<String>,
    public_key: Vec<u8>,
) -> ServiceResult<MemberView> {
    let display_name = display_name?;
    let model = member::Model {
        id: Uuid::new_v4(),
        display_name,
        public_key,
        created_at: now_ms(),
    };
    let active = member::ActiveModel {
        id: Set(model.id),
        display_name: Set(model.display_name.clone()),
        public_key: Set(model.public_key.clone()),
        created_at: Set(model.created_at),
    };
    member::Entity::insert(active)
        .exec_without_returning(&state.db.write)
        .await
        .map_err(|err| {
            unique_violation_or(
                err,
                ServiceError::already_exists("A member with this public key already exists"),
            )
        })?;
    Ok(model.into())
}

/// `PATCH /api/members/me` body.
#[derive(Debug, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProfile {
    /// 1..=100 characters, as at registration.
    pub display_name: String,
}

/// Changes the signed-in member's display name (moderation plugins' `on_profile_change`
/// may refuse or rewrite it).
pub async fn update_profile(
    state: &AppState,
    actor: &Actor,
    input: UpdateProfile,
) -> ServiceResult<MemberView> {
    let display_name = validate::display_name(&input.display_name)?;
    let current = me(state, actor).await?;
    let pending = profile_hook(
        state,
        Some(actor.member_id),
        "update",
        &display_name,
        Some(&current.display_name),
    )
    .await?;
    let result = store_name(state, actor.member_id, chosen_name(&pending, display_name)).await;
    super::hooks::after(state, pending).await;
    result
}

async fn store_name(
    state: &AppState,
    id: Uuid,
    display_name: ServiceResult<String>,
) -> ServiceResult<MemberView> {
    let display_name = display_name?;
    member::Entity::update_many()
        .col_expr(member::Column::DisplayName, display_name.into())
        .filter(member::Column::Id.eq(id))
        .exec(&state.db.write)
        .await?;
    state.facts.forget_profile(id);
    find(&state.db.write, id)
        .await?
        .map(MemberView::from)
        .ok_or_else(|| ServiceError::unauthorized("Authentication required"))
}

/// Asks the plugins' `on_profile_change` about a display name (`kind`: `register` or
/// `update`). There is no group or channel: decisions go to the server log.
async fn profile_hook(
    state: &AppState,
    member: Option<Uuid>,
    kind: &str,
    display_name: &str,
    previous: Option<&str>,
) -> ServiceResult<super::hooks::Pending> {
    use crate::plugins::Hook;
    let scope = super::hooks::Scope {
        context: None,
        conversation: None,
        actor: member,
        target: member,
    };
    let mut params = serde_json::Map::new();
    params.insert("kind".into(), kind.into());
    params.insert("display_name".into(), display_name.into());
    if let Some(previous) = previous {
        params.insert("previous_display_name".into(), previous.into());
    }
    super::hooks::before(state, Hook::ProfileChange, scope, params).await
}

/// The name to store: the request's, or what a plugin changed it to, which must still be a
/// valid display name.
fn chosen_name(pending: &super::hooks::Pending, requested: String) -> ServiceResult<String> {
    match pending.verdict.string("display_name") {
        None => Ok(requested),
        Some(changed) => validate::display_name(changed).map_err(|err| {
            ServiceError::validation(format!(
                "A moderation plugin changed the display name: {}",
                err.public_message()
            ))
        }),
    }
}

/// Loads a member, if it exists.
pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> ServiceResult<Option<member::Model>> {
    Ok(member::Entity::find_by_id(id).one(db).await?)
}

/// Members by id, in one query (unknown ids are left out).
pub async fn find_many(db: &impl ConnectionTrait, ids: &[Uuid]) -> ServiceResult<Vec<MemberView>> {
    Ok(rows_by_ids(db, ids)
        .await?
        .into_iter()
        .map(MemberView::from)
        .collect())
}

/// Member rows by id, a statement per [`crate::db::ROWS_PER_STATEMENT`] ids (unknown ids
/// are left out).
pub async fn rows_by_ids(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> ServiceResult<Vec<member::Model>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(crate::db::ROWS_PER_STATEMENT) {
        out.extend(
            member::Entity::find()
                .filter(member::Column::Id.is_in(chunk.to_vec()))
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

/// How many of `ids` (distinct) are registered members, a count per
/// [`crate::db::ROWS_PER_STATEMENT`] ids, without loading their rows.
pub async fn count_registered(db: &impl ConnectionTrait, ids: &[Uuid]) -> ServiceResult<usize> {
    let mut found = 0u64;
    for chunk in ids.chunks(crate::db::ROWS_PER_STATEMENT) {
        found += member::Entity::find()
            .filter(member::Column::Id.is_in(chunk.to_vec()))
            .count(db)
            .await?;
    }
    Ok(usize::try_from(found).unwrap_or(usize::MAX))
}

/// The signed-in member.
pub async fn me(state: &AppState, actor: &Actor) -> ServiceResult<MemberView> {
    find(&state.db.read, actor.member_id)
        .await?
        .map(MemberView::from)
        .ok_or_else(|| ServiceError::unauthorized("Authentication required"))
}

/// Any member by id.
pub async fn get(state: &AppState, _actor: &Actor, id: Uuid) -> ServiceResult<MemberView> {
    find(&state.db.read, id)
        .await?
        .map(MemberView::from)
        .ok_or_else(|| ServiceError::not_found("Member not found"))
}

/// `{"blocked": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Blocked {
    pub blocked: bool,
}

/// `{"unblocked": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unblocked {
    pub unblocked: bool,
}

/// Blocks `target` for the actor: it can no longer send the actor direct messages.
/// Blocking twice is harmless.
pub async fn block(state: &AppState, actor: &Actor, target: Uuid) -> ServiceResult<Blocked> {
    if target == actor.member_id {
        return Err(ServiceError::validation("You cannot block yourself"));
    }
    if find(&state.db.read, target).await?.is_none() {
        return Err(ServiceError::not_found("Member not found"));
    }
    let row = block::ActiveModel {
        blocker_id: Set(actor.member_id),
        blocked_id: Set(target),
        created_at: Set(now_ms()),
    };
    block::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec_without_returning(&state.db.write)
        .await?;
    Ok(Blocked { blocked: true })
}

/// Lifts a block. Unblocking someone not blocked is harmless.
pub async fn unblock(state: &AppState, actor: &Actor, target: Uuid) -> ServiceResult<Unblocked> {
    if find(&state.db.read, target).await?.is_none() {
        return Err(ServiceError::not_found("Member not found"));
    }
    block::Entity::delete_many()
        .filter(block::Column::BlockerId.eq(actor.member_id))
        .filter(block::Column::BlockedId.eq(target))
        .exec(&state.db.write)
        .await?;
    Ok(Unblocked { unblocked: true })
}

/// Whether `blocker` has blocked `blocked`.
pub async fn has_blocked(
    db: &impl ConnectionTrait,
    blocker: Uuid,
    blocked: Uuid,
) -> ServiceResult<bool> {
    Ok(block::Entity::find_by_id((blocker, blocked))
        .one(db)
        .await?
        .is_some())
}
