//! The index is a projection of the event log: deleted and rebuilt with `ladder reindex`, it serves the
//! very same playlists.

mod support;

use std::{process::Command, time::Duration};

use support::{eventually, publish, Stack, LADDER};

#[test]
fn reindex_rebuilds_byte_identical_playlists() {
    let mut stack = Stack::start();
    publish(&stack.srt_url("cam"), "1280x720", 25, 10, 440).finish();
    let set = Command::new(LADDER)
        .args(["stream", "set-ladder", "other", "--nats", &stack.nats_url])
        .arg({
            let file = stack.data().join("ladder.toml");
            std::fs::write(&file, "[[rendition]]\nname = \"240p\"\nheight = 240\nbitrate = 300000\n").expect("write");
            file
        })
        .output()
        .expect("ladder runs");
    assert!(set.status.success());

    let paths = ["/live/cam/master.m3u8", "/live/cam/720p.m3u8", "/live/cam/480p.m3u8", "/live/cam/360p.m3u8"];
    let before: Vec<String> = eventually(Duration::from_secs(90), "cam to end", &stack, || {
        let bodies: Vec<(u16, String)> = paths.iter().map(|p| stack.get(p)).collect();
        let ended = bodies.iter().skip(1).all(|(status, body)| *status == 200 && body.contains("#EXT-X-ENDLIST"));
        ended.then(|| bodies.into_iter().map(|(_, body)| body).collect())
    });
    let (_, streams_before) = stack.get("/api/streams");

    // Lose the index entirely, then rebuild it from JetStream.
    stack.stop_service("manifest");
    stack.stop_service("indexer");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(stack.data().join(format!("index.db{suffix}")));
    }
    let out = Command::new(LADDER)
        .args(["reindex", "--nats", &stack.nats_url, "--index"])
        .arg(stack.data().join("index.db"))
        .output()
        .expect("ladder reindex runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("reindexed "), "{stdout}");

    // Refuses to replay into an index that is not empty.
    let again = Command::new(LADDER)
        .args(["reindex", "--nats", &stack.nats_url, "--index"])
        .arg(stack.data().join("index.db"))
        .output()
        .expect("ladder reindex runs");
    assert_eq!(again.status.code(), Some(64), "{}", String::from_utf8_lossy(&again.stderr));

    stack.start_service("manifest");
    stack.wait_for_http();
    for (path, before) in paths.iter().zip(&before) {
        let (status, after) = stack.get(path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(&after, before, "{path} is byte for byte the same after reindexing");
    }
    assert_eq!(stack.get("/api/streams").1, streams_before);
    let index = ladder_index::SqliteIndex::open(&stack.data().join("index.db")).expect("index");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let ladder = runtime.block_on(ladder_index::Index::ladder(&index, "other")).expect("read").expect("restored");
    assert_eq!(ladder.renditions[0].name, "240p", "the stream's ladder comes back too");
}
