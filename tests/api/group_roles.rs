//! The permission matrix: every role against every action and every target rank, as a
//! table. Expected outcomes are written out, not computed from the server's rules.

use serde_json::json;

use crate::common::{TestMember, TestServer};

const ROLES: [&str; 4] = ["member", "moderator", "admin", "owner"];

/// (actor role, target role) → whether the action succeeds.
/// Remove needs MANAGE_MEMBERS (admin, owner); mute and deleting another's message need
/// MUTE_MEMBERS / DELETE_ANY_MESSAGE (moderator and up); all need a strictly higher rank.
fn expected(action: &str, actor: &str, target: &str) -> bool {
    let rank = |r: &str| ROLES.iter().position(|x| *x == r).expect("role");
    let outranks = rank(actor) > rank(target);
    match action {
        "remove" => matches!(actor, "admin" | "owner") && outranks,
        "mute" | "delete_message" => matches!(actor, "moderator" | "admin" | "owner") && outranks,
        _ => unreachable!(),
    }
}

/// Who may assign which role to whom: (actor, target's current role, new role).
const ASSIGN_ALLOWED: &[(&str, &str, &str)] = &[
    ("owner", "member", "member"),
    ("owner", "member", "moderator"),
    ("owner", "member", "admin"),
    ("owner", "member", "owner"),
    ("owner", "moderator", "member"),
    ("owner", "moderator", "moderator"),
    ("owner", "moderator", "admin"),
    ("owner", "moderator", "owner"),
    ("owner", "admin", "member"),
    ("owner", "admin", "moderator"),
    ("owner", "admin", "admin"),
    ("owner", "admin", "owner"),
    ("admin", "member", "member"),
    ("admin", "member", "moderator"),
    ("admin", "moderator", "member"),
    ("admin", "moderator", "moderator"),
];

struct Cast {
    owner: TestMember,
    actor: TestMember,
    target: TestMember,
}

/// A fresh group where `actor` and `target` hold the given roles.
async fn setup(
    server: &TestServer,
    cast: &Cast,
    actor_role: &str,
    target_role: &str,
) -> (String, TestMember, TestMember) {
    let actor = if actor_role == "owner" {
        cast.owner.clone()
    } else {
        cast.actor.clone()
    };
    let target = if target_role == "owner" {
        cast.owner.clone()
    } else {
        cast.target.clone()
    };
    let group = server
        .group(&cast.owner, "Matrix", &[&cast.actor, &cast.target])
        .await;
    if actor_role != "owner" && actor_role != "member" {
        server
            .set_role(&cast.owner, &group, &actor, actor_role)
            .await;
    }
    if target_role != "owner" && target_role != "member" {
        server
            .set_role(&cast.owner, &group, &target, target_role)
            .await;
    }
    (group, actor, target)
}

#[tokio::test]
async fn permission_matrix_for_member_actions() {
    let server = TestServer::start().await;
    let cast = Cast {
        owner: server.member("Owner").await,
        actor: server.member("Actor").await,
        target: server.member("Target").await,
    };
    for actor_role in ROLES {
        for target_role in ROLES {
            if actor_role == "owner" && target_role == "owner" {
                continue; // the same person
            }
            let (group, actor, target) = setup(&server, &cast, actor_role, target_role).await;
            let base = format!("/api/groups/{group}");
            let case = format!("{actor_role} on {target_role}");

            let message = server
                .group_message(&target, &group, "target's words")
                .await;
            let answer = server
                .post(
                    &format!("{base}/mute/{}", target.id),
                    Some(&actor.token),
                    json!({"durationMs": 1000}),
                )
                .await;
            check(
                &answer,
                expected("mute", actor_role, target_role),
                &format!("mute: {case}"),
            );

            let answer = server
                .delete(
                    &format!("{base}/messages/{}", message["id"].as_str().expect("id")),
                    Some(&actor.token),
                )
                .await;
            check(
                &answer,
                expected("delete_message", actor_role, target_role),
                &format!("delete: {case}"),
            );

            let answer = server
                .delete(&format!("{base}/members/{}", target.id), Some(&actor.token))
                .await;
            check(
                &answer,
                expected("remove", actor_role, target_role),
                &format!("remove: {case}"),
            );
        }
    }
}

#[tokio::test]
async fn permission_matrix_for_role_assignment() {
    let server = TestServer::start().await;
    let cast = Cast {
        owner: server.member("Owner").await,
        actor: server.member("Actor").await,
        target: server.member("Target").await,
    };
    for actor_role in ROLES {
        for target_role in ROLES {
            if actor_role == "owner" && target_role == "owner" {
                continue;
            }
            for new_role in ROLES {
                let (group, actor, target) = setup(&server, &cast, actor_role, target_role).await;
                let answer = server
                    .put(
                        &format!("/api/groups/{group}/roles/{}", target.id),
                        Some(&actor.token),
                        json!({"role": new_role}),
                    )
                    .await;
                let allowed = ASSIGN_ALLOWED.contains(&(actor_role, target_role, new_role));
                let case = format!("{actor_role} makes {target_role} {new_role}");
                check(&answer, allowed, &case);
                if allowed {
                    assert_eq!(
                        answer.body["data"],
                        json!({"memberId": target.id, "role": new_role}),
                        "{case}"
                    );
                    let meta = server
                        .get(&format!("/api/groups/{group}"), Some(&cast.owner.token))
                        .await;
                    let members = meta.data(200)["members"]
                        .as_array()
                        .expect("members")
                        .clone();
                    let owners = members.iter().filter(|m| m["role"] == "owner").count();
                    assert_eq!(owners, 1, "{case}: always exactly one owner");
                    if new_role == "owner" {
                        let old = members
                            .iter()
                            .find(|m| m["memberId"] == actor.id.to_string())
                            .expect("old owner");
                        assert_eq!(old["role"], "admin", "{case}: the old owner becomes admin");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn role_requests_are_validated() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let eve = server.member("Eve").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let path = format!("/api/groups/{group}/roles/{}", bob.id);
    for body in [json!({}), json!({"role": "king"}), json!({"role": 1})] {
        server
            .put(&path, Some(&ada.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .put(
            &format!("/api/groups/{group}/roles/{}", eve.id),
            Some(&ada.token),
            json!({"role": "admin"}),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .put(
            &format!("/api/groups/{group}/roles/{}", ada.id),
            Some(&ada.token),
            json!({"role": "admin"}),
        )
        .await
        .error(403, "FORBIDDEN");
    let answer = server
        .put(&path, Some(&ada.token), json!({"role": "moderator"}))
        .await;
    assert_eq!(answer.body["message"], "Role assigned");
}

#[track_caller]
fn check(answer: &crate::common::Answer, allowed: bool, case: &str) {
    if allowed {
        assert_eq!(
            answer.status.as_u16(),
            200,
            "{case} should succeed: {}",
            answer.body
        );
    } else {
        assert_eq!(
            answer.status.as_u16(),
            403,
            "{case} should be forbidden: {}",
            answer.body
        );
        assert_eq!(answer.body["error"]["code"], "FORBIDDEN", "{case}");
    }
}
