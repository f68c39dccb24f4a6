//! Channels larger than one statement's bind parameters (SQLite binds at most 32,766,
//! PostgreSQL 65,535): joining and leaving still rotate the key for everyone.

use entity::{context_member, member, member_key};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use crate::common::{TestServer, member_keys, new_keypair};

/// Members written straight to the database (registering 7,000 through the API would only
/// make the test slow), each with a real public key so keys can be wrapped for it.
async fn crowd(server: &TestServer, channel: Uuid, count: usize) {
    let now = brightchat::time::now_ms();
    let people: Vec<(Uuid, Vec<u8>)> = (0..count)
        .map(|_| {
            let (_, public) = new_keypair();
            (Uuid::now_v7(), hex::decode(public).expect("hex"))
        })
        .collect();
    for chunk in people.chunks(1_000) {
        member::Entity::insert_many(chunk.iter().enumerate().map(|(n, (id, key))| {
            member::ActiveModel {
                id: Set(*id),
                display_name: Set(format!("crowd {n}")),
                public_key: Set(key.clone()),
                created_at: Set(now),
            }
        }))
        .exec_without_returning(&server.state.db.write)
        .await
        .expect("members");
        context_member::Entity::insert_many(chunk.iter().map(|(id, _)| {
            context_member::ActiveModel {
                context_id: Set(channel),
                member_id: Set(*id),
                role: Set("member".into()),
                joined_at: Set(now),
                muted_until: Set(None),
                history_after: Set(None),
            }
        }))
        .exec_without_returning(&server.state.db.write)
        .await
        .expect("memberships");
    }
}

#[tokio::test]
async fn a_channel_of_seven_thousand_members_rotates_its_key_on_join_and_leave() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let id = server.channel(&owner, "stadium", "public", true).await;
    let channel = Uuid::parse_str(&id).expect("id");
    // Over 6,553 members is more key copies (5 columns each) than SQLite binds at once.
    crowd(&server, channel, 7_000).await;

    let newcomer = server.member("newcomer").await;
    server
        .post(
            &format!("/api/channels/{id}/join"),
            Some(&newcomer.token),
            json!({}),
        )
        .await
        .data(200);
    // The newcomer holds the new epoch and reads what is sent under it.
    server.channel_message(&owner, &id, "welcome").await;
    let keys = member_keys(&server, &newcomer, &format!("/api/channels/{id}")).await;
    assert!(!keys.is_empty());
    let history = server
        .get(
            &format!("/api/channels/{id}/messages"),
            Some(&newcomer.token),
        )
        .await;
    let message = history.data(200)["items"][0].clone();
    assert_eq!(crate::common::decrypt_message(&keys, &message), "welcome");

    // Leaving rotates the key, wrapped for each of the 7,001 who stay.
    server
        .post(
            &format!("/api/channels/{id}/leave"),
            Some(&newcomer.token),
            json!({}),
        )
        .await
        .data(200);
    let owner_keys = member_keys(&server, &owner, &format!("/api/channels/{id}")).await;
    assert_eq!(owner_keys.len(), 2, "the first epoch and the rotated one");
    let copies = member_key::Entity::find()
        .filter(member_key::Column::ContextId.eq(channel))
        .filter(member_key::Column::Epoch.eq(2))
        .count(&server.state.db.read)
        .await
        .expect("count");
    assert_eq!(copies, 7_001, "every remaining member holds the new key");
    server.channel_message(&owner, &id, "after").await;
    let history = server
        .get(&format!("/api/channels/{id}/messages"), Some(&owner.token))
        .await;
    let items = history.data(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    // History is oldest first.
    let newest = items.last().cloned().expect("a message");
    assert_eq!(
        crate::common::decrypt_message(&owner_keys, &newest),
        "after"
    );
}
