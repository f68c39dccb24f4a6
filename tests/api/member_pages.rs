//! Member lists of groups and channels: the views embed the first 100 members and the
//! total, `GET /api/{groups,channels}/:id/members` and GraphQL `memberPage` page through
//! all of them by join time, then member id.

use entity::{context_member, member};
use sea_orm::{EntityTrait, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestServer, new_keypair};

/// Members written straight to the database, `count` of them, joining after everyone
/// already there, three at a time on the same millisecond (so the member id decides the
/// order among them). Returns every member id of the context in the expected order.
async fn crowd(server: &TestServer, context: &str, count: usize) -> Vec<String> {
    let context = Uuid::parse_str(context).expect("id");
    let existing = context_member::Entity::find()
        .all(&server.state.db.read)
        .await
        .expect("members");
    let start = existing
        .iter()
        .filter(|row| row.context_id == context)
        .map(|row| row.joined_at)
        .max()
        .expect("an owner")
        + 1;
    let people: Vec<(Uuid, Vec<u8>, i64)> = (0..count)
        .map(|n| {
            let (_, public) = new_keypair();
            let joined = start + i64::try_from(n / 3).expect("small");
            (Uuid::new_v4(), hex::decode(public).expect("hex"), joined)
        })
        .collect();
    member::Entity::insert_many(people.iter().enumerate().map(|(n, (id, key, _))| {
        member::ActiveModel {
            id: Set(*id),
            display_name: Set(format!("crowd {n}")),
            public_key: Set(key.clone()),
            created_at: Set(start),
        }
    }))
    .exec_without_returning(&server.state.db.write)
    .await
    .expect("members");
    // Written newest first, so the table's order is not the join order.
    context_member::Entity::insert_many(people.iter().rev().map(|(id, _, joined)| {
        context_member::ActiveModel {
            context_id: Set(context),
            member_id: Set(*id),
            role: Set("member".into()),
            joined_at: Set(*joined),
            muted_until: Set(None),
            history_after: Set(None),
            key_epoch_from: Set(1),
        }
    }))
    .exec_without_returning(&server.state.db.write)
    .await
    .expect("memberships");

    let mut everyone: Vec<(i64, Uuid)> = existing
        .iter()
        .filter(|row| row.context_id == context)
        .map(|row| (row.joined_at, row.member_id))
        .chain(people.iter().map(|(id, _, joined)| (*joined, *id)))
        .collect();
    everyone.sort();
    everyone.iter().map(|(_, id)| id.to_string()).collect()
}

fn ids(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["memberId"].as_str().expect("memberId").to_owned())
        .collect()
}

/// Reads `path` page by page with `limit`, checking each page's envelope; returns the
/// member ids in the order read and the page sizes.
async fn walk(
    server: &TestServer,
    token: &str,
    path: &str,
    limit: u32,
) -> (Vec<String>, Vec<usize>) {
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            None => format!("{path}?limit={limit}"),
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
        };
        let page = server.get(&url, Some(token)).await.data(200).clone();
        let items = &page["items"];
        for entry in items.as_array().expect("items") {
            assert!(entry["role"].is_string(), "{entry}");
            assert!(entry["joinedAt"].is_string(), "{entry}");
        }
        sizes.push(items.as_array().map_or(0, Vec::len));
        seen.extend(ids(items));
        cursor = page["cursor"].as_str().map(str::to_owned);
        if !page["hasMore"].as_bool().expect("hasMore") {
            break;
        }
        assert!(cursor.is_some(), "hasMore without a cursor: {page}");
        assert!(sizes.len() < 20, "no end in sight");
    }
    (seen, sizes)
}

#[tokio::test]
async fn a_channel_view_shows_the_first_100_and_the_route_pages_through_all() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let id = server.channel(&owner, "arena", "public", true).await;
    let expected = crowd(&server, &id, 130).await;
    assert_eq!(expected.len(), 131);
    assert_eq!(expected[0], owner.id.to_string());

    let view = server
        .get(&format!("/api/channels/{id}"), Some(&owner.token))
        .await
        .data(200)
        .clone();
    assert_eq!(view["memberCount"], 131);
    assert_eq!(ids(&view["members"]), expected[..100].to_vec());

    let (seen, sizes) = walk(
        &server,
        &owner.token,
        &format!("/api/channels/{id}/members"),
        50,
    )
    .await;
    assert_eq!(sizes, vec![50, 50, 31]);
    assert_eq!(seen, expected);

    // The default page is 50; a limit over 100 and a forged cursor are refused.
    let first = server
        .get(&format!("/api/channels/{id}/members"), Some(&owner.token))
        .await;
    assert_eq!(ids(&first.data(200)["items"]), expected[..50].to_vec());
    server
        .get(
            &format!("/api/channels/{id}/members?limit=101"),
            Some(&owner.token),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .get(
            &format!("/api/channels/{id}/members?cursor=AAAA"),
            Some(&owner.token),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .get(&format!("/api/channels/{id}/members"), None)
        .await
        .error(401, "UNAUTHORIZED");

    // Like the view, a public channel's members are readable by a non-member.
    let visitor = server.member("visitor").await;
    let (seen, _) = walk(
        &server,
        &visitor.token,
        &format!("/api/channels/{id}/members"),
        100,
    )
    .await;
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_group_view_is_capped_and_its_members_route_is_for_members() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let friend = server.member("friend").await;
    let group = server.group(&owner, "Crowd", &[&friend]).await;
    let expected = crowd(&server, &group, 130).await;
    assert_eq!(expected.len(), 132);

    let view = server
        .get(&format!("/api/groups/{group}"), Some(&friend.token))
        .await
        .data(200)
        .clone();
    assert_eq!(view["memberCount"], 132);
    assert_eq!(ids(&view["members"]), expected[..100].to_vec());

    // The groups list shows the same cap and count.
    let list = server.get("/api/groups", Some(&owner.token)).await;
    let listed = &list.data(200)["items"][0];
    assert_eq!(listed["memberCount"], 132);
    assert_eq!(ids(&listed["members"]), expected[..100].to_vec());

    let path = format!("/api/groups/{group}/members");
    let (seen, sizes) = walk(&server, &friend.token, &path, 50).await;
    assert_eq!(sizes, vec![50, 50, 32]);
    assert_eq!(seen, expected);

    // A cursor of another list is refused.
    let other = server.channel(&owner, "elsewhere", "public", true).await;
    let page = server
        .get(
            &format!("/api/channels/{other}/members?limit=1"),
            Some(&owner.token),
        )
        .await
        .data(200)
        .clone();
    let foreign = page["cursor"].as_str().expect("cursor");
    server
        .get(&format!("{path}?cursor={foreign}"), Some(&owner.token))
        .await
        .error(400, "VALIDATION_ERROR");

    let outsider = server.member("outsider").await;
    server
        .get(&path, Some(&outsider.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .get(
            &format!("/api/groups/{}/members", Uuid::new_v4()),
            Some(&owner.token),
        )
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn non_members_get_403_or_404_as_for_the_channel_itself() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let outsider = server.member("outsider").await;
    for (mode, status, code) in [
        ("private", 403, "FORBIDDEN"),
        ("secret", 403, "FORBIDDEN"),
        ("invisible", 404, "NOT_FOUND"),
    ] {
        let id = server
            .channel(&owner, &format!("c-{mode}"), mode, true)
            .await;
        let path = format!("/api/channels/{id}/members");
        server
            .get(&path, Some(&outsider.token))
            .await
            .error(status, code);
        let members = server.get(&path, Some(&owner.token)).await;
        assert_eq!(
            ids(&members.data(200)["items"]),
            vec![owner.id.to_string()],
            "{mode}"
        );
    }
}

#[tokio::test]
async fn graphql_member_page_pages_the_same_way() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let channel = server.channel(&owner, "hall", "private", true).await;
    let expected = crowd(&server, &channel, 130).await;
    let group = server.group(&owner, "Band", &[]).await;
    let expected_group = crowd(&server, &group, 130).await;

    for (field, id, expected) in [
        ("channel", &channel, &expected),
        ("group", &group, &expected_group),
    ] {
        let query = format!(
            "query($id: UUID!, $cursor: String) {{ {field}(id: $id) {{ memberCount members {{ memberId }} memberPage(page: {{limit: 50, cursor: $cursor}}) {{ items {{ memberId role joinedAt mutedUntil member {{ id }} }} cursor hasMore }} }} }}"
        );
        let mut seen = Vec::new();
        let mut cursor = Value::Null;
        for round in 0.. {
            let answer = server
                .graphql(
                    Some(&owner.token),
                    &query,
                    json!({"id": id, "cursor": cursor}),
                )
                .await;
            assert!(answer["errors"].is_null(), "{answer}");
            let view = &answer["data"][field];
            assert_eq!(view["memberCount"], 131, "{field}");
            assert_eq!(ids(&view["members"]), expected[..100].to_vec(), "{field}");
            let page = &view["memberPage"];
            for item in page["items"].as_array().expect("items") {
                assert_eq!(item["member"]["id"], item["memberId"]);
            }
            seen.extend(ids(&page["items"]));
            cursor = page["cursor"].clone();
            if !page["hasMore"].as_bool().expect("hasMore") {
                assert_eq!(round, 2, "{field}");
                break;
            }
        }
        assert_eq!(&seen, expected, "{field}");
    }

    // A non-member is refused the same way.
    let outsider = server.member("outsider").await;
    let answer = server
        .graphql(
            Some(&outsider.token),
            "query($id: UUID!) { group(id: $id) { memberPage { items { memberId } } } }",
            json!({"id": group}),
        )
        .await;
    assert!(answer["data"].is_null(), "{answer}");
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{answer}"
    );
}
