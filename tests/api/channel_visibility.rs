//! The visibility table: four modes × member and non-member × every channel route.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestServer;

const MODES: [&str; 4] = ["public", "private", "secret", "invisible"];

/// Every channel route a non-member might try, with a body where it takes one.
fn routes(
    channel: &str,
    message: &str,
    reaction: &str,
    owner: &str,
) -> Vec<(Method, String, Option<Value>)> {
    let c = format!("/api/channels/{channel}");
    vec![
        (Method::GET, format!("{c}/messages"), None),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(json!({"content": "hi"})),
        ),
        (
            Method::PUT,
            format!("{c}/messages/{message}"),
            Some(json!({"content": "hi"})),
        ),
        (Method::DELETE, format!("{c}/messages/{message}"), None),
        (
            Method::POST,
            format!("{c}/messages/{message}/reactions"),
            Some(json!({"emoji": "👍"})),
        ),
        (
            Method::DELETE,
            format!("{c}/messages/{message}/reactions/{reaction}"),
            None,
        ),
        (
            Method::POST,
            format!("{c}/messages/{message}/pin"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("{c}/messages/{message}/pin"), None),
        (
            Method::POST,
            format!("{c}/mute/{owner}"),
            Some(json!({"durationMs": 1000})),
        ),
        (Method::DELETE, format!("{c}/mute/{owner}"), None),
        (Method::POST, format!("{c}/kick/{owner}"), Some(json!({}))),
        (
            Method::PUT,
            format!("{c}/roles/{owner}"),
            Some(json!({"role": "member"})),
        ),
        (Method::POST, format!("{c}/invites"), Some(json!({}))),
        (Method::GET, format!("{c}/keys"), None),
        (Method::POST, format!("{c}/leave"), Some(json!({}))),
        (Method::PUT, c.clone(), Some(json!({"topic": "mine"}))),
        (Method::DELETE, c, None),
    ]
}

#[tokio::test]
async fn non_members_see_each_mode_as_the_contract_says() {
    let server = TestServer::start().await;
    let owner = server.member("Owner").await;
    let outsider = server.member("Outsider").await;
    let newcomer = server.member("Newcomer").await;
    for mode in MODES {
        let channel = server
            .channel(&owner, &format!("vis-{mode}"), mode, true)
            .await;
        let message = server.channel_message(&owner, &channel, "inside").await;
        let message_id = message["id"].as_str().expect("id");
        let reaction = server
            .post(
                &format!("/api/channels/{channel}/messages/{message_id}/reactions"),
                Some(&owner.token),
                json!({"emoji": "👍"}),
            )
            .await;
        let reaction_id = reaction.data(201)["reactionId"]
            .as_str()
            .expect("id")
            .to_owned();
        let token = server.invite(&owner, &channel, json!({})).await;

        // Listing.
        let list = server
            .get("/api/channels?limit=100", Some(&outsider.token))
            .await;
        let listed = list.data(200)["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|c| c["id"] == channel);
        assert_eq!(
            listed,
            matches!(mode, "public" | "private"),
            "{mode}: listed for non-members"
        );
        let list = server
            .get("/api/channels?limit=100", Some(&owner.token))
            .await;
        let mine = list.data(200)["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|c| c["id"] == channel)
            .cloned();
        let mine = mine.unwrap_or_else(|| panic!("{mode}: members see their channel listed"));
        assert_eq!(mine["memberCount"], 1);
        assert_eq!(mine["visibility"], mode);

        // Metadata.
        let meta = server
            .get(&format!("/api/channels/{channel}"), Some(&outsider.token))
            .await;
        match mode {
            "public" => assert_eq!(meta.data(200)["id"], channel),
            "invisible" => meta.error(404, "NOT_FOUND"),
            _ => meta.error(403, "FORBIDDEN"),
        }

        // Every other route.
        let (status, code) = if mode == "invisible" {
            (404, "NOT_FOUND")
        } else {
            (403, "FORBIDDEN")
        };
        for (method, path, body) in
            routes(&channel, message_id, &reaction_id, &owner.id.to_string())
        {
            let answer = server
                .call(method.clone(), &path, Some(&outsider.token), body)
                .await;
            assert_eq!(
                answer.status.as_u16(),
                status,
                "{mode}: non-member {method} {path}: {}",
                answer.body
            );
            assert_eq!(
                answer.body["error"]["code"], code,
                "{mode}: {method} {path}"
            );
        }

        // Joining directly works only for public channels.
        let join = server
            .post(
                &format!("/api/channels/{channel}/join"),
                Some(&outsider.token),
                json!({}),
            )
            .await;
        match mode {
            "public" => {
                join.data(200);
            }
            "invisible" => join.error(404, "NOT_FOUND"),
            _ => join.error(403, "FORBIDDEN"),
        }

        // An invite opens every mode; then the newcomer is a member like any other.
        server
            .post(
                &format!("/api/channels/{channel}/invites/{token}/redeem"),
                Some(&newcomer.token),
                json!({}),
            )
            .await
            .data(200);
        assert_eq!(
            server
                .get(&format!("/api/channels/{channel}"), Some(&newcomer.token))
                .await
                .data(200)["visibility"],
            mode
        );
        let history = server
            .get(
                &format!("/api/channels/{channel}/messages"),
                Some(&newcomer.token),
            )
            .await;
        assert_eq!(
            history.data(200)["items"].as_array().expect("items").len(),
            1,
            "{mode}"
        );
        let own = server.channel_message(&newcomer, &channel, "me too").await;
        let own_id = own["id"].as_str().expect("id").to_owned();
        server
            .get(
                &format!("/api/channels/{channel}/keys"),
                Some(&newcomer.token),
            )
            .await
            .data(200);
        let list = server
            .get("/api/channels?limit=100", Some(&newcomer.token))
            .await;
        assert!(
            list.data(200)["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|c| c["id"] == channel),
            "{mode}"
        );
        // Member-level permissions, not visibility, decide the rest.
        for (method, path, body) in [
            (
                Method::PUT,
                format!("/api/channels/{channel}"),
                Some(json!({"topic": "mine"})),
            ),
            (Method::DELETE, format!("/api/channels/{channel}"), None),
            (
                Method::POST,
                format!("/api/channels/{channel}/invites"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/api/channels/{channel}/kick/{}", owner.id),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/api/channels/{channel}/messages/{message_id}/pin"),
                Some(json!({})),
            ),
            (
                Method::DELETE,
                format!("/api/channels/{channel}/messages/{message_id}/pin"),
                None,
            ),
            (
                Method::PUT,
                format!("/api/channels/{channel}/messages/{message_id}"),
                Some(json!({"content": "not mine"})),
            ),
            (
                Method::DELETE,
                format!("/api/channels/{channel}/messages/{message_id}"),
                None,
            ),
            (
                Method::DELETE,
                format!("/api/channels/{channel}/messages/{message_id}/reactions/{reaction_id}"),
                None,
            ),
            (
                Method::POST,
                format!("/api/channels/{channel}/mute/{}", owner.id),
                Some(json!({"durationMs": 1000})),
            ),
            (
                Method::DELETE,
                format!("/api/channels/{channel}/mute/{}", owner.id),
                None,
            ),
            (
                Method::PUT,
                format!("/api/channels/{channel}/roles/{}", owner.id),
                Some(json!({"role": "member"})),
            ),
        ] {
            let answer = server
                .call(method.clone(), &path, Some(&newcomer.token), body)
                .await;
            assert_eq!(
                answer.status.as_u16(),
                403,
                "{mode}: member {method} {path}: {}",
                answer.body
            );
            assert_eq!(answer.body["error"]["code"], "FORBIDDEN");
        }
        // What a member may do, it may do in every mode.
        let base = format!("/api/channels/{channel}");
        server
            .put(
                &format!("{base}/messages/{own_id}"),
                Some(&newcomer.token),
                json!({"content": "edited"}),
            )
            .await
            .data(200);
        let reaction = server
            .post(
                &format!("{base}/messages/{message_id}/reactions"),
                Some(&newcomer.token),
                json!({"emoji": "🎉"}),
            )
            .await;
        let mine = reaction.data(201)["reactionId"]
            .as_str()
            .expect("id")
            .to_owned();
        server
            .delete(
                &format!("{base}/messages/{message_id}/reactions/{mine}"),
                Some(&newcomer.token),
            )
            .await
            .data(200);
        server
            .delete(&format!("{base}/messages/{own_id}"), Some(&newcomer.token))
            .await
            .data(200);
        server.get(&base, Some(&newcomer.token)).await.data(200);
        server
            .post(&format!("{base}/join"), Some(&newcomer.token), json!({}))
            .await
            .error(409, "ALREADY_EXISTS");
        server
            .post(&format!("{base}/leave"), Some(&newcomer.token), json!({}))
            .await
            .data(200);
        let after = server.get(&base, Some(&newcomer.token)).await;
        match mode {
            "public" => {
                after.data(200);
            }
            "invisible" => after.error(404, "NOT_FOUND"),
            _ => after.error(403, "FORBIDDEN"),
        }
    }
}
