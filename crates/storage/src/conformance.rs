//! The storage conformance suite: every backend must pass [`run`]. It is public so that each backend's
//! tests (the local directory here, S3 servers in their own tests) run the very same checks.
//!
//! Write-once is checked three ways: the same bytes again are [`PutOutcome::Unchanged`]; other bytes are
//! [`ErrorKind::Conflict`] and leave the object as it was; and concurrent puts of one new key never report a
//! refusal or a retry that is not true. On a backend with [`Storage::atomic_create`] exactly one of them
//! creates the key and its bytes are what is stored; on S3, where the server may ignore `If-None-Match`, the
//! suite only checks that some writer that created the key holds it (see [`Storage::put`] for the race).

use bytes::Bytes;

use crate::{ErrorKind, PutOutcome, Storage};

/// Rounds of the concurrent-create race, each on a new key.
const RACE_ROUNDS: usize = 8;

/// Runs every check against `storage`, using keys under `conformance/`. Panics on the first failure.
pub async fn run(storage: &Storage) {
    storage.reachable().await.expect("a working store is reachable");
    let data = |n: u8| Bytes::from(vec![n; 1000 + usize::from(n)]);

    // put creates, then get returns what was put
    assert_eq!(storage.put("conformance/a/1.ts", data(1)).await.expect("put"), PutOutcome::Created);
    assert_eq!(storage.get("conformance/a/1.ts").await.expect("get"), data(1));

    // content type, where the backend keeps one (S3 serves it to players and CDNs)
    if storage.keeps_attributes() {
        let stored = storage.stored_content_type("conformance/a/1.ts").await.expect("head");
        assert_eq!(stored.as_deref(), Some("video/mp2t"));
    }

    // range get
    let range = storage.get_range("conformance/a/1.ts", 10..20).await.expect("range get");
    assert_eq!(range, Bytes::from(vec![1; 10]));

    write_once(storage, "conformance/a/1.ts", data(1), data(2)).await;

    // missing key
    let missing = storage.get("conformance/a/none.ts").await.expect_err("missing");
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");

    // list by prefix: only what is under it, sorted
    assert_eq!(storage.put("conformance/a/2.ts", data(3)).await.expect("put"), PutOutcome::Created);
    storage.put("conformance/ab/1.ts", data(4)).await.expect("put");
    let listed = storage.list("conformance/a/").await.expect("list");
    assert_eq!(listed, vec!["conformance/a/1.ts".to_string(), "conformance/a/2.ts".to_string()]);

    // concurrent writers on distinct keys all land
    let writes = (0..16u8).map(|n| {
        let storage = storage.clone();
        async move { storage.put(&format!("conformance/many/{n:02}.ts"), data(n)).await }
    });
    for result in futures::future::join_all(writes).await {
        assert_eq!(result.expect("concurrent put"), PutOutcome::Created);
    }
    assert_eq!(storage.list("conformance/many/").await.expect("list").len(), 16);
    assert_eq!(storage.get("conformance/many/07.ts").await.expect("get"), data(7));

    for round in 0..RACE_ROUNDS {
        race(storage, &format!("conformance/race/{round:02}.ts")).await;
    }

    // delete, and deleting again is fine
    for key in storage.list("conformance/").await.expect("list") {
        storage.delete(&key).await.expect("delete");
    }
    storage.delete("conformance/a/1.ts").await.expect("deleting a missing key");
    assert!(storage.list("conformance/").await.expect("list").is_empty());
}

/// Objects are write-once: `first` is stored at `key`; the same bytes again are a retry, other bytes (here
/// `other`, and `first` with one byte changed) are refused and leave the object as it was.
async fn write_once(storage: &Storage, key: &str, first: Bytes, other: Bytes) {
    assert_ne!(first, other);
    assert_eq!(storage.put(key, first.clone()).await.expect("same bytes again"), PutOutcome::Unchanged);

    let mut almost = first.to_vec();
    let middle = almost.len() / 2;
    almost[middle] ^= 1;
    for different in [other, Bytes::from(almost)] {
        let refused = storage.put(key, different.clone()).await.expect_err("a put of different bytes is refused");
        assert_eq!(refused.kind, ErrorKind::Conflict, "{refused}");
        assert!(refused.to_string().contains(key), "the error names the key: {refused}");
        assert_eq!(storage.get(key).await.expect("get"), first, "the refused put left the object as it was");
    }
    if storage.keeps_attributes() {
        let stored = storage.stored_content_type(key).await.expect("head");
        assert_eq!(stored.as_deref(), Some("video/mp2t"), "the refused put left the attributes as they were");
    }
    // And a retry is still a retry after a refusal.
    assert_eq!(storage.put(key, first).await.expect("same bytes again"), PutOutcome::Unchanged);
}

/// Concurrent puts of one new key: four writers of different bytes and a fifth with the first one's bytes.
async fn race(storage: &Storage, key: &str) {
    let mut writers: Vec<Bytes> = (0..4u8).map(|w| Bytes::from(vec![b'a' + w; 64 * 1024 + usize::from(w)])).collect();
    writers.push(writers[0].clone());
    let puts = writers.iter().map(|bytes| storage.put(key, bytes.clone()));
    let outcomes: Vec<Result<PutOutcome, ErrorKind>> =
        futures::future::join_all(puts).await.into_iter().map(|result| result.map_err(|e| e.kind)).collect();
    let stored = storage.get(key).await.expect("get the raced key");
    let holds = |w: usize| writers[w] == stored;
    assert!((0..writers.len()).any(holds), "{key} holds the bytes of one of the writers");
    for (w, outcome) in outcomes.iter().enumerate() {
        if let Err(kind) = outcome {
            assert_eq!(*kind, ErrorKind::Conflict, "{key}: writer {w} failed otherwise: {outcomes:?}");
        }
    }
    let created: Vec<usize> = (0..writers.len()).filter(|&w| outcomes[w] == Ok(PutOutcome::Created)).collect();
    // The last create to land was checked after it landed, so whoever made it saw its own object.
    assert!(created.iter().any(|&w| holds(w)), "{key}: one writer that created it won: {outcomes:?}");

    // What every writer was told is true of what is stored.
    let truthful = |w: usize| match outcomes[w] {
        Ok(PutOutcome::Created | PutOutcome::Unchanged) => holds(w),
        Err(_) => !holds(w),
    };
    if storage.atomic_create() {
        assert_eq!(created.len(), 1, "{key}: exactly one writer created it: {outcomes:?}");
        for w in 0..writers.len() {
            assert!(truthful(w), "{key}: writer {w} was told something untrue: {outcomes:?}");
        }
    } else {
        // Not atomic (see `Storage::put`): a writer can be overwritten after it checked its create, and one
        // refused because other bytes were there can see its very bytes win later, from a twin writer. Shown
        // in the test output so that it is known how often that happens.
        let untruthful: Vec<usize> = (0..writers.len()).filter(|&w| !truthful(w)).collect();
        if !untruthful.is_empty() {
            eprintln!("{key}: no atomic create, writers {untruthful:?} were overtaken by the race: {outcomes:?}");
        }
    }
}
