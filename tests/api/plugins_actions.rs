//! Moderation plugins' actions, carried out by `run_actions` as the service layer's hooks do
//! after a hook: what members see (refusals, history, events, keys), and the audit log.

use std::time::Duration;

use brightchat::plugins::{PlannedAction, QueuedAction};
use brightchat::service::contexts::Kind;
use brightchat::service::hooks::Scope;
use brightchat::service::moderation::run_actions;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::common::{TestMember, TestServer, WsClient};

const PLUGIN: &str = "20_guard";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn now_ms() -> i64 {
    brightchat::time::now_ms()
}

fn uuid(id: &str) -> Uuid {
    id.parse().expect("a uuid")
}

/// Runs `actions` of `plugin` in a group or channel, as `hooks::after` does.
async fn act_as(
    server: &TestServer,
    plugin: &str,
    kind: Kind,
    id: &str,
    actions: Vec<PlannedAction>,
) {
    let scope = Scope::context(kind, uuid(id), Uuid::new_v4(), None);
    let queued = actions
        .into_iter()
        .map(|action| QueuedAction {
            plugin: plugin.to_owned(),
            simulated: false,
            action,
        })
        .collect();
    run_actions(&server.state, &scope, queued).await;
}

async fn act(server: &TestServer, kind: Kind, id: &str, actions: Vec<PlannedAction>) {
    act_as(server, PLUGIN, kind, id, actions).await;
}

/// A public channel owned by `owner` that `members` joined.
async fn channel_with(
    server: &TestServer,
    owner: &TestMember,
    name: &str,
    members: &[&TestMember],
) -> String {
    let id = server.channel(owner, name, "public", true).await;
    for member in members {
        server.join(member, &id).await;
    }
    id
}

async fn set_channel_role(
    server: &TestServer,
    owner: &TestMember,
    id: &str,
    member: &TestMember,
    role: &str,
) {
    server
        .put(
            &format!("/api/channels/{id}/roles/{}", member.id),
            Some(&owner.token),
            json!({"role": role}),
        )
        .await
        .data(200);
}

/// The audit log as the owner reads it, newest first.
async fn audit(server: &TestServer, owner: &TestMember, base: &str) -> Vec<Value> {
    server
        .get(&format!("{base}/audit?limit=100"), Some(&owner.token))
        .await
        .data(200)["items"]
        .as_array()
        .expect("items")
        .clone()
}

/// The plugin's audit lines of `action`, newest first.
fn by_plugin(entries: &[Value], action: &str) -> Vec<Value> {
    entries
        .iter()
        .filter(|e| e["plugin"] == PLUGIN && e["action"] == action)
        .cloned()
        .collect()
}

/// Checks what every plugin action's audit line shares.
#[track_caller]
fn assert_plugin_line(entry: &Value, outcome: &str) {
    assert_eq!(entry["actorId"], Value::Null, "{entry}");
    assert_eq!(entry["plugin"], PLUGIN, "{entry}");
    assert_eq!(entry["outcome"], outcome, "{entry}");
}

/// Frames of `event_type` arriving within `wait`.
async fn frames_of(ws: &mut WsClient, event_type: &str, wait: Duration) -> Vec<Value> {
    ws.drain(wait)
        .await
        .into_iter()
        .filter(|f| f["type"] == event_type)
        .collect()
}

async fn history(server: &TestServer, member: &TestMember, base: &str) -> Vec<Value> {
    server
        .get(&format!("{base}/messages?limit=100"), Some(&member.token))
        .await
        .data(200)["items"]
        .as_array()
        .expect("items")
        .clone()
}

fn member_ids(view: &Value) -> Vec<String> {
    view["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["memberId"].as_str().expect("memberId").to_owned())
        .collect()
}

#[tokio::test]
async fn a_mute_silences_the_member_and_is_audited_with_the_plugin_and_no_actor() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = channel_with(&server, &ada, "muting", &[&bob]).await;
    let base = format!("/api/channels/{id}");
    let mut bob_ws = server.ws(&bob).await;

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::MuteMember {
            member_id: bob.id,
            duration_ms: 60_000,
            reason: "flooding".into(),
        }],
    )
    .await;

    let muted = bob_ws.expect("communication:member_muted").await;
    assert_eq!(muted["data"]["memberId"], bob.id.to_string());
    assert!(muted["data"]["until"].is_string(), "{muted}");
    server
        .post(
            &format!("{base}/messages"),
            Some(&bob.token),
            json!({"content": "hello?"}),
        )
        .await
        .error(403, "FORBIDDEN");
    let view = server.get(&base, Some(&ada.token)).await.data(200).clone();
    let entry = view["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["memberId"] == bob.id.to_string())
        .expect("bob")
        .clone();
    assert!(entry["mutedUntil"].is_string(), "{entry}");

    // The mute belongs to the member: leaving and joining again does not lift it.
    server
        .post(&format!("{base}/leave"), Some(&bob.token), json!({}))
        .await
        .data(200);
    server
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
    server
        .post(
            &format!("{base}/messages"),
            Some(&bob.token),
            json!({"content": "back"}),
        )
        .await
        .error(403, "FORBIDDEN");

    let lines = by_plugin(&audit(&server, &ada, &base).await, "mute");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_plugin_line(&lines[0], "allowed");
    assert_eq!(lines[0]["targetId"], bob.id.to_string());
    let reason = lines[0]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("until ") && reason.ends_with(": flooding"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_kick_removes_the_member_rotates_the_key_and_tells_the_member() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let id = channel_with(&server, &ada, "kicking", &[&bob, &cat]).await;
    let base = format!("/api/channels/{id}");
    let before = server.get(&base, Some(&ada.token)).await.data(200)["keyEpoch"]
        .as_i64()
        .expect("keyEpoch");
    let mut bob_ws = server.ws(&bob).await;
    let mut ada_ws = server.ws(&ada).await;

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::KickMember {
            member_id: bob.id,
            reason: "raid account".into(),
        }],
    )
    .await;

    let kicked = bob_ws.expect("communication:member_kicked").await;
    assert_eq!(kicked["data"]["memberId"], bob.id.to_string());
    let rotated = ada_ws.expect("communication:key_rotated").await;
    let view = server.get(&base, Some(&ada.token)).await.data(200).clone();
    assert_eq!(view["keyEpoch"].as_i64(), Some(before + 1));
    assert_eq!(rotated["data"]["epoch"].as_i64(), Some(before + 1));
    assert!(!member_ids(&view).contains(&bob.id.to_string()));
    server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    // Bob holds no key of the new epoch; Cat does.
    let cat_keys = crate::common::member_keys(&server, &cat, &base).await;
    assert!(cat_keys.contains_key(&(before + 1)));

    let lines = by_plugin(&audit(&server, &ada, &base).await, "kick");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_plugin_line(&lines[0], "allowed");
    assert_eq!(lines[0]["targetId"], bob.id.to_string());
    assert_eq!(lines[0]["reason"], "raid account");

    // In a group it is a removal.
    let group = server.group(&ada, "Crew", &[&bob, &cat]).await;
    let gbase = format!("/api/groups/{group}");
    act(
        &server,
        Kind::Group,
        &group,
        vec![PlannedAction::KickMember {
            member_id: cat.id,
            reason: String::new(),
        }],
    )
    .await;
    let view = server.get(&gbase, Some(&ada.token)).await.data(200).clone();
    assert!(!member_ids(&view).contains(&cat.id.to_string()));
    assert_eq!(view["keyEpoch"], 2);
    let lines = by_plugin(&audit(&server, &ada, &gbase).await, "remove");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_plugin_line(&lines[0], "allowed");
    assert_eq!(lines[0]["reason"], Value::Null);
}

#[tokio::test]
async fn deleting_a_message_removes_it_from_history_and_announces_it() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mo = server.member("Mo").await;
    let id = channel_with(&server, &ada, "deleting", &[&bob, &mo]).await;
    set_channel_role(&server, &ada, &id, &mo, "moderator").await;
    let other = channel_with(&server, &ada, "elsewhere", &[&bob]).await;
    let base = format!("/api/channels/{id}");
    let spam = server.channel_message(&bob, &id, "buy now").await;
    let kept = server.channel_message(&bob, &id, "sorry").await;
    let moderators = server.channel_message(&mo, &id, "stop that").await;
    let elsewhere = server.channel_message(&bob, &other, "buy now").await;
    let mut ada_ws = server.ws(&ada).await;
    let message = |m: &Value| uuid(m["id"].as_str().expect("id"));

    act(
        &server,
        Kind::Channel,
        &id,
        vec![
            PlannedAction::DeleteMessage {
                message_id: message(&spam),
                reason: "spam".into(),
            },
            // A message of another channel, and one by a moderator: refused.
            PlannedAction::DeleteMessage {
                message_id: message(&elsewhere),
                reason: "spam".into(),
            },
            PlannedAction::DeleteMessage {
                message_id: message(&moderators),
                reason: "spam".into(),
            },
        ],
    )
    .await;

    let deleted = ada_ws.expect("communication:message_deleted").await;
    assert_eq!(deleted["data"]["messageId"], spam["id"]);
    let ids: Vec<Value> = history(&server, &ada, &base)
        .await
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, vec![kept["id"].clone(), moderators["id"].clone()]);
    assert_eq!(
        history(&server, &ada, &format!("/api/channels/{other}"))
            .await
            .len(),
        1
    );

    let entries = audit(&server, &ada, &base).await;
    let lines = by_plugin(&entries, "message_delete");
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Newest first: the moderator's message, the other channel's, then the spam.
    assert_plugin_line(&lines[2], "allowed");
    assert_eq!(lines[2]["targetId"], bob.id.to_string());
    assert_eq!(lines[2]["reason"], "spam");
    assert_plugin_line(&lines[1], "denied");
    assert_eq!(lines[1]["reason"], "Message not found");
    assert_plugin_line(&lines[0], "denied");
    assert_eq!(lines[0]["reason"], "A plugin can only act on plain members");
}

#[tokio::test]
async fn a_purge_deletes_the_members_recent_messages_with_one_event_each() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let id = channel_with(&server, &ada, "purging", &[&bob, &cat]).await;
    let base = format!("/api/channels/{id}");
    let mut spam = Vec::new();
    for n in 0..3 {
        spam.push(
            server
                .channel_message(&bob, &id, &format!("spam {n}"))
                .await,
        );
    }
    let cats = server.channel_message(&cat, &id, "what is this").await;
    let mut ada_ws = server.ws(&ada).await;

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::PurgeMemberMessages {
            member_id: bob.id,
            within_ms: 60_000,
            reason: "spam wave".into(),
        }],
    )
    .await;

    let deleted: Vec<Value> = frames_of(
        &mut ada_ws,
        "communication:message_deleted",
        Duration::from_millis(1_000),
    )
    .await
    .iter()
    .map(|f| f["data"]["messageId"].clone())
    .collect();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    for message in &spam {
        assert!(deleted.contains(&message["id"]), "{deleted:?}");
    }
    let left = history(&server, &ada, &base).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], cats["id"]);
    let lines = by_plugin(&audit(&server, &ada, &base).await, "purge");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_plugin_line(&lines[0], "allowed");
    assert_eq!(lines[0]["targetId"], bob.id.to_string());
    assert_eq!(lines[0]["reason"], "3 messages deleted: spam wave");
}

#[tokio::test]
async fn a_purge_reaches_back_24_hours_and_200_messages_at_most() {
    use entity::context_message;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = channel_with(&server, &ada, "bounded", &[&bob]).await;
    let base = format!("/api/channels/{id}");
    // A message from two days ago (sent now, dated back in the database).
    let old = server.channel_message(&bob, &id, "long ago").await;
    context_message::Entity::update_many()
        .col_expr(
            context_message::Column::CreatedAt,
            (now_ms() - 2 * DAY_MS).into(),
        )
        .filter(context_message::Column::Id.eq(uuid(old["id"].as_str().expect("id"))))
        .exec(&server.state.db.write)
        .await
        .expect("date the message back");
    let mut recent = Vec::new();
    for n in 0..201 {
        recent.push(
            server
                .channel_message(&bob, &id, &format!("flood {n}"))
                .await,
        );
    }

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::PurgeMemberMessages {
            member_id: bob.id,
            within_ms: 3 * DAY_MS,
            reason: String::new(),
        }],
    )
    .await;

    // The newest 200 went; the oldest recent one and the old one stay.
    let ids: Vec<Value> = history(&server, &ada, &base)
        .await
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, vec![old["id"].clone(), recent[0]["id"].clone()]);
    let lines = by_plugin(&audit(&server, &ada, &base).await, "purge");
    assert_eq!(lines[0]["reason"], "200 messages deleted");

    // A second purge takes the rest within 24 h, and not the old one.
    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::PurgeMemberMessages {
            member_id: bob.id,
            within_ms: 3 * DAY_MS,
            reason: String::new(),
        }],
    )
    .await;
    let ids: Vec<Value> = history(&server, &ada, &base)
        .await
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, vec![old["id"].clone()]);
    let lines = by_plugin(&audit(&server, &ada, &base).await, "purge");
    assert_eq!(lines[0]["reason"], "1 message deleted");
}

#[tokio::test]
async fn a_locked_channel_refuses_joins_and_redemptions_until_the_owner_lifts_it() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let dan = server.member("Dan").await;
    let id = channel_with(&server, &ada, "raided", &[&bob]).await;
    set_channel_role(&server, &ada, &id, &bob, "admin").await;
    let base = format!("/api/channels/{id}");
    let token = server.invite(&ada, &id, json!({"maxUses": 1})).await;
    let mut ada_ws = server.ws(&ada).await;

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::LockContext {
            until_ms: now_ms() + 3_600_000,
            reason: "raid".into(),
        }],
    )
    .await;

    let changed = ada_ws.expect("communication:restrictions_changed").await;
    assert!(changed["data"]["lockedUntil"].is_string(), "{changed}");
    assert_eq!(changed["data"]["lockReason"], "raid");
    let join = server
        .post(&format!("{base}/join"), Some(&cat.token), json!({}))
        .await;
    join.error(403, "FORBIDDEN");
    let message = join.body["error"]["message"].as_str().expect("message");
    assert!(message.contains("locked until"), "{message}");
    let redeem_path = format!("{base}/invites/{token}/redeem");
    server
        .post(&redeem_path, Some(&dan.token), json!({}))
        .await
        .error(403, "FORBIDDEN");

    // Only the owner lifts it.
    server
        .delete(&format!("{base}/lock"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .delete(&format!("{base}/lock"), Some(&cat.token))
        .await
        .error(403, "FORBIDDEN");
    let lifted = server
        .delete(&format!("{base}/lock"), Some(&ada.token))
        .await;
    assert_eq!(lifted.data(200), &json!({"unlocked": true}));
    let changed = ada_ws.expect("communication:restrictions_changed").await;
    assert_eq!(changed["data"]["lockedUntil"], Value::Null);

    server
        .post(&format!("{base}/join"), Some(&cat.token), json!({}))
        .await
        .data(200);
    // The refused redemption used nothing up.
    server
        .post(&redeem_path, Some(&dan.token), json!({}))
        .await
        .data(200);

    let entries = audit(&server, &ada, &base).await;
    let locks: Vec<&Value> = entries.iter().filter(|e| e["action"] == "lock").collect();
    assert_eq!(locks.len(), 2, "{locks:?}");
    assert_eq!(locks[0]["actorId"], ada.id.to_string());
    assert_eq!(locks[0]["reason"], "lifted");
    assert_eq!(locks[0]["plugin"], Value::Null);
    assert_eq!(locks[0]["outcome"], "allowed");
    assert_plugin_line(locks[1], "allowed");
    let reason = locks[1]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("until ") && reason.ends_with(": raid"),
        "{reason}"
    );

    // Lifting again changes nothing and records nothing; GraphQL lifts too.
    server
        .delete(&format!("{base}/lock"), Some(&ada.token))
        .await
        .data(200);
    assert_eq!(audit(&server, &ada, &base).await.len(), entries.len());
    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::LockContext {
            until_ms: now_ms() + 3_600_000,
            reason: "raid".into(),
        }],
    )
    .await;
    let eve = server.member("Eve").await;
    server
        .post(&format!("{base}/join"), Some(&eve.token), json!({}))
        .await
        .error(403, "FORBIDDEN");
    let answer = server
        .graphql(
            Some(&ada.token),
            "mutation($id: UUID!) { unlockChannel(channelId: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(answer["data"]["unlockChannel"], true, "{answer}");
    server
        .post(&format!("{base}/join"), Some(&eve.token), json!({}))
        .await
        .data(200);
}

#[tokio::test]
async fn an_invisible_channels_lock_is_not_found_by_outsiders() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let eve = server.member("Eve").await;
    let id = server.channel(&ada, "hidden", "invisible", true).await;
    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::LockContext {
            until_ms: now_ms() + 60_000,
            reason: String::new(),
        }],
    )
    .await;
    server
        .delete(&format!("/api/channels/{id}/lock"), Some(&eve.token))
        .await
        .error(404, "NOT_FOUND");
    let answer = server
        .graphql(
            Some(&eve.token),
            "mutation($id: UUID!) { unlockChannel(channelId: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        crate::common::gql_code(&answer).as_deref(),
        Some("NOT_FOUND")
    );
}

#[tokio::test]
async fn a_locked_group_takes_new_members_from_its_owner_only() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let dan = server.member("Dan").await;
    let group = server.group(&ada, "Locked", &[&bob]).await;
    server.set_role(&ada, &group, &bob, "admin").await;
    let base = format!("/api/groups/{group}");

    act(
        &server,
        Kind::Group,
        &group,
        vec![PlannedAction::LockContext {
            until_ms: now_ms() + 3_600_000,
            reason: "raid".into(),
        }],
    )
    .await;

    let refused = server
        .post(
            &format!("{base}/members"),
            Some(&bob.token),
            json!({"memberIds": [cat.id]}),
        )
        .await;
    refused.error(403, "FORBIDDEN");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("locked until")),
        "{}",
        refused.body
    );
    server
        .post(
            &format!("{base}/members"),
            Some(&ada.token),
            json!({"memberIds": [cat.id]}),
        )
        .await
        .data(200);
    server
        .delete(&format!("{base}/lock"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    let answer = server
        .graphql(
            Some(&ada.token),
            "mutation($id: UUID!) { unlockGroup(groupId: $id) }",
            json!({"id": group}),
        )
        .await;
    assert_eq!(answer["data"]["unlockGroup"], true, "{answer}");
    server
        .post(
            &format!("{base}/members"),
            Some(&bob.token),
            json!({"memberIds": [dan.id]}),
        )
        .await
        .data(200);
    let entries = audit(&server, &ada, &base).await;
    assert_eq!(entries[0]["action"], "lock");
    assert_eq!(entries[0]["reason"], "lifted");
    assert_eq!(entries[0]["actorId"], ada.id.to_string());
}

/// Sends a message and returns the raw response (for its headers).
async fn send_raw(server: &TestServer, member: &TestMember, base: &str) -> reqwest::Response {
    server
        .client
        .post(format!("{}{base}/messages", server.base))
        .bearer_auth(&member.token)
        .json(&json!({"content": "hello"}))
        .send()
        .await
        .expect("the server answers")
}

#[tokio::test]
async fn slow_mode_answers_429_with_retry_after_and_spares_moderators() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mo = server.member("Mo").await;
    let id = channel_with(&server, &ada, "slow", &[&bob, &mo]).await;
    set_channel_role(&server, &ada, &id, &mo, "moderator").await;
    let base = format!("/api/channels/{id}");
    let mut bob_ws = server.ws(&bob).await;

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::SetSlowMode {
            seconds: 60,
            until_ms: now_ms() + 600_000,
        }],
    )
    .await;
    let changed = bob_ws.expect("communication:restrictions_changed").await;
    assert_eq!(changed["data"]["slowModeSeconds"], 60);
    assert!(changed["data"]["slowModeUntil"].is_string(), "{changed}");

    assert_eq!(send_raw(&server, &bob, &base).await.status(), 201);
    let refused = send_raw(&server, &bob, &base).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("text")
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    for member in [&mo, &mo, &ada, &ada] {
        assert_eq!(send_raw(&server, member, &base).await.status(), 201);
    }

    // 0 seconds lifts it.
    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::SetSlowMode {
            seconds: 0,
            until_ms: now_ms(),
        }],
    )
    .await;
    assert_eq!(send_raw(&server, &bob, &base).await.status(), 201);
    assert_eq!(send_raw(&server, &bob, &base).await.status(), 201);

    let lines = by_plugin(&audit(&server, &ada, &base).await, "slow_mode");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_plugin_line(&lines[0], "allowed");
    assert_eq!(lines[0]["reason"], "lifted");
    assert!(
        lines[1]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("60 s between messages until ")),
        "{}",
        lines[1]
    );
}

#[tokio::test]
async fn a_revoked_invite_is_not_found_and_only_this_channels_invites_can_go() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let dan = server.member("Dan").await;
    let id = server.channel(&ada, "invites", "private", true).await;
    let other = server.channel(&ada, "others", "private", true).await;
    let created = server
        .post(
            &format!("/api/channels/{id}/invites"),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(201)
        .clone();
    let token = created["token"].as_str().expect("token");
    let invite_id = hex::encode(Sha256::digest(token.as_bytes()));
    assert_eq!(created["id"], invite_id);
    let kept = server.invite(&ada, &id, json!({})).await;
    let kept_id = hex::encode(Sha256::digest(kept.as_bytes()));

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::RevokeInvite {
            invite_id: invite_id.clone(),
            reason: "leaked".into(),
        }],
    )
    .await;
    // From another channel, the other invite cannot be revoked.
    act(
        &server,
        Kind::Channel,
        &other,
        vec![PlannedAction::RevokeInvite {
            invite_id: kept_id,
            reason: "leaked".into(),
        }],
    )
    .await;

    server
        .post(
            &format!("/api/channels/{id}/invites/{token}/redeem"),
            Some(&dan.token),
            json!({}),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .post(
            &format!("/api/channels/{id}/invites/{kept}/redeem"),
            Some(&dan.token),
            json!({}),
        )
        .await
        .data(200);
    let lines = by_plugin(
        &audit(&server, &ada, &format!("/api/channels/{id}")).await,
        "invite_revoke",
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_plugin_line(&lines[0], "allowed");
    assert_eq!(lines[0]["reason"], "leaked");
    let lines = by_plugin(
        &audit(&server, &ada, &format!("/api/channels/{other}")).await,
        "invite_revoke",
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_plugin_line(&lines[0], "denied");

    // GraphQL shows the id too.
    let answer = server
        .graphql(
            Some(&ada.token),
            "mutation($id: UUID!) { createInvite(channelId: $id) { id token } }",
            json!({"id": id}),
        )
        .await;
    let invite = &answer["data"]["createInvite"];
    let token = invite["token"].as_str().expect("token");
    assert_eq!(
        invite["id"],
        hex::encode(Sha256::digest(token.as_bytes())),
        "{answer}"
    );
}

/// A channel with an owner (Ada), a moderator (Mo), a plain member (Pat) and a target
/// (Sam), each watching the event stream.
struct Staffed {
    server: TestServer,
    id: String,
    ada: TestMember,
    mo: TestMember,
    pat: TestMember,
    sam: TestMember,
}

async fn staffed() -> Staffed {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let mo = server.member("Mo").await;
    let pat = server.member("Pat").await;
    let sam = server.member("Sam").await;
    let id = channel_with(&server, &ada, "staffed", &[&mo, &pat, &sam]).await;
    set_channel_role(&server, &ada, &id, &mo, "moderator").await;
    Staffed {
        server,
        id,
        ada,
        mo,
        pat,
        sam,
    }
}

#[tokio::test]
async fn an_alert_reaches_moderators_and_above_and_no_one_else() {
    let Staffed {
        server,
        id,
        ada,
        mo,
        pat,
        sam,
    } = staffed().await;
    let mut ada_ws = server.ws(&ada).await;
    let mut mo_ws = server.ws(&mo).await;
    let mut pat_ws = server.ws(&pat).await;
    let mut sam_ws = server.ws(&sam).await;

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::NotifyModerators {
            text: "Possible raid".into(),
            member_id: Some(sam.id),
        }],
    )
    .await;

    for ws in [&mut mo_ws, &mut ada_ws] {
        let alert = ws.expect("communication:moderation_alert").await;
        assert_eq!(alert["contextType"], "channel");
        assert_eq!(alert["contextId"], id);
        assert_eq!(
            alert["data"],
            json!({"plugin": PLUGIN, "text": "Possible raid", "memberId": sam.id})
        );
    }
    for ws in [&mut pat_ws, &mut sam_ws] {
        let alerts = frames_of(
            ws,
            "communication:moderation_alert",
            Duration::from_millis(500),
        )
        .await;
        assert!(alerts.is_empty(), "{alerts:?}");
    }
    let lines = by_plugin(
        &audit(&server, &ada, &format!("/api/channels/{id}")).await,
        "alert",
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_plugin_line(&lines[0], "allowed");
    assert_eq!(lines[0]["targetId"], sam.id.to_string());
    assert_eq!(lines[0]["reason"], "Possible raid");
}

#[tokio::test]
async fn a_warning_reaches_its_target_alone() {
    let Staffed {
        server,
        id,
        ada,
        mo,
        pat,
        sam,
    } = staffed().await;
    let mut ada_ws = server.ws(&ada).await;
    let mut mo_ws = server.ws(&mo).await;
    let mut pat_ws = server.ws(&pat).await;
    let mut sam_ws = server.ws(&sam).await;

    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::WarnMember {
            member_id: sam.id,
            text: "No links, please".into(),
        }],
    )
    .await;

    let warning = sam_ws.expect("communication:moderation_warning").await;
    assert_eq!(
        warning["data"],
        json!({"plugin": PLUGIN, "text": "No links, please"})
    );
    for ws in [&mut ada_ws, &mut mo_ws, &mut pat_ws] {
        let warnings = frames_of(
            ws,
            "communication:moderation_warning",
            Duration::from_millis(500),
        )
        .await;
        assert!(warnings.is_empty(), "{warnings:?}");
    }
    let lines = by_plugin(
        &audit(&server, &ada, &format!("/api/channels/{id}")).await,
        "warn",
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_plugin_line(&lines[0], "allowed");
    assert_eq!(lines[0]["targetId"], sam.id.to_string());
}

#[tokio::test]
async fn alerts_and_warnings_stop_at_ten_a_minute_per_plugin_and_context() {
    let Staffed {
        server,
        id,
        ada,
        mo,
        sam,
        ..
    } = staffed().await;
    let mut mo_ws = server.ws(&mo).await;
    let mut sam_ws = server.ws(&sam).await;
    let alerts: Vec<PlannedAction> = (0..11)
        .map(|n| PlannedAction::NotifyModerators {
            text: format!("alert {n}"),
            member_id: None,
        })
        .collect();
    act(&server, Kind::Channel, &id, alerts).await;
    // The budget is shared: a warning after ten alerts is dropped too.
    act(
        &server,
        Kind::Channel,
        &id,
        vec![PlannedAction::WarnMember {
            member_id: sam.id,
            text: "dropped".into(),
        }],
    )
    .await;
    // Another plugin has a budget of its own.
    act_as(
        &server,
        "30_other",
        Kind::Channel,
        &id,
        vec![PlannedAction::NotifyModerators {
            text: "from another plugin".into(),
            member_id: None,
        }],
    )
    .await;

    let received: Vec<Value> = frames_of(
        &mut mo_ws,
        "communication:moderation_alert",
        Duration::from_millis(1_500),
    )
    .await
    .iter()
    .map(|f| f["data"]["text"].clone())
    .collect();
    let mut expected: Vec<Value> = (0..10).map(|n| json!(format!("alert {n}"))).collect();
    expected.push(json!("from another plugin"));
    assert_eq!(received, expected);
    let warnings = frames_of(
        &mut sam_ws,
        "communication:moderation_warning",
        Duration::from_millis(300),
    )
    .await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let entries = audit(&server, &ada, &format!("/api/channels/{id}")).await;
    assert_eq!(by_plugin(&entries, "alert").len(), 10);
    assert!(by_plugin(&entries, "warn").is_empty());
}

#[tokio::test]
async fn a_plugin_acts_on_plain_members_only_and_refusals_are_audited() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mo = server.member("Mo").await;
    let pat = server.member("Pat").await;
    let eve = server.member("Eve").await;
    let id = channel_with(&server, &ada, "ranks", &[&bob, &mo, &pat]).await;
    set_channel_role(&server, &ada, &id, &bob, "admin").await;
    set_channel_role(&server, &ada, &id, &mo, "moderator").await;
    let base = format!("/api/channels/{id}");
    let mute = |member: &TestMember| PlannedAction::MuteMember {
        member_id: member.id,
        duration_ms: 60_000,
        reason: "test".into(),
    };

    act(
        &server,
        Kind::Channel,
        &id,
        vec![
            mute(&mo),
            PlannedAction::KickMember {
                member_id: bob.id,
                reason: String::new(),
            },
            PlannedAction::KickMember {
                member_id: ada.id,
                reason: String::new(),
            },
            PlannedAction::PurgeMemberMessages {
                member_id: mo.id,
                within_ms: 60_000,
                reason: String::new(),
            },
            PlannedAction::WarnMember {
                member_id: mo.id,
                text: "no".into(),
            },
            PlannedAction::WarnMember {
                member_id: eve.id,
                text: "not here".into(),
            },
            // Refusals do not stop the actions after them.
            mute(&pat),
        ],
    )
    .await;

    for member in [&ada, &bob, &mo] {
        server.channel_message(member, &id, "still here").await;
    }
    server
        .post(
            &format!("{base}/messages"),
            Some(&pat.token),
            json!({"content": "muted"}),
        )
        .await
        .error(403, "FORBIDDEN");
    let view = server.get(&base, Some(&ada.token)).await.data(200).clone();
    assert_eq!(member_ids(&view).len(), 4);

    let entries = audit(&server, &ada, &base).await;
    let plugin: Vec<&Value> = entries.iter().filter(|e| e["plugin"] == PLUGIN).collect();
    let seen: Vec<(String, String, Value)> = plugin
        .iter()
        .rev()
        .map(|e| {
            assert_eq!(e["actorId"], Value::Null, "{e}");
            (
                e["action"].as_str().expect("action").to_owned(),
                e["outcome"].as_str().expect("outcome").to_owned(),
                e["targetId"].clone(),
            )
        })
        .collect();
    let target = |m: &TestMember| json!(m.id.to_string());
    assert_eq!(
        seen,
        vec![
            ("mute".into(), "denied".into(), target(&mo)),
            ("kick".into(), "denied".into(), target(&bob)),
            ("kick".into(), "denied".into(), target(&ada)),
            ("purge".into(), "denied".into(), target(&mo)),
            ("warn".into(), "denied".into(), target(&mo)),
            ("warn".into(), "denied".into(), target(&eve)),
            ("mute".into(), "allowed".into(), target(&pat)),
        ]
    );
    let reasons: Vec<&Value> = plugin.iter().rev().map(|e| &e["reason"]).collect();
    assert_eq!(reasons[0], "A plugin can only act on plain members");
    assert_eq!(reasons[5], "Member not found in this context");
}

#[tokio::test]
async fn simulated_actions_and_actions_outside_a_context_do_nothing() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let pat = server.member("Pat").await;
    let id = channel_with(&server, &ada, "quiet", &[&pat]).await;
    let mute = PlannedAction::MuteMember {
        member_id: pat.id,
        duration_ms: 60_000,
        reason: "test".into(),
    };
    // Monitor mode: `hooks::after` audits it as simulated; nothing is carried out.
    let scope = Scope::context(Kind::Channel, uuid(&id), ada.id, Some(pat.id));
    run_actions(
        &server.state,
        &scope,
        vec![QueuedAction {
            plugin: PLUGIN.into(),
            simulated: true,
            action: mute.clone(),
        }],
    )
    .await;
    // A conversation has no group or channel to act in.
    server.dm(&ada, &pat, "hi").await;
    let scope = Scope {
        context: None,
        conversation: Some(Uuid::new_v4()),
        actor: Some(ada.id),
        target: Some(pat.id),
    };
    run_actions(
        &server.state,
        &scope,
        vec![QueuedAction {
            plugin: PLUGIN.into(),
            simulated: false,
            action: mute,
        }],
    )
    .await;

    server.channel_message(&pat, &id, "not muted").await;
    let entries = audit(&server, &ada, &format!("/api/channels/{id}")).await;
    assert!(entries.iter().all(|e| e["plugin"] != PLUGIN), "{entries:?}");
}

#[tokio::test]
async fn a_scripts_actions_run_after_its_hook_through_the_hooks_glue() {
    use brightchat::plugins::Hook;
    use brightchat::service::hooks;

    let script = r#"
        fn on_message(ctx) {
            if ctx.params.content.contains("http") {
                warn_member(ctx.actor.id, "No links here");
                notify_moderators("A link was posted", ctx.actor.id);
            }
        }
    "#;
    let server = TestServer::start_with_plugins(&[("20_guard.rhai", script)], |_| {}).await;
    assert!(server.plugins_dir().join("20_guard.rhai").exists());
    let ada = server.member("Ada").await;
    let pat = server.member("Pat").await;
    let id = channel_with(&server, &ada, "links", &[&pat]).await;
    let mut ada_ws = server.ws(&ada).await;
    let mut pat_ws = server.ws(&pat).await;

    let mut params = serde_json::Map::new();
    params.insert("content".into(), json!("see http://example.com"));
    params.insert("kind".into(), json!("send"));
    let scope = Scope::context(Kind::Channel, uuid(&id), pat.id, None);
    let pending = hooks::before(&server.state, Hook::Message, scope, params)
        .await
        .expect("allowed");
    hooks::after(&server.state, pending).await;

    let warning = pat_ws.expect("communication:moderation_warning").await;
    assert_eq!(warning["data"]["text"], "No links here");
    let alert = ada_ws.expect("communication:moderation_alert").await;
    assert_eq!(alert["data"]["memberId"], pat.id.to_string());
    let entries = audit(&server, &ada, &format!("/api/channels/{id}")).await;
    assert_eq!(by_plugin(&entries, "warn").len(), 1);
    assert_eq!(by_plugin(&entries, "alert").len(), 1);
}
