//! The storage conformance suite: every backend must pass [`run`]. It is public so that each backend's
//! tests (the local directory here, S3 servers in their own tests) run the very same checks.

use bytes::Bytes;

use crate::{ErrorKind, Storage};

/// Runs every check against `storage`, using keys under `conformance/`. Panics on the first failure.
pub async fn run(storage: &Storage) {
    let data = |n: u8| Bytes::from(vec![n; 1000 + usize::from(n)]);

    // put, then get returns what was put
    storage.put("conformance/a/1.ts", data(1)).await.expect("put");
    assert_eq!(storage.get("conformance/a/1.ts").await.expect("get"), data(1));

    // content type, where the backend keeps one (S3 serves it to players and CDNs)
    if storage.keeps_attributes() {
        let stored = storage.stored_content_type("conformance/a/1.ts").await.expect("head");
        assert_eq!(stored.as_deref(), Some("video/mp2t"));
    }

    // range get
    let range = storage.get_range("conformance/a/1.ts", 10..20).await.expect("range get");
    assert_eq!(range, Bytes::from(vec![1; 10]));

    // overwrite replaces the whole object
    storage.put("conformance/a/1.ts", data(2)).await.expect("overwrite");
    assert_eq!(storage.get("conformance/a/1.ts").await.expect("get").len(), 1002);

    // missing key
    let missing = storage.get("conformance/a/none.ts").await.expect_err("missing");
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");

    // list by prefix: only what is under it, sorted
    storage.put("conformance/a/2.ts", data(3)).await.expect("put");
    storage.put("conformance/ab/1.ts", data(4)).await.expect("put");
    let listed = storage.list("conformance/a/").await.expect("list");
    assert_eq!(listed, vec!["conformance/a/1.ts".to_string(), "conformance/a/2.ts".to_string()]);

    // concurrent writers on distinct keys all land
    let writes = (0..16u8).map(|n| {
        let storage = storage.clone();
        async move { storage.put(&format!("conformance/many/{n:02}.ts"), data(n)).await }
    });
    for result in futures::future::join_all(writes).await {
        result.expect("concurrent put");
    }
    assert_eq!(storage.list("conformance/many/").await.expect("list").len(), 16);
    assert_eq!(storage.get("conformance/many/07.ts").await.expect("get"), data(7));

    // delete, and deleting again is fine
    for key in storage.list("conformance/").await.expect("list") {
        storage.delete(&key).await.expect("delete");
    }
    storage.delete("conformance/a/1.ts").await.expect("deleting a missing key");
    assert!(storage.list("conformance/").await.expect("list").is_empty());
}
