//! Key rotation that costs the same whatever the member count: a rotation wraps the new
//! epoch key for the server only, and each member's copy is made on its first read of
//! `…/keys` (then kept). Members get exactly the epochs they are entitled to.

use std::collections::BTreeSet;
use std::time::Instant;

use entity::member_key;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestMember, TestServer, decrypt_message, gql_code, member_keys, seed_members};

/// The epochs a member reads from `…/keys`, unwrapped with its own secret key.
async fn epochs(server: &TestServer, member: &TestMember, base: &str) -> BTreeSet<i64> {
    member_keys(server, member, base)
        .await
        .keys()
        .copied()
        .collect()
}

/// The texts of the messages a member is shown, decrypted with the keys it reads.
async fn read_all(server: &TestServer, member: &TestMember, base: &str) -> Vec<String> {
    let keys = member_keys(server, member, base).await;
    let history = server
        .get(&format!("{base}/messages?limit=100"), Some(&member.token))
        .await;
    history.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| decrypt_message(&keys, m))
        .collect()
}

async fn join(server: &TestServer, member: &TestMember, base: &str) {
    server
        .post(&format!("{base}/join"), Some(&member.token), json!({}))
        .await
        .data(200);
}

async fn leave(server: &TestServer, member: &TestMember, base: &str) {
    server
        .post(&format!("{base}/leave"), Some(&member.token), json!({}))
        .await
        .data(200);
}

async fn kick(server: &TestServer, by: &TestMember, target: &TestMember, base: &str) {
    server
        .post(
            &format!("{base}/kick/{}", target.id),
            Some(&by.token),
            json!({}),
        )
        .await
        .data(200);
}

async fn key_epoch(server: &TestServer, member: &TestMember, base: &str) -> i64 {
    server.get(base, Some(&member.token)).await.data(200)["keyEpoch"]
        .as_i64()
        .expect("keyEpoch")
}

/// Copies of one epoch stored for anyone.
async fn copies_of(server: &TestServer, context: &str, epoch: i32) -> u64 {
    member_key::Entity::find()
        .filter(member_key::Column::ContextId.eq(Uuid::parse_str(context).expect("id")))
        .filter(member_key::Column::Epoch.eq(epoch))
        .count(&server.state.db.read)
        .await
        .expect("count")
}

#[tokio::test]
async fn newcomers_read_exactly_the_epochs_they_are_entitled_to() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let passer = server.member("passer").await;

    // History visible: epochs 1 and 2 exist (a leave rotated), then a newcomer joins.
    let open = server.channel(&owner, "open", "public", true).await;
    let open_base = format!("/api/channels/{open}");
    server.channel_message(&owner, &open, "one").await;
    join(&server, &passer, &open_base).await;
    leave(&server, &passer, &open_base).await;
    server.channel_message(&owner, &open, "two").await;
    let reader = server.member("reader").await;
    join(&server, &reader, &open_base).await;
    assert_eq!(key_epoch(&server, &reader, &open_base).await, 2);
    assert_eq!(epochs(&server, &reader, &open_base).await, [1, 2].into());
    assert_eq!(read_all(&server, &reader, &open_base).await, ["one", "two"]);

    // History hidden: the join rotates, and the newcomer gets only the new epoch.
    let closed = server.channel(&owner, "closed", "public", false).await;
    let closed_base = format!("/api/channels/{closed}");
    server.channel_message(&owner, &closed, "before").await;
    join(&server, &reader, &closed_base).await;
    server.channel_message(&owner, &closed, "after").await;
    assert_eq!(epochs(&server, &reader, &closed_base).await, [2].into());
    assert_eq!(read_all(&server, &reader, &closed_base).await, ["after"]);
    assert_eq!(epochs(&server, &owner, &closed_base).await, [1, 2].into());
    assert_eq!(
        read_all(&server, &owner, &closed_base).await,
        ["before", "after"]
    );

    // Pages of one epoch, cursor by epoch, end where the entitlement ends.
    let first = server
        .get(&format!("{closed_base}/keys?limit=1"), Some(&owner.token))
        .await;
    let first = first.data(200).clone();
    assert_eq!(first["items"][0]["epoch"], 1);
    assert_eq!(first["hasMore"], true);
    let cursor = first["cursor"].as_str().expect("cursor");
    let second = server
        .get(
            &format!("{closed_base}/keys?limit=1&cursor={cursor}"),
            Some(&owner.token),
        )
        .await;
    let second = second.data(200).clone();
    assert_eq!(second["items"][0]["epoch"], 2);
    assert_eq!(second["hasMore"], false);
    // The newcomer's cursor ends its own list: nothing before epoch 2 slips in.
    let own = server
        .get(&format!("{closed_base}/keys?limit=1"), Some(&reader.token))
        .await;
    let own = own.data(200).clone();
    assert_eq!(own["items"].as_array().expect("items").len(), 1);
    assert_eq!(own["items"][0]["epoch"], 2);
    assert_eq!(own["hasMore"], false);

    // A group: someone added later gets every epoch and reads all history.
    let ann = server.member("ann").await;
    let group = server.group(&owner, "team", &[&ann]).await;
    let group_base = format!("/api/groups/{group}");
    server.group_message(&owner, &group, "early").await;
    server
        .post(
            &format!("{group_base}/members"),
            Some(&owner.token),
            json!({"memberIds": [reader.id]}),
        )
        .await
        .data(200);
    server.group_message(&ann, &group, "late").await;
    assert_eq!(epochs(&server, &reader, &group_base).await, [1, 2].into());
    assert_eq!(
        read_all(&server, &reader, &group_base).await,
        ["early", "late"]
    );
}

#[tokio::test]
async fn after_a_kick_or_a_leave_the_rest_read_on_and_the_departed_get_nothing() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let stayer = server.member("stayer").await;
    let victim = server.member("victim").await;
    let leaver = server.member("leaver").await;
    let id = server.channel(&owner, "hall", "public", true).await;
    let base = format!("/api/channels/{id}");
    for member in [&stayer, &victim, &leaver] {
        join(&server, member, &base).await;
    }
    server.channel_message(&owner, &id, "all of us").await;
    // The departed read their keys before going, so they held copies.
    assert_eq!(epochs(&server, &victim, &base).await, [1].into());
    assert_eq!(epochs(&server, &leaver, &base).await, [1].into());

    let mut owner_ws = server.ws(&owner).await;
    kick(&server, &owner, &victim, &base).await;
    assert_eq!(
        owner_ws.expect("communication:key_rotated").await["data"],
        json!({"epoch": 2})
    );
    leave(&server, &leaver, &base).await;
    assert_eq!(
        owner_ws.expect("communication:key_rotated").await["data"],
        json!({"epoch": 3})
    );
    server.channel_message(&stayer, &id, "without them").await;

    assert_eq!(epochs(&server, &stayer, &base).await, [1, 2, 3].into());
    assert_eq!(
        read_all(&server, &stayer, &base).await,
        ["all of us", "without them"]
    );
    assert_eq!(
        read_all(&server, &owner, &base).await,
        ["all of us", "without them"]
    );
    for departed in [&victim, &leaver] {
        server
            .get(&format!("{base}/keys"), Some(&departed.token))
            .await
            .error(403, "FORBIDDEN");
        let held = member_key::Entity::find()
            .filter(member_key::Column::MemberId.eq(departed.id))
            .count(&server.state.db.read)
            .await
            .expect("count");
        assert_eq!(held, 0, "a departed member's copies are deleted");
    }
    // Nobody got a copy of the new epochs who did not read it.
    assert_eq!(copies_of(&server, &id, 3).await, 2, "owner and stayer");

    // Re-joining a channel whose history is now hidden: only the epoch made at the join.
    server.set_channel_history(&owner, &id, false).await;
    join(&server, &leaver, &base).await;
    assert_eq!(epochs(&server, &leaver, &base).await, [4].into());
    server.channel_message(&owner, &id, "welcome back").await;
    assert_eq!(read_all(&server, &leaver, &base).await, ["welcome back"]);
}

impl TestServer {
    /// Sets `historyVisibleToNewMembers` of a channel as its owner.
    async fn set_channel_history(&self, owner: &TestMember, id: &str, visible: bool) {
        self.put(
            &format!("/api/channels/{id}"),
            Some(&owner.token),
            json!({"historyVisibleToNewMembers": visible}),
        )
        .await
        .data(200);
    }
}

#[tokio::test]
async fn concurrent_first_reads_return_the_same_copies() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let passer = server.member("passer").await;
    let id = server.channel(&owner, "busy", "public", true).await;
    let base = format!("/api/channels/{id}");
    // Five epochs, none of them read by the newcomer yet.
    for _ in 0..4 {
        join(&server, &passer, &base).await;
        leave(&server, &passer, &base).await;
    }
    let reader = server.member("reader").await;
    join(&server, &reader, &base).await;

    let path = format!("{base}/keys?limit=100");
    let reads = (0..8).map(|_| server.get(&path, Some(&reader.token)));
    let answers = futures_util::future::join_all(reads).await;
    let pages: Vec<Value> = answers
        .iter()
        .map(|a| a.data(200)["items"].clone())
        .collect();
    assert_eq!(pages[0].as_array().expect("items").len(), 5);
    for page in &pages[1..] {
        assert_eq!(page, &pages[0], "every first read returns the kept copies");
    }
    // Later reads, over REST and GraphQL, return the same bytes.
    let again = server
        .get(&format!("{base}/keys?limit=100"), Some(&reader.token))
        .await;
    assert_eq!(again.data(200)["items"], pages[0]);
    let gql = server
        .graphql(
            Some(&reader.token),
            "query($id: UUID!) { keys(kind: CHANNEL, contextId: $id, page: {limit: 100}) \
             { items { epoch encryptedKey createdAt } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(gql_code(&gql), None, "{gql}");
    assert_eq!(gql["data"]["keys"]["items"], pages[0]);
    for epoch in 1..=5 {
        assert_eq!(copies_of(&server, &id, epoch).await, 1, "epoch {epoch}");
    }
    // And they open the messages.
    server.channel_message(&owner, &id, "hello").await;
    assert_eq!(read_all(&server, &reader, &base).await, ["hello"]);
}

#[tokio::test]
async fn a_channel_of_one_hundred_thousand_members_rotates_in_constant_work() {
    const CROWD: usize = 100_000;
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let stayer = server.member("stayer").await;
    let victim = server.member("victim").await;
    let leaver = server.member("leaver").await;
    let newcomer = server.member("newcomer").await;
    // History hidden, so joins rotate too.
    let id = server.channel(&owner, "arena", "public", false).await;
    let base = format!("/api/channels/{id}");
    for member in [&stayer, &victim, &leaver] {
        join(&server, member, &base).await;
    }
    // Epoch 4 now. The crowd's public keys are no keys at all: any ECIES for them fails,
    // so the steps below can only succeed without wrapping for the crowd.
    let started = Instant::now();
    let crowd = seed_members(&server, Uuid::parse_str(&id).expect("id"), CROWD, 4).await;
    let seeded = started.elapsed();
    assert_eq!(
        server.get(&base, Some(&owner.token)).await.data(200)["memberCount"],
        CROWD + 4
    );
    let mut owner_ws = server.ws(&owner).await;

    let step = Instant::now();
    join(&server, &newcomer, &base).await;
    let joined = step.elapsed();
    assert_eq!(
        owner_ws.expect("communication:key_rotated").await["data"],
        json!({"epoch": 5})
    );
    server.channel_message(&newcomer, &id, "hello crowd").await;

    let step = Instant::now();
    kick(&server, &owner, &victim, &base).await;
    let kicked = step.elapsed();
    assert_eq!(
        owner_ws.expect("communication:key_rotated").await["data"],
        json!({"epoch": 6})
    );
    let step = Instant::now();
    leave(&server, &leaver, &base).await;
    let left = step.elapsed();
    assert_eq!(
        owner_ws.expect("communication:key_rotated").await["data"],
        json!({"epoch": 7})
    );
    // A seeded member can be kicked as well: it goes without a copy to delete.
    kick(
        &server,
        &owner,
        &TestMember {
            id: crowd[CROWD / 2],
            secret: [1; 32],
            public_hex: String::new(),
            token: String::new(),
        },
        &base,
    )
    .await;
    assert_eq!(
        owner_ws.expect("communication:key_rotated").await["data"],
        json!({"epoch": 8})
    );
    server.channel_message(&owner, &id, "fewer of us").await;
    assert_eq!(key_epoch(&server, &owner, &base).await, 8);

    let step = Instant::now();
    assert_eq!(epochs(&server, &owner, &base).await, (1..=8).collect());
    let first_read = step.elapsed();
    let step = Instant::now();
    assert_eq!(epochs(&server, &owner, &base).await, (1..=8).collect());
    let second_read = step.elapsed();
    assert_eq!(epochs(&server, &stayer, &base).await, (2..=8).collect());
    assert_eq!(epochs(&server, &newcomer, &base).await, (5..=8).collect());
    assert_eq!(
        read_all(&server, &newcomer, &base).await,
        ["hello crowd", "fewer of us"]
    );
    // The stayer joined after the first message, with history hidden.
    assert_eq!(
        read_all(&server, &stayer, &base).await,
        ["hello crowd", "fewer of us"]
    );
    for departed in [&victim, &leaver] {
        server
            .get(&format!("{base}/keys"), Some(&departed.token))
            .await
            .error(403, "FORBIDDEN");
    }
    // The newest epoch has copies for the three who read it, not for 100,000 members.
    assert_eq!(copies_of(&server, &id, 8).await, 3);

    // The owner leaving hands over to the highest-ranked member, the crowd notwithstanding.
    server
        .put(
            &format!("{base}/roles/{}", newcomer.id),
            Some(&owner.token),
            json!({"role": "moderator"}),
        )
        .await
        .data(200);
    let step = Instant::now();
    leave(&server, &owner, &base).await;
    let owner_left = step.elapsed();
    server
        .put(
            &base,
            Some(&newcomer.token),
            json!({"topic": "under new ownership"}),
        )
        .await
        .data(200);
    server
        .put(&base, Some(&stayer.token), json!({"topic": "not mine"}))
        .await
        .error(403, "FORBIDDEN");
    assert_eq!(key_epoch(&server, &newcomer, &base).await, 9);
    // What one rotation cost when it wrapped for every member: time a sample of wraps.
    let (_, public) = crate::common::new_keypair();
    let public = hex::decode(public).expect("hex");
    let step = Instant::now();
    for _ in 0..200 {
        brightchat::crypto::ecies_encrypt(&public, &[7; 32]).expect("wraps");
    }
    let per_wrap = step.elapsed() / 200;
    eprintln!(
        "{CROWD} members: seeded in {seeded:?}; join {joined:?}, kick {kicked:?}, \
         leave {left:?}, owner's leave {owner_left:?}; owner's first read of 8 epochs {first_read:?}, second {second_read:?}; \
         one ECIES wrap {per_wrap:?}, so eager wrapping would cost ~{:?} per rotation",
        per_wrap * u32::try_from(CROWD).expect("small")
    );
}

#[tokio::test]
async fn the_migration_records_entitlement_from_the_copies_members_held() {
    use entity::{context, context_member, member};
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Set, Statement};

    let dir = tempfile::tempdir().expect("tempdir");
    let url = match crate::common::test_database_url() {
        Some(admin) => crate::common::fresh_postgres(&admin).await,
        None => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("upgrade.db").display()
        ),
    };
    let db = sea_orm::Database::connect(&url).await.expect("connect");
    // The schema before key entitlement was recorded on memberships.
    Migrator::up(&db, Some(6)).await.expect("migrate to 6");
    let [ann, bob, cat] = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    for (n, id) in [ann, bob, cat].into_iter().enumerate() {
        member::Entity::insert(member::ActiveModel {
            id: Set(id),
            display_name: Set(format!("m{n}")),
            public_key: Set(vec![0x07, u8::try_from(n).expect("small")]),
            created_at: Set(0),
        })
        .exec_without_returning(&db)
        .await
        .expect("member");
    }
    let channel = Uuid::now_v7();
    context::Entity::insert(context::ActiveModel {
        id: Set(channel),
        kind: Set("channel".into()),
        name: Set("old".into()),
        unique_name: Set(Some("old".into())),
        creator_id: Set(ann),
        created_at: Set(0),
        activity_at: Set(0),
        current_epoch: Set(3),
        history_visible: Set(false),
        visibility: Set(Some("public".into())),
        ..Default::default()
    })
    .exec_without_returning(&db)
    .await
    .expect("context");
    // Ann held epochs 1..=3, Bob joined at epoch 2, Cat holds none.
    for (member, epochs) in [(ann, vec![1, 2, 3]), (bob, vec![2, 3]), (cat, vec![])] {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO context_members (context_id, member_id, role, joined_at) \
             VALUES ($1, $2, 'member', 0)",
            [channel.into(), member.into()],
        ))
        .await
        .expect("membership");
        for epoch in epochs {
            member_key::Entity::insert(member_key::ActiveModel {
                context_id: Set(channel),
                member_id: Set(member),
                epoch: Set(epoch),
                created_at: Set(0),
                wrapped: Set(vec![1, 2, 3]),
            })
            .exec_without_returning(&db)
            .await
            .expect("copy");
        }
    }

    Migrator::up(&db, None).await.expect("migrate");
    let from = |member: Uuid| {
        let db = &db;
        async move {
            context_member::Entity::find_by_id((channel, member))
                .one(db)
                .await
                .expect("read")
                .expect("membership kept")
                .key_epoch_from
        }
    };
    assert_eq!(from(ann).await, 1);
    assert_eq!(from(bob).await, 2);
    assert_eq!(from(cat).await, 3, "no copies: the current epoch");
}
