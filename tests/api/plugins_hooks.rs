//! Moderation plugins at every hook point, end to end: what a plugin allows, refuses and
//! changes reaches REST, GraphQL and the GraphQL socket alike; monitor mode; per-context
//! settings; the audit log; the facts a hook sees; `on_event` once per event across nodes.
//!
//! Probe plugins refuse with a reason that prints, as JSON, the facts they saw, so the
//! tests read the facts from the 403 a client gets.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{
    Answer, TestMember, TestServer, decrypt_dm, decrypt_message, gql_code, member_keys,
};

/// Checks a REST refusal by a plugin: 403, the reason as message, `details.plugin`.
#[track_caller]
fn denied(answer: &Answer, plugin: &str, reason: &str) {
    answer.error(403, "FORBIDDEN");
    assert_eq!(answer.body["error"]["message"], reason, "{}", answer.body);
    assert_eq!(
        answer.body["error"]["details"]["plugin"], plugin,
        "{}",
        answer.body
    );
}

/// Checks a GraphQL refusal by a plugin: the reason, `FORBIDDEN` and
/// `extensions.details.plugin`.
#[track_caller]
fn gql_denied(response: &Value, plugin: &str, reason: &str) {
    let error = &response["errors"][0];
    assert_eq!(error["message"], reason, "{response}");
    assert_eq!(
        gql_code(response).as_deref(),
        Some("FORBIDDEN"),
        "{response}"
    );
    assert_eq!(
        error["extensions"]["details"]["plugin"], plugin,
        "{response}"
    );
}

/// `data` of a GraphQL answer without errors.
#[track_caller]
fn gql_data(response: &Value) -> &Value {
    assert!(response["errors"].is_null(), "{response}");
    &response["data"]
}

/// The facts a probe plugin printed as JSON in its refusal.
#[track_caller]
fn reported(answer: &Answer) -> Value {
    answer.error(403, "FORBIDDEN");
    let text = answer.body["error"]["message"].as_str().expect("message");
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The facts a probe plugin printed, from a GraphQL refusal.
#[track_caller]
fn gql_reported(response: &Value) -> Value {
    assert_eq!(
        gql_code(response).as_deref(),
        Some("FORBIDDEN"),
        "{response}"
    );
    let text = response["errors"][0]["message"].as_str().expect("message");
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// A context's audit log as `reader` sees it (`kind`: `channels` or `groups`).
async fn audit(server: &TestServer, reader: &TestMember, kind: &str, id: &str) -> Vec<Value> {
    server
        .get(
            &format!("/api/{kind}/{id}/audit?limit=100"),
            Some(&reader.token),
        )
        .await
        .data(200)["items"]
        .as_array()
        .expect("items")
        .clone()
}

/// Audit entries written for `plugin`, oldest first.
fn by_plugin(entries: &[Value], plugin: &str) -> Vec<Value> {
    let mut found: Vec<Value> = entries
        .iter()
        .filter(|e| e["plugin"] == plugin)
        .cloned()
        .collect();
    found.reverse();
    found
}

/// Milliseconds from now to an RFC 3339 time.
fn ms_from_now(time: &Value) -> i64 {
    let at =
        chrono::DateTime::parse_from_rfc3339(time.as_str().expect("a time")).expect("RFC 3339");
    at.timestamp_millis() - chrono::Utc::now().timestamp_millis()
}

async fn join(server: &TestServer, channel: &str, members: &[&TestMember]) {
    for m in members {
        server.join(m, channel).await;
    }
}

const MUTE_PLUGIN: &str = r#"
fn on_mute(ctx) {
    let d = ctx.params.duration_ms;
    if d == 13000 { return deny("Thirteen is unlucky"); }
    if d > 3600000 { return modify(#{ duration_ms: 3600000 }); }
    if d == 7000 { return modify(#{ duration_ms: 0 }); }
    allow()
}
fn on_unmute(ctx) {
    if ctx.target.display_name == "Stuck" { return deny("Stuck stays muted"); }
}
"#;

const GQL_MUTE: &str = "mutation($id: UUID!, $m: UUID!, $d: Int!) { muteMember(kind: CHANNEL, contextId: $id, memberId: $m, durationMs: $d) { muted until } }";
const GQL_UNMUTE: &str =
    "mutation($id: UUID!, $m: UUID!) { unmuteMember(kind: CHANNEL, contextId: $id, memberId: $m) }";

#[tokio::test]
async fn mute_and_unmute_are_refused_shortened_and_audited_over_rest_and_graphql() {
    let server = TestServer::start_with_plugins(&[("10_mutes.rhai", MUTE_PLUGIN)], |_| {}).await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let stuck = server.member("Stuck").await;
    let admin = server.member("Admin").await;
    let moderator = server.member("Moderator").await;
    let id = server.channel(&ada, "mutes", "public", true).await;
    join(&server, &id, &[&bob, &stuck, &admin, &moderator]).await;
    let base = format!("/api/channels/{id}");
    for (m, role) in [(&admin, "admin"), (&moderator, "moderator")] {
        server
            .put(
                &format!("{base}/roles/{}", m.id),
                Some(&ada.token),
                json!({"role": role}),
            )
            .await
            .data(200);
    }
    let mute = async |m: &TestMember, ms: i64| {
        server
            .post(
                &format!("{base}/mute/{}", m.id),
                Some(&ada.token),
                json!({"durationMs": ms}),
            )
            .await
    };

    // Refused: nothing changes.
    denied(&mute(&bob, 13_000).await, "10_mutes", "Thirteen is unlucky");
    let channel = server.get(&base, Some(&ada.token)).await;
    let entry = channel.data(200)["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["memberId"] == bob.id.to_string())
        .expect("bob")
        .clone();
    assert!(entry["mutedUntil"].is_null(), "{entry}");
    server.channel_message(&bob, &id, "still talking").await;

    // Allowed as asked.
    let until = ms_from_now(&mute(&bob, 60_000).await.data(200)["until"]);
    assert!((50_000..=61_000).contains(&until), "{until}");
    // A day is cut to an hour.
    let until = ms_from_now(&mute(&bob, 86_400_000).await.data(200)["until"]);
    assert!((3_590_000..=3_601_000).contains(&until), "{until}");
    // A change the API would refuse is refused, whoever made it.
    let bad = mute(&bob, 7_000).await;
    bad.error(400, "VALIDATION_ERROR");
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("plugin")),
        "{}",
        bad.body
    );

    // GraphQL: the same rules.
    let vars = |m: &TestMember, d: i64| json!({"id": id, "m": m.id, "d": d});
    gql_denied(
        &server
            .graphql(Some(&ada.token), GQL_MUTE, vars(&bob, 13_000))
            .await,
        "10_mutes",
        "Thirteen is unlucky",
    );
    let answer = server
        .graphql(Some(&ada.token), GQL_MUTE, vars(&bob, 2_000_000_000))
        .await;
    let until = ms_from_now(&gql_data(&answer)["muteMember"]["until"]);
    assert!((3_590_000..=3_601_000).contains(&until), "{until}");

    // Unmute: refused for one member, allowed for another, over both APIs.
    mute(&stuck, 60_000).await.data(200);
    denied(
        &server
            .delete(&format!("{base}/mute/{}", stuck.id), Some(&ada.token))
            .await,
        "10_mutes",
        "Stuck stays muted",
    );
    gql_denied(
        &server
            .graphql(
                Some(&ada.token),
                GQL_UNMUTE,
                json!({"id": id, "m": stuck.id}),
            )
            .await,
        "10_mutes",
        "Stuck stays muted",
    );
    server
        .delete(&format!("{base}/mute/{}", bob.id), Some(&ada.token))
        .await
        .data(200);
    mute(&bob, 60_000).await.data(200);
    let answer = server
        .graphql(Some(&ada.token), GQL_UNMUTE, json!({"id": id, "m": bob.id}))
        .await;
    assert_eq!(gql_data(&answer)["unmuteMember"], true);

    // The audit log: every refusal and change, with the plugin and the reason.
    let entries = audit(&server, &admin, "channels", &id).await;
    let plugin = by_plugin(&entries, "10_mutes");
    let summary: Vec<(String, String, String)> = plugin
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
                e["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let row = |a: &str, o: &str, r: &str| (a.to_owned(), o.to_owned(), r.to_owned());
    assert_eq!(
        summary,
        vec![
            row("mute", "denied", "Thirteen is unlucky"),
            row("mute", "modified", "duration_ms changed"),
            row("mute", "modified", "duration_ms changed"),
            row("mute", "denied", "Thirteen is unlucky"),
            row("mute", "modified", "duration_ms changed"),
            row("unmute", "denied", "Stuck stays muted"),
            row("unmute", "denied", "Stuck stays muted"),
        ]
    );
    assert_eq!(plugin[0]["actorId"], ada.id.to_string());
    assert_eq!(plugin[0]["targetId"], bob.id.to_string());
    assert_eq!(plugin[0]["contextType"], "channel");
    assert_eq!(plugin[5]["targetId"], stuck.id.to_string());
    // The mutes that happened are recorded as usual, without a plugin.
    let allowed_mutes = entries
        .iter()
        .filter(|e| e["action"] == "mute" && e["outcome"] == "allowed")
        .count();
    assert_eq!(allowed_mutes, 5);
    assert!(
        entries
            .iter()
            .filter(|e| e["outcome"] == "allowed")
            .all(|e| e["plugin"].is_null())
    );
    // Owners and admins read it; moderators and members do not.
    audit(&server, &ada, "channels", &id).await;
    for m in [&moderator, &bob] {
        server
            .get(&format!("{base}/audit"), Some(&m.token))
            .await
            .error(403, "FORBIDDEN");
    }
}

const MEMBERSHIP_PLUGIN: &str = r#"
fn on_kick(ctx) {
    if ctx.target.display_name.starts_with("Vip") { return deny("Hands off " + ctx.target.display_name); }
}
fn on_remove(ctx) {
    if ctx.target.display_name.starts_with("Vip") { return deny("Vips stay"); }
}
fn on_role_assign(ctx) {
    if ctx.params.role == "admin" { return deny("No new admins"); }
}
"#;

#[tokio::test]
async fn kick_remove_and_role_changes_are_refused_by_plugins_over_rest_and_graphql() {
    let server =
        TestServer::start_with_plugins(&[("20_members.rhai", MEMBERSHIP_PLUGIN)], |_| {}).await;
    let ada = server.member("Ada").await;
    let vip = server.member("Vip Val").await;
    let pat = server.member("Pat").await;
    let sam = server.member("Sam").await;
    let id = server.channel(&ada, "kicks", "public", true).await;
    join(&server, &id, &[&vip, &pat, &sam]).await;
    let base = format!("/api/channels/{id}");

    denied(
        &server
            .post(
                &format!("{base}/kick/{}", vip.id),
                Some(&ada.token),
                json!({}),
            )
            .await,
        "20_members",
        "Hands off Vip Val",
    );
    server
        .post(
            &format!("{base}/kick/{}", pat.id),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    let kick = "mutation($id: UUID!, $m: UUID!) { kickMember(channelId: $id, memberId: $m) }";
    gql_denied(
        &server
            .graphql(Some(&ada.token), kick, json!({"id": id, "m": vip.id}))
            .await,
        "20_members",
        "Hands off Vip Val",
    );
    // The refused kick left Vip in: it still reads the channel.
    server
        .get(&format!("{base}/messages"), Some(&vip.token))
        .await
        .data(200);

    // Roles.
    denied(
        &server
            .put(
                &format!("{base}/roles/{}", sam.id),
                Some(&ada.token),
                json!({"role": "admin"}),
            )
            .await,
        "20_members",
        "No new admins",
    );
    server
        .put(
            &format!("{base}/roles/{}", sam.id),
            Some(&ada.token),
            json!({"role": "moderator"}),
        )
        .await
        .data(200);
    let assign = "mutation($id: UUID!, $m: UUID!, $r: Role!) { assignRole(kind: CHANNEL, contextId: $id, memberId: $m, role: $r) { memberId role } }";
    gql_denied(
        &server
            .graphql(
                Some(&ada.token),
                assign,
                json!({"id": id, "m": vip.id, "r": "ADMIN"}),
            )
            .await,
        "20_members",
        "No new admins",
    );
    let answer = server
        .graphql(
            Some(&ada.token),
            assign,
            json!({"id": id, "m": vip.id, "r": "MODERATOR"}),
        )
        .await;
    assert_eq!(gql_data(&answer)["assignRole"]["role"], "MODERATOR");
    let answer = server
        .graphql(Some(&ada.token), kick, json!({"id": id, "m": sam.id}))
        .await;
    assert_eq!(gql_data(&answer)["kickMember"], true);

    let entries = by_plugin(&audit(&server, &ada, "channels", &id).await, "20_members");
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("kick", "denied"),
            ("kick", "denied"),
            ("role_change", "denied"),
            ("role_change", "denied")
        ]
    );
    assert_eq!(entries[2]["reason"], "No new admins");
    assert_eq!(entries[2]["targetId"], sam.id.to_string());

    // Group removal.
    let group = server.group(&ada, "Removals", &[&vip, &pat, &sam]).await;
    let gbase = format!("/api/groups/{group}");
    denied(
        &server
            .delete(&format!("{gbase}/members/{}", vip.id), Some(&ada.token))
            .await,
        "20_members",
        "Vips stay",
    );
    server
        .delete(&format!("{gbase}/members/{}", pat.id), Some(&ada.token))
        .await
        .data(200);
    let remove = "mutation($g: UUID!, $m: UUID!) { removeGroupMember(groupId: $g, memberId: $m) }";
    gql_denied(
        &server
            .graphql(Some(&ada.token), remove, json!({"g": group, "m": vip.id}))
            .await,
        "20_members",
        "Vips stay",
    );
    let answer = server
        .graphql(Some(&ada.token), remove, json!({"g": group, "m": sam.id}))
        .await;
    assert_eq!(gql_data(&answer)["removeGroupMember"], sam.id.to_string());
    let mut members: Vec<String> = server.get(&gbase, Some(&ada.token)).await.data(200)["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["memberId"].as_str().unwrap_or_default().to_owned())
        .collect();
    members.sort();
    let mut expected = vec![ada.id.to_string(), vip.id.to_string()];
    expected.sort();
    assert_eq!(members, expected);
    let entries = audit(&server, &ada, "groups", &group).await;
    let refused = by_plugin(&entries, "20_members");
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|e| e["action"] == "remove"
        && e["outcome"] == "denied"
        && e["reason"] == "Vips stay"
        && e["contextType"] == "group"
        && e["targetId"] == vip.id.to_string()));
    // A group member who is no owner or admin does not read the log.
    server
        .get(&format!("{gbase}/audit"), Some(&vip.token))
        .await
        .error(403, "FORBIDDEN");
}

const INVITE_PLUGIN: &str = r#"
fn on_invite_create(ctx) {
    let p = ctx.params;
    if p.max_uses == 13 { return deny("No unlucky invites"); }
    if p.max_uses == 99 { return modify(#{ max_uses: () }); }
    if p.max_uses == 77 { return modify(#{ expires_in_ms: 5 }); }
    if p.max_uses == () && p.expires_in_ms == () {
        return modify(#{ max_uses: 5, expires_in_ms: 3600000 });
    }
}
fn on_invite_redeem(ctx) {
    if ctx.actor.display_name == "Probe" {
        return deny(#{
            hook: "redeem",
            invite_id: ctx.params.invite_id,
            creator: ctx.params.invite_creator_id,
            actor: ctx.actor.id,
            role: ctx.actor.role,
        }.to_json());
    }
    if ctx.actor.display_name == "Nope" { return deny("Not with this invite"); }
}
"#;

#[tokio::test]
async fn invites_are_limited_refused_and_described_by_plugins() {
    let server =
        TestServer::start_with_plugins(&[("30_invites.rhai", INVITE_PLUGIN)], |_| {}).await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let probe = server.member("Probe").await;
    let nope = server.member("Nope").await;
    let joe = server.member("Joe").await;
    let id = server.channel(&ada, "invites", "private", true).await;
    server.invite_in(&ada, &id, &bob).await;
    server
        .put(
            &format!("/api/channels/{id}/roles/{}", bob.id),
            Some(&ada.token),
            json!({"role": "admin"}),
        )
        .await
        .data(200);
    let create = async |body: Value| {
        server
            .post(
                &format!("/api/channels/{id}/invites"),
                Some(&bob.token),
                body,
            )
            .await
    };

    denied(
        &create(json!({"maxUses": 13})).await,
        "30_invites",
        "No unlucky invites",
    );
    // No limits asked: the plugin sets both.
    let answer = create(json!({})).await;
    let invite = answer.data(201);
    assert_eq!(invite["maxUses"], 5);
    assert_eq!(invite["usesRemaining"], 5);
    let expires = ms_from_now(&invite["expiresAt"]);
    assert!((3_590_000..=3_601_000).contains(&expires), "{expires}");
    // Set to `()`: unlimited.
    let answer = create(json!({"maxUses": 99})).await;
    assert!(answer.data(201)["maxUses"].is_null(), "{}", answer.body);
    // A change the API would refuse is refused.
    create(json!({"maxUses": 77}))
        .await
        .error(400, "VALIDATION_ERROR");
    // Unchanged.
    let answer = create(json!({"maxUses": 1, "expiresInMs": 60000})).await;
    let token = answer.data(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(answer.data(201)["maxUses"], 1);

    let gql_create = "mutation($id: UUID!, $input: CreateInviteInput) { createInvite(channelId: $id, input: $input) { token maxUses expiresAt } }";
    gql_denied(
        &server
            .graphql(
                Some(&bob.token),
                gql_create,
                json!({"id": id, "input": {"maxUses": 13}}),
            )
            .await,
        "30_invites",
        "No unlucky invites",
    );
    let answer = server
        .graphql(Some(&bob.token), gql_create, json!({"id": id}))
        .await;
    assert_eq!(gql_data(&answer)["createInvite"]["maxUses"], 5);

    // Redemption: the hook sees the invite's id (hex SHA-256 of the token) and creator.
    let redeem = async |m: &TestMember, token: &str| {
        server
            .post(
                &format!("/api/channels/{id}/invites/{token}/redeem"),
                Some(&m.token),
                json!({}),
            )
            .await
    };
    let facts = reported(&redeem(&probe, &token).await);
    assert_eq!(facts["hook"], "redeem");
    assert_eq!(
        facts["invite_id"],
        hex::encode(Sha256::digest(token.as_bytes()))
    );
    assert_eq!(facts["creator"], bob.id.to_string());
    assert_eq!(facts["actor"], probe.id.to_string());
    assert!(facts["role"].is_null(), "{facts}");
    denied(
        &redeem(&nope, &token).await,
        "30_invites",
        "Not with this invite",
    );
    let gql_redeem =
        "mutation($id: UUID!, $t: String!) { redeemInvite(channelId: $id, token: $t) }";
    gql_denied(
        &server
            .graphql(Some(&nope.token), gql_redeem, json!({"id": id, "t": token}))
            .await,
        "30_invites",
        "Not with this invite",
    );
    // Refusals used none of the invite's one use.
    let answer = server
        .graphql(Some(&joe.token), gql_redeem, json!({"id": id, "t": token}))
        .await;
    assert_eq!(gql_data(&answer)["redeemInvite"], true);
    let late = server.member("Late").await;
    redeem(&late, &token).await.error(410, "GONE");
    // An unknown token is still 404, plugins or not.
    redeem(&nope, "no-such-token").await.error(404, "NOT_FOUND");

    let entries = by_plugin(&audit(&server, &ada, "channels", &id).await, "30_invites");
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            // Ada's own invite for Bob, made without limits.
            ("invite_create", "modified"),
            ("invite_create", "denied"),
            ("invite_create", "modified"),
            ("invite_create", "modified"),
            ("invite_create", "modified"),
            ("invite_create", "denied"),
            ("invite_create", "modified"),
            ("invite_redeem", "denied"),
            ("invite_redeem", "denied"),
            ("invite_redeem", "denied"),
        ]
    );
    assert_eq!(entries[0]["actorId"], ada.id.to_string());
    assert_eq!(
        entries[2]["reason"],
        "expires_in_ms changed, max_uses changed"
    );
    assert_eq!(entries[2]["actorId"], bob.id.to_string());
    assert_eq!(entries[9]["actorId"], nope.id.to_string());
}

const JOIN_PLUGIN: &str = r#"
fn on_join(ctx) {
    if ctx.target.display_name == "Banned" { return deny("Banned from " + ctx.context.name); }
    if ctx.target.display_name == "Probe" {
        return deny(#{
            actor: ctx.actor.id,
            target: ctx.target.id,
            invite_id: ctx.params.invite_id,
            creator: ctx.params.invite_creator_id,
            type: ctx.context.type,
            members: ctx.context.member_count,
        }.to_json());
    }
}
"#;

#[tokio::test]
async fn every_admission_asks_on_join_and_one_refusal_stops_a_whole_group_add() {
    let server = TestServer::start_with_plugins(&[("40_joins.rhai", JOIN_PLUGIN)], |_| {}).await;
    let ada = server.member("Ada").await;
    let banned = server.member("Banned").await;
    let probe = server.member("Probe").await;
    let joe = server.member("Joe").await;
    let kim = server.member("Kim").await;
    let public = server.channel(&ada, "lobby", "public", true).await;

    // A public join.
    denied(
        &server
            .post(
                &format!("/api/channels/{public}/join"),
                Some(&banned.token),
                json!({}),
            )
            .await,
        "40_joins",
        "Banned from lobby",
    );
    let gql_join = "mutation($id: UUID!) { joinChannel(channelId: $id) }";
    gql_denied(
        &server
            .graphql(Some(&banned.token), gql_join, json!({"id": public}))
            .await,
        "40_joins",
        "Banned from lobby",
    );
    let facts = reported(
        &server
            .post(
                &format!("/api/channels/{public}/join"),
                Some(&probe.token),
                json!({}),
            )
            .await,
    );
    assert_eq!(facts["actor"], probe.id.to_string());
    assert_eq!(facts["target"], probe.id.to_string());
    assert!(
        facts["invite_id"].is_null() && facts["creator"].is_null(),
        "{facts}"
    );
    assert_eq!(facts["type"], "channel");
    assert_eq!(facts["members"], 1);
    let answer = server
        .graphql(Some(&joe.token), gql_join, json!({"id": public}))
        .await;
    assert_eq!(gql_data(&answer)["joinChannel"], true);

    // By invite: on_join sees the invite.
    let private = server.channel(&ada, "backroom", "private", true).await;
    let token = server.invite(&ada, &private, json!({})).await;
    let facts = reported(
        &server
            .post(
                &format!("/api/channels/{private}/invites/{token}/redeem"),
                Some(&probe.token),
                json!({}),
            )
            .await,
    );
    assert_eq!(
        facts["invite_id"],
        hex::encode(Sha256::digest(token.as_bytes()))
    );
    assert_eq!(facts["creator"], ada.id.to_string());
    denied(
        &server
            .post(
                &format!("/api/channels/{private}/invites/{token}/redeem"),
                Some(&banned.token),
                json!({}),
            )
            .await,
        "40_joins",
        "Banned from backroom",
    );

    // Group additions: one call per newcomer, the adder as actor; one refusal stops all.
    let group = server.group(&ada, "Crew", &[]).await;
    let gbase = format!("/api/groups/{group}");
    denied(
        &server
            .post(
                &format!("{gbase}/members"),
                Some(&ada.token),
                json!({"memberIds": [joe.id, banned.id]}),
            )
            .await,
        "40_joins",
        "Banned from Crew",
    );
    let add =
        "mutation($g: UUID!, $ids: [UUID!]!) { addGroupMembers(groupId: $g, memberIds: $ids) }";
    gql_denied(
        &server
            .graphql(
                Some(&ada.token),
                add,
                json!({"g": group, "ids": [kim.id, banned.id]}),
            )
            .await,
        "40_joins",
        "Banned from Crew",
    );
    let members = server.get(&gbase, Some(&ada.token)).await.data(200)["members"].clone();
    assert_eq!(members.as_array().map(Vec::len), Some(1), "{members}");
    let facts = reported(
        &server
            .post(
                &format!("{gbase}/members"),
                Some(&ada.token),
                json!({"memberIds": [probe.id]}),
            )
            .await,
    );
    assert_eq!(facts["actor"], ada.id.to_string());
    assert_eq!(facts["target"], probe.id.to_string());
    assert_eq!(facts["type"], "group");
    let answer = server
        .graphql(
            Some(&ada.token),
            add,
            json!({"g": group, "ids": [joe.id, kim.id]}),
        )
        .await;
    assert_eq!(
        gql_data(&answer)["addGroupMembers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let entries = by_plugin(&audit(&server, &ada, "groups", &group).await, "40_joins");
    let refusals: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
                e["targetId"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let banned_id = banned.id.to_string();
    let probe_id = probe.id.to_string();
    assert_eq!(
        refusals,
        vec![
            ("join", "denied", banned_id.as_str()),
            ("join", "denied", banned_id.as_str()),
            ("join", "denied", probe_id.as_str()),
        ]
    );
    assert!(entries.iter().all(|e| e["actorId"] == ada.id.to_string()));
    let entries = by_plugin(&audit(&server, &ada, "channels", &public).await, "40_joins");
    assert_eq!(entries.len(), 3);
    assert!(
        entries
            .iter()
            .all(|e| e["action"] == "join" && e["outcome"] == "denied")
    );
}

const MESSAGE_PLUGIN: &str = r#"
fn on_message(ctx) {
    let c = ctx.params.content;
    if c.contains("forbidden") { return deny("Watch your language"); }
    if c == "blank me" { return modify(#{ content: "   " }); }
    if c.contains("darn") {
        let fixed = c;
        fixed.replace("darn", "d**n");
        return modify(#{ content: fixed });
    }
    if c.starts_with("probe") {
        return deny(#{
            kind: ctx.params.kind,
            message_id: ctx.params.message_id,
            links: ctx.params.links,
            mentions: ctx.params.mentions,
            target: if ctx.target == () { () } else { ctx.target.id },
            type: ctx.context.type,
            id: ctx.context.id,
        }.to_json());
    }
}
"#;

#[tokio::test]
async fn messages_are_refused_rewritten_and_parsed_in_channels_groups_and_conversations() {
    let server = TestServer::start_with_plugins(&[("50_words.rhai", MESSAGE_PLUGIN)], |_| {}).await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let id = server.channel(&ada, "talk", "public", true).await;
    join(&server, &id, &[&bob]).await;
    let base = format!("/api/channels/{id}");
    let send = async |m: &TestMember, text: &str| {
        server
            .post(
                &format!("{base}/messages"),
                Some(&m.token),
                json!({"content": text}),
            )
            .await
    };

    denied(
        &send(&bob, "a forbidden word").await,
        "50_words",
        "Watch your language",
    );
    let sent = send(&bob, "oh darn it, darn").await.data(201).clone();
    let keys = member_keys(&server, &ada, &base).await;
    assert_eq!(decrypt_message(&keys, &sent), "oh d**n it, d**n");
    send(&bob, "blank me").await.error(400, "VALIDATION_ERROR");
    // Links and mentions, parsed by the server.
    let facts = reported(
        &send(
            &bob,
            &format!(
                "probe <@{}> and @{} see https://Example.com/x?y=1 and spam.test/offer, mail bob@example.org",
                ada.id, cat.id
            ),
        )
        .await,
    );
    assert_eq!(facts["kind"], "send");
    assert!(facts["message_id"].is_null());
    assert_eq!(
        facts["mentions"],
        json!([ada.id.to_string(), cat.id.to_string()])
    );
    assert_eq!(
        facts["links"],
        json!([
            {"url": "https://Example.com/x?y=1", "host": "example.com"},
            {"url": "spam.test/offer", "host": "spam.test"}
        ])
    );
    assert!(facts["target"].is_null());
    assert_eq!(facts["type"], "channel");
    assert_eq!(facts["id"], id);

    // Edits.
    let message_id = sent["id"].as_str().expect("id").to_owned();
    let edit = async |text: &str| {
        server
            .put(
                &format!("{base}/messages/{message_id}"),
                Some(&bob.token),
                json!({"content": text}),
            )
            .await
    };
    denied(
        &edit("now forbidden").await,
        "50_words",
        "Watch your language",
    );
    let edited = edit("darn edits").await.data(200).clone();
    assert_eq!(decrypt_message(&keys, &edited), "d**n edits");
    let facts = reported(&edit("probe edit").await);
    assert_eq!(facts["kind"], "edit");
    assert_eq!(facts["message_id"], message_id);
    assert_eq!(facts["links"], json!([]));

    // GraphQL, channel and group.
    let gql_send = "mutation($k: ContextKind!, $id: UUID!, $c: String!) { sendMessage(kind: $k, contextId: $id, content: $c) { id keyEpoch encryptedContent } }";
    gql_denied(
        &server
            .graphql(
                Some(&bob.token),
                gql_send,
                json!({"k": "CHANNEL", "id": id, "c": "forbidden"}),
            )
            .await,
        "50_words",
        "Watch your language",
    );
    let answer = server
        .graphql(
            Some(&bob.token),
            gql_send,
            json!({"k": "CHANNEL", "id": id, "c": "darn graphql"}),
        )
        .await;
    let message = gql_data(&answer)["sendMessage"].clone();
    assert_eq!(decrypt_message(&keys, &message), "d**n graphql");
    let gql_edit = "mutation($id: UUID!, $m: UUID!, $c: String!) { editMessage(kind: CHANNEL, contextId: $id, messageId: $m, content: $c) { id keyEpoch encryptedContent } }";
    gql_denied(
        &server
            .graphql(
                Some(&bob.token),
                gql_edit,
                json!({"id": id, "m": message["id"], "c": "forbidden"}),
            )
            .await,
        "50_words",
        "Watch your language",
    );
    let group = server.group(&ada, "Words", &[&bob]).await;
    denied(
        &server
            .post(
                &format!("/api/groups/{group}/messages"),
                Some(&bob.token),
                json!({"content": "forbidden"}),
            )
            .await,
        "50_words",
        "Watch your language",
    );
    let answer = server
        .graphql(
            Some(&bob.token),
            gql_send,
            json!({"k": "GROUP", "id": group, "c": "probe"}),
        )
        .await;
    let facts = gql_reported(&answer);
    assert_eq!(facts["type"], "group");
    assert_eq!(facts["id"], group);

    // Direct messages: refused before the conversation exists, so none is made.
    denied(
        &server
            .post(
                "/api/conversations",
                Some(&ada.token),
                json!({"recipientId": cat.id, "content": "forbidden"}),
            )
            .await,
        "50_words",
        "Watch your language",
    );
    for m in [&ada, &cat] {
        let list = server.get("/api/conversations", Some(&m.token)).await;
        assert_eq!(list.data(200)["items"], json!([]));
    }
    let facts = reported(
        &server
            .post(
                "/api/conversations",
                Some(&ada.token),
                json!({"recipientId": cat.id, "content": "probe first"}),
            )
            .await,
    );
    assert_eq!(facts["type"], "conversation");
    assert_eq!(facts["target"], cat.id.to_string());
    assert_eq!(facts["id"], "");
    let dm = server.dm(&ada, &cat, "darn you").await;
    assert_eq!(decrypt_dm(&ada.secret, &dm["encryptedContent"]), "d**n you");
    let facts = reported(
        &server
            .post(
                "/api/conversations",
                Some(&ada.token),
                json!({"recipientId": cat.id, "content": "probe again"}),
            )
            .await,
    );
    assert_eq!(facts["id"], dm["conversationId"]);
    let gql_dm = "mutation($r: UUID!, $c: String!) { sendDirectMessage(input: {recipientId: $r, content: $c}) { id encryptedContent } }";
    gql_denied(
        &server
            .graphql(
                Some(&cat.token),
                gql_dm,
                json!({"r": ada.id, "c": "forbidden"}),
            )
            .await,
        "50_words",
        "Watch your language",
    );
    let answer = server
        .graphql(
            Some(&cat.token),
            gql_dm,
            json!({"r": ada.id, "c": "darn back"}),
        )
        .await;
    let copy = &gql_data(&answer)["sendDirectMessage"]["encryptedContent"];
    assert_eq!(decrypt_dm(&cat.secret, copy), "d**n back");

    let entries = by_plugin(&audit(&server, &ada, "channels", &id).await, "50_words");
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen[..3],
        [
            ("message", "denied", "Watch your language"),
            ("message", "modified", "content changed"),
            ("message", "modified", "content changed"),
        ]
    );
    assert!(entries.iter().all(|e| e["actorId"] == bob.id.to_string()));
}

const REACTION_PLUGIN: &str = r#"
fn on_reaction(ctx) {
    if ctx.params.emoji == "👎" { return deny("Be kind"); }
    if ctx.params.emoji == "🔍" { return deny(ctx.params.message_id); }
}
"#;

#[tokio::test]
async fn reactions_are_refused_by_plugins_over_rest_and_graphql() {
    let server = TestServer::start_with_plugins(&[("60_kind.rhai", REACTION_PLUGIN)], |_| {}).await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "reacts", "public", true).await;
    join(&server, &id, &[&bob]).await;
    let message = server.channel_message(&ada, &id, "react to me").await;
    let message_id = message["id"].as_str().expect("id");
    let react = async |emoji: &str| {
        server
            .post(
                &format!("/api/channels/{id}/messages/{message_id}/reactions"),
                Some(&bob.token),
                json!({"emoji": emoji}),
            )
            .await
    };
    denied(&react("👎").await, "60_kind", "Be kind");
    let answer = react("🔍").await;
    answer.error(403, "FORBIDDEN");
    assert_eq!(answer.body["error"]["message"], message_id);
    react("👍").await.data(201);
    let gql = "mutation($id: UUID!, $m: UUID!, $e: String!) { addReaction(kind: CHANNEL, contextId: $id, messageId: $m, emoji: $e) { emoji } }";
    gql_denied(
        &server
            .graphql(
                Some(&bob.token),
                gql,
                json!({"id": id, "m": message_id, "e": "👎"}),
            )
            .await,
        "60_kind",
        "Be kind",
    );
    let answer = server
        .graphql(
            Some(&bob.token),
            gql,
            json!({"id": id, "m": message_id, "e": "🎉"}),
        )
        .await;
    assert_eq!(gql_data(&answer)["addReaction"]["emoji"], "🎉");
    let entries = by_plugin(&audit(&server, &ada, "channels", &id).await, "60_kind");
    assert_eq!(entries.len(), 3);
    assert!(
        entries
            .iter()
            .all(|e| e["outcome"] == "denied" && e["actorId"] == bob.id.to_string())
    );
}

const FACTS_PLUGIN: &str = r#"
fn on_message(ctx) {
    if ctx.params.content == "facts" {
        let a = ctx.actor;
        let x = ctx.context;
        return deny(#{
            count: a.message_count,
            last: a.last_message_at_ms,
            role: a.role,
            name: a.display_name,
            joined: a.joined_at_ms,
            registered: a.registered_at_ms,
            members: x.member_count,
            joins: x.joins_last_minute,
            type: x.type,
            name_of_context: x.name,
            visibility: x.visibility,
        }.to_json());
    }
}
fn on_mute(ctx) {
    deny(#{
        actor_role: ctx.actor.role,
        actor_name: ctx.actor.display_name,
        target_role: ctx.target.role,
        target_name: ctx.target.display_name,
        target_count: ctx.target.message_count,
        duration: ctx.params.duration_ms,
        now: ctx.now_ms,
    }.to_json())
}
"#;

#[tokio::test]
async fn hooks_see_the_facts_of_members_and_contexts() {
    let server = TestServer::start_with_plugins(&[("70_facts.rhai", FACTS_PLUGIN)], |_| {}).await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let id = server.channel(&ada, "facts", "public", true).await;
    join(&server, &id, &[&bob, &cat]).await;
    let base = format!("/api/channels/{id}");
    let facts_of = async |m: &TestMember| {
        server
            .post(
                &format!("{base}/messages"),
                Some(&m.token),
                json!({"content": "facts"}),
            )
            .await
    };
    // Before any message.
    let facts = reported(&facts_of(&bob).await);
    assert_eq!(facts["count"], 0);
    assert!(facts["last"].is_null(), "{facts}");
    assert_eq!(facts["role"], "member");
    assert_eq!(facts["name"], "Bob");
    assert_eq!(facts["members"], 3);
    assert_eq!(facts["joins"], 3);
    assert_eq!(facts["type"], "channel");
    assert_eq!(facts["name_of_context"], "facts");
    assert_eq!(facts["visibility"], "public");
    let me = server.get("/api/members/me", Some(&bob.token)).await;
    let registered = chrono::DateTime::parse_from_rfc3339(
        me.data(200)["createdAt"].as_str().expect("createdAt"),
    )
    .expect("time")
    .timestamp_millis();
    assert_eq!(facts["registered"], registered);
    let joined = server.get(&base, Some(&bob.token)).await.data(200)["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["memberId"] == bob.id.to_string())
        .map(|m| {
            chrono::DateTime::parse_from_rfc3339(m["joinedAt"].as_str().expect("joinedAt"))
                .expect("time")
                .timestamp_millis()
        })
        .expect("bob");
    assert_eq!(facts["joined"], joined);

    // After two messages: the count and the time of the newest.
    server.channel_message(&bob, &id, "one").await;
    let second = server.channel_message(&bob, &id, "two").await;
    let at = chrono::DateTime::parse_from_rfc3339(second["createdAt"].as_str().expect("createdAt"))
        .expect("time")
        .timestamp_millis();
    let facts = reported(&facts_of(&bob).await);
    assert_eq!(facts["count"], 2);
    assert_eq!(facts["last"], at);
    // The owner's own facts.
    let facts = reported(&facts_of(&ada).await);
    assert_eq!(facts["count"], 0);
    assert_eq!(facts["role"], "owner");

    // Actor and target of a mute, with roles and names; over GraphQL in a group.
    let group = server.group(&ada, "Fact group", &[&bob, &cat]).await;
    server.set_role(&ada, &group, &cat, "moderator").await;
    server.group_message(&bob, &group, "hello").await;
    let answer = server
        .graphql(
            Some(&cat.token),
            "mutation($g: UUID!, $m: UUID!) { muteMember(kind: GROUP, contextId: $g, memberId: $m, durationMs: 5000) { muted } }",
            json!({"g": group, "m": bob.id}),
        )
        .await;
    let facts = gql_reported(&answer);
    assert_eq!(facts["actor_role"], "moderator");
    assert_eq!(facts["actor_name"], "Cat");
    assert_eq!(facts["target_role"], "member");
    assert_eq!(facts["target_name"], "Bob");
    assert_eq!(facts["target_count"], 1);
    assert_eq!(facts["duration"], 5000);
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - 60_000..=now).contains(&facts["now"].as_i64().expect("now_ms")));
    let facts = reported(
        &server
            .post(
                &format!("/api/groups/{group}/messages"),
                Some(&cat.token),
                json!({"content": "facts"}),
            )
            .await,
    );
    assert_eq!(facts["type"], "group");
    assert_eq!(facts["members"], 3);
    assert_eq!(facts["role"], "moderator");
    assert!(facts["visibility"].is_null());
}

#[tokio::test]
async fn monitor_mode_enforces_nothing_and_audits_what_it_would_have_done() {
    let server = TestServer::start_with_plugins(
        &[
            (
                "80_watch.rhai",
                r#"
fn on_message(ctx) { deny("Would refuse") }
fn on_mute(ctx) { modify(#{ duration_ms: 1000 }) }
"#,
            ),
            ("80_watch.toml", "mode = \"monitor\"\n"),
        ],
        |_| {},
    )
    .await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "watched", "public", true).await;
    join(&server, &id, &[&bob]).await;
    let base = format!("/api/channels/{id}");
    let sent = server.channel_message(&bob, &id, "hello there").await;
    let keys = member_keys(&server, &ada, &base).await;
    assert_eq!(decrypt_message(&keys, &sent), "hello there");
    let answer = server
        .graphql(
            Some(&ada.token),
            GQL_MUTE,
            json!({"id": id, "m": bob.id, "d": 60_000}),
        )
        .await;
    let until = ms_from_now(&gql_data(&answer)["muteMember"]["until"]);
    assert!(until > 50_000, "the monitor's change took effect: {until}");

    let entries = by_plugin(&audit(&server, &ada, "channels", &id).await, "80_watch");
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("message", "simulated", "Would refuse"),
            ("mute", "simulated", "duration_ms changed"),
        ]
    );
    assert_eq!(entries[0]["actorId"], bob.id.to_string());
    assert_eq!(entries[1]["targetId"], bob.id.to_string());
}

#[tokio::test]
async fn settings_for_one_context_switch_a_plugin_off_or_change_its_keys() {
    let server = TestServer::start_with_plugins(
        &[
            (
                "90_length.rhai",
                r#"
fn on_message(ctx) {
    let limit = ctx.config.max_len;
    if ctx.params.content.len() > limit { return deny(`Longer than ${limit}`); }
}
"#,
            ),
            ("90_length.toml", "max_len = 5\n"),
        ],
        |_| {},
    )
    .await;
    let ada = server.member("Ada").await;
    let off = server.channel(&ada, "free", "public", true).await;
    let wide = server.channel(&ada, "wide", "public", true).await;
    let plain = server.channel(&ada, "plain", "public", true).await;
    let group = server.group(&ada, "Group", &[]).await;
    std::fs::write(
        server.plugins_dir().join("90_length.toml"),
        format!(
            "max_len = 5\n[context.\"{off}\"]\nenabled = false\n[context.\"{wide}\"]\nmax_len = 10\n[context.\"{group}\"]\nmax_len = 7\n"
        ),
    )
    .expect("write settings");
    let report = server.state.plugins.registry.reload();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let send = async |kind: &str, id: &str, text: &str| {
        server
            .post(
                &format!("/api/{kind}/{id}/messages"),
                Some(&ada.token),
                json!({"content": text}),
            )
            .await
    };
    send("channels", &off, "far longer than five")
        .await
        .data(201);
    send("channels", &wide, "12345678").await.data(201);
    denied(
        &send("channels", &wide, "12345678901").await,
        "90_length",
        "Longer than 10",
    );
    denied(
        &send("channels", &plain, "123456").await,
        "90_length",
        "Longer than 5",
    );
    send("channels", &plain, "12345").await.data(201);
    denied(
        &send("groups", &group, "12345678").await,
        "90_length",
        "Longer than 7",
    );
    send("groups", &group, "1234567").await.data(201);
    assert!(by_plugin(&audit(&server, &ada, "channels", &off).await, "90_length").is_empty());
}

#[tokio::test]
async fn no_plugin_is_asked_for_someone_outside_the_context() {
    let server = TestServer::start_with_plugins(
        &[(
            "95_all.rhai",
            r#"
fn on_message(ctx) { deny("Nobody talks") }
fn on_join(ctx) { deny("Nobody joins") }
fn on_mute(ctx) { deny("Nobody mutes") }
"#,
        )],
        |_| {},
    )
    .await;
    let ada = server.member("Ada").await;
    let eve = server.member("Eve").await;
    let hidden = server.channel(&ada, "hidden", "invisible", true).await;
    let private = server.channel(&ada, "private", "private", true).await;
    // Invisible stays invisible: 404, not the plugin's 403.
    for path in [
        format!("/api/channels/{hidden}/messages"),
        format!("/api/channels/{hidden}/join"),
        format!("/api/channels/{hidden}/mute/{}", ada.id),
    ] {
        server
            .post(
                &path,
                Some(&eve.token),
                json!({"content": "hi", "durationMs": 1000}),
            )
            .await
            .error(404, "NOT_FOUND");
    }
    // Elsewhere: the action's own refusal.
    let answer = server
        .post(
            &format!("/api/channels/{private}/join"),
            Some(&eve.token),
            json!({}),
        )
        .await;
    answer.error(403, "FORBIDDEN");
    assert!(answer.body["error"]["details"].is_null(), "{}", answer.body);
    let answer = server
        .post(
            &format!("/api/channels/{private}/messages"),
            Some(&eve.token),
            json!({"content": "hi"}),
        )
        .await;
    answer.error(403, "FORBIDDEN");
    assert!(answer.body["error"]["details"].is_null(), "{}", answer.body);
    // A group id is no channel.
    let group = server.group(&ada, "G", &[]).await;
    server
        .post(
            &format!("/api/channels/{group}/messages"),
            Some(&ada.token),
            json!({"content": "hi"}),
        )
        .await
        .error(404, "NOT_FOUND");
    for id in [&hidden, &private] {
        assert!(audit(&server, &ada, "channels", id).await.is_empty());
    }
}

const COUNTER: &str = r#"
fn on_event(ctx) {
    state_incr("events", 1);
    state_incr(ctx.params.type, 1);
}
"#;

/// Sends a request again while the answer is 503 with `Retry-After`, as a client does:
/// two nodes writing to one SQLite file at once make some transactions busy.
async fn retrying<F, Fut>(mut send: F) -> Answer
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    for _ in 0..20 {
        let answer = send().await;
        if answer.status.as_u16() != 503 {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send().await
}

/// A counter the `10_count` plugin keeps.
async fn counted(server: &TestServer, key: &str) -> i64 {
    let store = server.state.plugins.state.clone();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        store
            .get("10_count", &key, chrono::Utc::now().timestamp_millis())
            .expect("the state store answers")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    })
    .await
    .expect("the read ran")
}

#[tokio::test]
async fn on_event_runs_once_per_event_across_two_nodes() {
    let one = TestServer::start_with_plugins(&[("10_count.rhai", COUNTER)], |_| {}).await;
    let two = one.restart().await;
    let ada = one.member("Ada").await;
    let bob = one.member("Bob").await;
    let id = one.channel(&ada, "counted", "public", true).await;
    // Bob joins through the other node; both nodes relay every event.
    let join_path = format!("/api/channels/{id}/join");
    retrying(|| two.post(&join_path, Some(&bob.token), json!({})))
        .await
        .data(200);
    // Typing is ephemeral: with the in-process bus it reaches the typist's node only.
    let mut watcher = one.ws(&ada).await;
    let mut typist = one.ws(&bob).await;
    let path = format!("/api/channels/{id}/messages");
    for n in 0..3 {
        let body = json!({"content": format!("from one {n}")});
        retrying(|| one.post(&path, Some(&ada.token), body.clone()))
            .await
            .data(201);
    }
    for n in 0..2 {
        let body = json!({"content": format!("from two {n}")});
        retrying(|| two.post(&path, Some(&bob.token), body.clone()))
            .await
            .data(201);
    }
    // Typing is left out of on_event.
    typist
        .send(json!({"type": "typing_start", "contextType": "channel", "contextId": id}))
        .await;
    watcher.expect("communication:typing_start").await;
    // A direct message has no group or channel: left out too.
    let body = json!({"recipientId": bob.id, "content": "psst"});
    retrying(|| one.post("/api/conversations", Some(&ada.token), body.clone()))
        .await
        .data(201);

    // 1 member_joined on creation, 1 on Bob's join, 5 message_sent.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counted(&one, "events").await < 7 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for a second run to show, if there were one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(counted(&one, "events").await, 7);
    assert_eq!(counted(&two, "communication:message_sent").await, 5);
    assert_eq!(counted(&one, "communication:member_joined").await, 2);
    assert_eq!(counted(&one, "communication:typing_start").await, 0);
}

#[tokio::test]
async fn a_mutation_over_the_graphql_socket_is_refused_like_any_other() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let server = TestServer::start_with_plugins(&[("50_words.rhai", MESSAGE_PLUGIN)], |_| {}).await;
    let ada = server.member("Ada").await;
    let id = server.channel(&ada, "socket", "public", true).await;
    let mut request = format!("{}/graphql/ws", server.base.replacen("http://", "ws://", 1))
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    let mut send = async |frame: Value| {
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    };
    send(json!({"type": "connection_init", "payload": {"token": ada.token}})).await;
    let query = "mutation($id: UUID!, $c: String!) { sendMessage(kind: CHANNEL, contextId: $id, content: $c) { id } }";
    send(json!({"type": "subscribe", "id": "1", "payload": {"query": query, "variables": {"id": id, "c": "forbidden"}}})).await;
    let mut result = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while result.is_none() {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("an answer within 5 s")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).expect("json");
            if value["type"] == "next" {
                result = Some(value["payload"].clone());
            }
        }
    }
    let payload = result.expect("a result");
    gql_denied(&payload, "50_words", "Watch your language");
}
