//! Channels larger than one statement's bind parameters (SQLite binds at most 32,766,
//! PostgreSQL 65,535): joining and leaving still rotate the key for everyone.

use entity::{context_member, member, member_key};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use crate::common::{TestMember, TestServer, member_keys, new_keypair};

/// Members written straight to the database (registering 7,000 through the API would only
/// make the test slow), each with a real key pair so keys can be wrapped for it; returns
/// their ids and secret keys.
async fn crowd(server: &TestServer, channel: Uuid, count: usize) -> Vec<(Uuid, [u8; 32])> {
    let now = brightchat::time::now_ms();
    let people: Vec<(Uuid, Vec<u8>, [u8; 32])> = (0..count)
        .map(|_| {
            let (secret, public) = new_keypair();
            (Uuid::now_v7(), hex::decode(public).expect("hex"), secret)
        })
        .collect();
    for chunk in people.chunks(1_000) {
        member::Entity::insert_many(chunk.iter().enumerate().map(|(n, (id, key, _))| {
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
        context_member::Entity::insert_many(chunk.iter().map(|(id, _, _)| {
            context_member::ActiveModel {
                context_id: Set(channel),
                member_id: Set(*id),
                role: Set("member".into()),
                joined_at: Set(now),
                muted_until: Set(None),
                history_after: Set(None),
                key_epoch_from: Set(1),
            }
        }))
        .exec_without_returning(&server.state.db.write)
        .await
        .expect("memberships");
    }
    people
        .into_iter()
        .map(|(id, _, secret)| (id, secret))
        .collect()
}

#[tokio::test]
async fn a_channel_of_seven_thousand_members_rotates_its_key_on_join_and_leave() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let id = server.channel(&owner, "stadium", "public", true).await;
    let channel = Uuid::parse_str(&id).expect("id");
    // Over 6,553 members is more key copies (5 columns each) than SQLite binds at once.
    let people = crowd(&server, channel, 7_000).await;

    let newcomer = server.member("newcomer").await;
    server.join(&newcomer, &id).await;
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

    // Leaving rotates the key: one new epoch, wrapped for the server only.
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
    assert_eq!(
        copies, 1,
        "rotation wraps for nobody; the owner's read of its keys made its copy"
    );
    server.channel_message(&owner, &id, "after").await;
    // Any of the 7,001 who stay gets the new key on its first read, and reads with it.
    let (crowd_id, crowd_secret) = people[people.len() / 2];
    let stayer = TestMember {
        id: crowd_id,
        secret: crowd_secret,
        public_hex: String::new(),
        token: server.sign_in(crowd_id, &crowd_secret).await,
    };
    let stayer_keys = member_keys(&server, &stayer, &format!("/api/channels/{id}")).await;
    assert_eq!(
        stayer_keys
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [1, 2].into(),
        "a member since before the join holds both epochs"
    );
    let history = server
        .get(&format!("/api/channels/{id}/messages"), Some(&stayer.token))
        .await;
    let items = history.data(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    let newest = items.last().cloned().expect("a message");
    assert_eq!(
        crate::common::decrypt_message(&stayer_keys, &newest),
        "after"
    );
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
