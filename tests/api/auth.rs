//! Challenge, signed login, tokens and their failures.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestServer, new_keypair, sign_compact, sign_der};

async fn challenge(server: &TestServer, member: Uuid) -> String {
    let answer = server
        .post("/api/auth/challenge", None, json!({"memberId": member}))
        .await;
    let data = answer.data(200);
    let challenge = data["challenge"].as_str().expect("challenge").to_owned();
    assert_eq!(challenge.len(), 64, "32 bytes in hex");
    assert!(hex::decode(&challenge).is_ok());
    assert!(data["expiresAt"].as_str().is_some_and(|s| s.ends_with('Z')));
    challenge
}

async fn login(
    server: &TestServer,
    member: Uuid,
    challenge: &str,
    signature: &str,
) -> crate::common::Answer {
    server
        .post(
            "/api/auth/login",
            None,
            json!({"memberId": member, "challenge": challenge, "signature": signature}),
        )
        .await
}

#[tokio::test]
async fn der_and_compact_signatures_both_sign_in() {
    let server = TestServer::start().await;
    let (id, secret, _) = server.register_only("Ada").await;

    let c1 = challenge(&server, id).await;
    let answer = login(
        &server,
        id,
        &c1,
        &sign_der(&secret, &hex::decode(&c1).expect("hex")),
    )
    .await;
    let token = answer.data(200)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(answer.body["data"]["expiresAt"].is_string());
    let me = server.get("/api/members/me", Some(&token)).await;
    assert_eq!(me.data(200)["id"], id.to_string());

    let c2 = challenge(&server, id).await;
    let answer = login(
        &server,
        id,
        &c2,
        &sign_compact(&secret, &hex::decode(&c2).expect("hex")),
    )
    .await;
    let token2 = answer.data(200)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_ne!(token, token2);
}

#[tokio::test]
async fn unknown_members_get_a_challenge_too() {
    let server = TestServer::start().await;
    challenge(&server, Uuid::new_v4()).await;
    server
        .post("/api/auth/challenge", None, json!({"memberId": "nope"}))
        .await
        .error(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn every_sign_in_failure_is_the_same_401() {
    let server = TestServer::start().await;
    let (id, secret, _) = server.register_only("Ada").await;
    let (other_id, other_secret, _) = server.register_only("Bob").await;
    let (stranger_secret, _) = new_keypair();
    let mut failures: Vec<Value> = Vec::new();

    // Signed by the wrong key.
    let c = challenge(&server, id).await;
    let bytes = hex::decode(&c).expect("hex");
    let answer = login(&server, id, &c, &sign_der(&stranger_secret, &bytes)).await;
    answer.error(401, "UNAUTHORIZED");
    failures.push(answer.body);

    // A challenge is single use, even after a failed attempt.
    let answer = login(&server, id, &c, &sign_der(&secret, &bytes)).await;
    answer.error(401, "UNAUTHORIZED");
    failures.push(answer.body);

    // A successful challenge cannot be replayed.
    let c = challenge(&server, id).await;
    let sig = sign_der(&secret, &hex::decode(&c).expect("hex"));
    login(&server, id, &c, &sig).await.data(200);
    let answer = login(&server, id, &c, &sig).await;
    answer.error(401, "UNAUTHORIZED");
    failures.push(answer.body);

    // A challenge issued for another member.
    let c = challenge(&server, other_id).await;
    let answer = login(
        &server,
        id,
        &c,
        &sign_der(&secret, &hex::decode(&c).expect("hex")),
    )
    .await;
    answer.error(401, "UNAUTHORIZED");
    failures.push(answer.body);
    let _ = other_secret;

    // A challenge never issued, garbage hex, an unknown member.
    let never = hex::encode([7u8; 32]);
    let answer = login(&server, id, &never, &sign_der(&secret, &[7u8; 32])).await;
    answer.error(401, "UNAUTHORIZED");
    failures.push(answer.body);
    let c = challenge(&server, id).await;
    let answer = login(&server, id, &c, "zz-not-hex").await;
    answer.error(401, "UNAUTHORIZED");
    failures.push(answer.body);
    let unknown = Uuid::new_v4();
    let c = challenge(&server, unknown).await;
    let answer = login(
        &server,
        unknown,
        &c,
        &sign_der(&secret, &hex::decode(&c).expect("hex")),
    )
    .await;
    answer.error(401, "UNAUTHORIZED");
    failures.push(answer.body);

    for failure in &failures {
        assert_eq!(
            failure, &failures[0],
            "sign-in failures must be indistinguishable"
        );
    }
}

#[tokio::test]
async fn an_expired_challenge_fails() {
    use sea_orm::{ConnectionTrait, Statement};
    let server = TestServer::start().await;
    let (id, secret, _) = server.register_only("Ada").await;
    let c = challenge(&server, id).await;
    // Five minutes pass.
    server
        .state
        .db
        .write
        .execute_raw(Statement::from_string(
            server.state.db.backend(),
            "UPDATE auth_challenges SET expires_at = expires_at - 300001".to_owned(),
        ))
        .await
        .expect("age the challenge");
    login(
        &server,
        id,
        &c,
        &sign_der(&secret, &hex::decode(&c).expect("hex")),
    )
    .await
    .error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn bad_tokens_are_401_and_logout_revokes() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    for token in ["", "bct_nope", "garbage", &format!("{}x", ada.token)] {
        server
            .get("/api/members/me", Some(token))
            .await
            .error(401, "UNAUTHORIZED");
    }
    // Wrong scheme.
    let response = server
        .client
        .get(format!("{}/api/members/me", server.base))
        .header("authorization", format!("Basic {}", ada.token))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 401);

    // A second session survives the first one's logout.
    let second = server.sign_in(ada.id, &ada.secret).await;
    let answer = server
        .call(Method::DELETE, "/api/auth/token", Some(&ada.token), None)
        .await;
    assert_eq!(answer.data(200), &json!({"revoked": true}));
    server
        .get("/api/members/me", Some(&ada.token))
        .await
        .error(401, "UNAUTHORIZED");
    server
        .delete("/api/auth/token", Some(&ada.token))
        .await
        .error(401, "UNAUTHORIZED");
    server.get("/api/members/me", Some(&second)).await.data(200);
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    use sea_orm::{ConnectionTrait, Statement};
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let rows = server
        .state
        .db
        .read
        .query_all_raw(Statement::from_string(
            server.state.db.backend(),
            "SELECT token_hash FROM auth_tokens".to_owned(),
        ))
        .await
        .expect("query");
    assert_eq!(rows.len(), 1);
    let stored: Vec<u8> = rows[0].try_get("", "token_hash").expect("column");
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(&ada.token));
    let expected: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(ada.token.as_bytes()).into()
    };
    assert_eq!(stored, expected);
}
