//! What a search finds and in which order.

use uuid::Uuid;

use super::{Suite, ids, newest_first, request};
use crate::search::SearchRequest;

pub(super) async fn run(suite: &Suite<'_>) {
    words_and_case(suite).await;
    relevance(suite).await;
    ties_newest_first(suite).await;
    channel_isolation(suite).await;
    id_bounds(suite).await;
    limit_keeps_the_best(suite).await;
    hostile_queries(suite).await;
}

/// A word is found; every word must match; case does not matter; no match is empty.
async fn words_and_case(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let ab = suite.doc(channel, "apple banana");
    let ac = suite.doc(channel, "apple cherry");
    let bc = suite.doc(channel, "banana cherry");
    let shout = suite.doc(channel, "Hello WORLD, greetings from KÖLN");
    suite
        .index(&[ab.clone(), ac.clone(), bc.clone(), shout.clone()])
        .await;

    let mut apple = suite.ids(channel, "apple").await;
    apple.sort_unstable();
    let mut expected = vec![ab.message_id, ac.message_id];
    expected.sort_unstable();
    assert_eq!(apple, expected, "a word finds every message that has it");

    assert_eq!(
        suite.ids(channel, "apple banana").await,
        vec![ab.message_id],
        "every word of the query must be in a hit (AND)"
    );
    assert_eq!(
        suite.ids(channel, "banana apple").await,
        vec![ab.message_id],
        "word order in the query does not matter"
    );
    assert!(
        suite.ids(channel, "apple durian").await.is_empty(),
        "a query word no message has leaves no hit"
    );
    assert!(
        suite.ids(channel, "zzyzxnotaword").await.is_empty(),
        "no match is an empty result"
    );
    assert_eq!(
        suite.ids(channel, "hello world").await,
        vec![shout.message_id],
        "lowercase query finds uppercase text"
    );
    assert_eq!(
        suite.ids(channel, "GREETINGS").await,
        vec![shout.message_id],
        "uppercase query finds lowercase text"
    );
    assert_eq!(
        suite.ids(channel, "köln").await,
        vec![shout.message_id],
        "case-insensitive beyond ASCII"
    );
}

/// Ranking any sane ranker agrees on: the words close together in a short message beat the
/// same words far apart in a long one, whatever the order of indexing.
async fn relevance(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let tight = suite.doc(channel, "rocket launch tonight");
    let loose = suite.doc(
        channel,
        "the rocket is ready and after a long long wait the launch is tonight",
    );
    let tight_later = suite.doc(channel, "launch of the rocket moved to friday");
    suite
        .index(&[tight.clone(), loose.clone(), tight_later.clone()])
        .await;
    let hits = suite.search(request(channel, "rocket launch")).await;
    let found = ids(&hits);
    assert_eq!(found.len(), 3, "all three messages have both words");
    assert_eq!(
        found[0], tight.message_id,
        "\"rocket launch tonight\" ranks first for \"rocket launch\""
    );
    assert_eq!(
        found[2], loose.message_id,
        "the long message with the words far apart ranks last"
    );
    assert!(
        hits[0].score > hits[2].score,
        "a better hit has a higher score"
    );
}

/// Equally relevant hits (identical texts) come newest first, also across commits.
async fn ties_newest_first(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let first: Vec<_> = (0..3)
        .map(|_| suite.doc(channel, "identical twin message"))
        .collect();
    suite.index(&first).await;
    let second: Vec<_> = (0..3)
        .map(|_| suite.doc(channel, "identical twin message"))
        .collect();
    suite.index(&second).await;
    let hits = suite.search(request(channel, "twin")).await;
    let all: Vec<_> = first.iter().chain(second.iter()).collect();
    assert_eq!(
        ids(&hits),
        newest_first(&all),
        "identical texts: newest first"
    );
    assert!(
        hits.windows(2).all(|w| w[0].score == w[1].score),
        "identical texts score the same: {hits:?}"
    );
}

/// A search sees its own channel only.
async fn channel_isolation(suite: &Suite<'_>) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let in_a = suite.doc(a, "shared secret phrase");
    let in_b = suite.doc(b, "shared secret phrase");
    suite.index(&[in_a.clone(), in_b.clone()]).await;
    assert_eq!(suite.ids(a, "secret").await, vec![in_a.message_id]);
    assert_eq!(suite.ids(b, "secret").await, vec![in_b.message_id]);
    assert!(
        suite.ids(Uuid::new_v4(), "secret").await.is_empty(),
        "a channel with no messages has no hits"
    );
}

/// `after_id` is exclusive, `until_id` inclusive, both together intersect.
async fn id_bounds(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let docs: Vec<_> = (0..5)
        .map(|_| suite.doc(channel, "boundary marker"))
        .collect();
    suite.index(&docs).await;
    let id = |i: usize| docs[i].message_id;
    let bounded = |after: Option<usize>, until: Option<usize>| SearchRequest {
        after_id: after.map(id),
        until_id: until.map(id),
        ..request(channel, "marker")
    };
    let cases: [(Option<usize>, Option<usize>, Vec<usize>); 6] = [
        (Some(1), None, vec![4, 3, 2]),
        (None, Some(3), vec![3, 2, 1, 0]),
        (Some(0), Some(3), vec![3, 2, 1]),
        (Some(4), None, vec![]),
        (Some(3), Some(1), vec![]),
        (Some(2), Some(3), vec![3]),
    ];
    for (after, until, expected) in cases {
        let found = ids(&suite.search(bounded(after, until)).await);
        let expected: Vec<Uuid> = expected.into_iter().map(id).collect();
        assert_eq!(
            found, expected,
            "after_id = message {after:?} (exclusive), until_id = message {until:?} (inclusive)"
        );
    }
}

/// With 25 matching messages, limit 10 gives the 10 best: the first 10 of the full list.
async fn limit_keeps_the_best(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let fillers = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let docs: Vec<_> = (0..25)
        .map(|i| {
            let mut text = String::from("paging");
            for filler in fillers.iter().cycle().take(i % 9) {
                text.push(' ');
                text.push_str(filler);
            }
            suite.doc(channel, &text)
        })
        .collect();
    suite.index(&docs).await;
    let all = suite.search(request(channel, "paging")).await;
    assert_eq!(all.len(), 25, "all 25 messages match");
    let top = suite
        .search(SearchRequest {
            limit: 10,
            ..request(channel, "paging")
        })
        .await;
    assert_eq!(top.len(), 10, "limit 10 returns 10 hits");
    assert_eq!(ids(&top), ids(&all[..10]), "limit 10 returns the 10 best");
    let one = suite
        .search(SearchRequest {
            limit: 1,
            ..request(channel, "paging")
        })
        .await;
    assert_eq!(ids(&one), ids(&all[..1]), "limit 1 returns the best");
}

/// Queries are plain words, never a query language: nothing here may fail.
async fn hostile_queries(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let doc = suite.doc(channel, "apple banana split");
    suite.index(std::slice::from_ref(&doc)).await;
    let long_word = "a".repeat(200);
    let parens = "(".repeat(200);
    let mixed = "\"(AND:*~".repeat(25);
    let hostile = [
        "\"apple",
        "apple\"",
        "(apple OR banana",
        "AND",
        "OR NOT AND",
        "apple AND NOT banana",
        "title:apple",
        "*",
        "apple*",
        "apple~2",
        "banana^10",
        "[a TO z]",
        "{}",
        "\\",
        "/regex.*/",
        "+apple -banana",
        "🍌🍎 ∑ ä ß 東京",
        "\u{0}\u{7f}\u{200b}",
        long_word.as_str(),
        parens.as_str(),
        mixed.as_str(),
    ];
    for query in hostile {
        assert!(
            query.chars().count() <= 200,
            "the suite's own query is too long"
        );
        let _ = suite.search(request(channel, query)).await;
    }
    for query in ["!!! ... ???", "()", "\"\"", "-", "   "] {
        assert!(
            suite.ids(channel, query).await.is_empty(),
            "a query with no word ({query:?}) has no hit"
        );
    }
    for query in [
        "apple -banana",
        "\"apple banana\"",
        "(Apple) banana!",
        "apple:banana",
        "APPLE banana-split",
    ] {
        let found = suite.ids(channel, query).await;
        assert!(
            found.contains(&doc.message_id),
            "{query:?} is read as plain words and finds \"apple banana split\""
        );
    }
}
