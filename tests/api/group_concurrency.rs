//! Concurrent membership changes leave one owner and a consistent key state.

use std::sync::Arc;

use serde_json::json;

use crate::common::{TestMember, TestServer, member_keys};

async fn owners(server: &TestServer, reader: &TestMember, group: &str) -> Vec<String> {
    let meta = server
        .get(&format!("/api/groups/{group}"), Some(&reader.token))
        .await;
    meta.data(200)["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "owner")
        .map(|m| m["memberId"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_removing_each_other() {
    let server = Arc::new(TestServer::start().await);
    let owner = server.member("Owner").await;
    let a = server.member("A").await;
    let b = server.member("B").await;
    for _ in 0..3 {
        let group = server.group(&owner, "Duel", &[&a, &b]).await;
        server.set_role(&owner, &group, &a, "admin").await;
        server.set_role(&owner, &group, &b, "admin").await;
        let base = format!("/api/groups/{group}");
        // A and B try to remove each other while the owner leaves. Equal admins may not
        // remove each other; whichever inherits ownership may, if its request comes after
        // the hand-over. Whatever the order: at most one removal, exactly one owner.
        let (remove_b, remove_a, leave) = (
            format!("{base}/members/{}", b.id),
            format!("{base}/members/{}", a.id),
            format!("{base}/leave"),
        );
        let (r1, r2, r3) = tokio::join!(
            server.delete(&remove_b, Some(&a.token)),
            server.delete(&remove_a, Some(&b.token)),
            server.post(&leave, Some(&owner.token), json!({})),
        );
        r3.data(200);
        for r in [&r1, &r2] {
            assert!(r.status == 200 || r.status == 403, "{r:?}");
        }
        assert!(
            r1.status != 200 || r2.status != 200,
            "both removals succeeded"
        );
        let remaining: Vec<&TestMember> = match (r1.status.as_u16(), r2.status.as_u16()) {
            (200, _) => vec![&a],
            (_, 200) => vec![&b],
            _ => vec![&a, &b],
        };
        let owners = owners(&server, remaining[0], &group).await;
        assert_eq!(owners.len(), 1, "exactly one owner");
        let meta = server.get(&base, Some(&remaining[0].token)).await;
        let data = meta.data(200);
        assert_eq!(
            data["members"].as_array().expect("members").len(),
            remaining.len()
        );
        let epoch = data["keyEpoch"].as_i64().expect("epoch");
        assert_eq!(
            epoch,
            2 + (2 - remaining.len() as i64),
            "one rotation per departure"
        );
        for member in &remaining {
            let keys = member_keys(&server, member, &base).await;
            assert!(
                keys.contains_key(&epoch),
                "a remaining member lacks the current key"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_members_leaving_at_once() {
    let server = Arc::new(TestServer::start().await);
    let owner = server.member("Owner").await;
    let mut members = Vec::new();
    for i in 0..11 {
        members.push(server.member(&format!("M{i}")).await);
    }
    let refs: Vec<&TestMember> = members.iter().collect();
    let group = server.group(&owner, "Crowd", &refs).await;
    let base = format!("/api/groups/{group}");
    server.set_role(&owner, &group, &members[10], "admin").await;

    // The owner and nine members leave together; members[9] and members[10] stay.
    let mut leavers = vec![owner.clone()];
    leavers.extend(members[..9].iter().cloned());
    let tasks: Vec<_> = leavers
        .into_iter()
        .map(|m| {
            let server = server.clone();
            let base = base.clone();
            tokio::spawn(async move {
                server
                    .post(&format!("{base}/leave"), Some(&m.token), json!({}))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").data(200);
    }
    let owners = owners(&server, &members[9], &group).await;
    assert_eq!(
        owners,
        vec![members[10].id.to_string()],
        "the admin inherits ownership"
    );
    let meta = server.get(&base, Some(&members[9].token)).await;
    let data = meta.data(200);
    assert_eq!(data["members"].as_array().expect("members").len(), 2);
    assert_eq!(data["keyEpoch"], 11, "one rotation per departure");
    for m in &members[9..] {
        let keys = member_keys(&server, m, &base).await;
        assert_eq!(keys.len(), 11, "remaining members hold every epoch");
    }
    for m in &members[..9] {
        server
            .get(&format!("{base}/keys"), Some(&m.token))
            .await
            .error(403, "FORBIDDEN");
    }
}
