//! Stream keys against a real nats-server: changing them, and live views that ingest reads at the handshake.

use std::time::{Duration, Instant};

use ladder_bus::{
    keys::{self, KeyError, KeyView, StreamKeys},
    kv,
    server::NatsServer,
    Bus,
};
use tokio_util::sync::CancellationToken;

/// How long a change may take to reach a view while NATS is up.
const PROPAGATION: Duration = Duration::from_secs(2);

async fn start() -> (tempfile::TempDir, NatsServer, Bus, StreamKeys) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts (make test installs it)");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    let keys = StreamKeys::open(&bus).await.expect("bucket");
    (dir, nats, bus, keys)
}

/// Waits until `view` answers `expected` for `stream`; returns how long that took.
async fn seen(view: &KeyView, stream: &str, expected: Option<&str>, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if view.get(stream).as_deref() == expected {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{stream}: still {:?} after {within:?}", view.get(stream).map(|_| "a key"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn keys_are_set_read_listed_and_removed() {
    let (_dir, nats, bus, keys) = start().await;
    assert_eq!(keys.names().await.expect("names"), Vec::<String>::new());
    assert_eq!(keys.get("cam-1").await.expect("get"), None);

    keys.set("cam-2", "second-key-0123").await.expect("set");
    keys.set("cam-1", "first-key-0123").await.expect("set");
    assert_eq!(keys.get("cam-1").await.expect("get").as_deref(), Some("first-key-0123"));
    assert_eq!(keys.names().await.expect("names"), ["cam-1", "cam-2"]);

    keys.set("cam-1", "rotated-key-0123").await.expect("rotate");
    assert_eq!(keys.get("cam-1").await.expect("get").as_deref(), Some("rotated-key-0123"));

    assert!(matches!(keys.set("cam-3", "short").await, Err(KeyError::Length(5))));
    assert!(matches!(keys.set("cam-3", "with a space").await, Err(KeyError::Character { position: 4 })));
    assert!(matches!(keys.set("cam.*", "0123456789").await, Err(KeyError::InvalidName(_))));
    assert_eq!(keys.names().await.expect("names"), ["cam-1", "cam-2"], "refused keys are not stored");

    assert!(keys.remove("cam-1").await.expect("remove"), "it had a key");
    assert!(!keys.remove("cam-1").await.expect("remove again"), "it has none now");
    assert_eq!(keys.get("cam-1").await.expect("get"), None);
    assert_eq!(keys.names().await.expect("names"), ["cam-2"]);

    // A purge: the bucket's stream keeps only the (empty) marker, not the removed key.
    let stream = bus.jetstream().get_stream(format!("KV_{}", kv::STREAM_KEYS)).await.expect("stream");
    let last =
        stream.get_last_raw_message_by_subject(&format!("$KV.{}.cam-1", kv::STREAM_KEYS)).await.expect("purge marker");
    assert!(last.payload.is_empty());
    nats.stop().await;
}

#[tokio::test]
async fn every_view_sees_a_set_a_rotation_and_a_remove() {
    let (_dir, nats, _bus, keys) = start().await;
    let shutdown = CancellationToken::new();
    // Two ingest instances, each with its own connection.
    let other = StreamKeys::open(&Bus::connect(&nats.url()).await.expect("connects")).await.expect("bucket");
    let views = [
        keys.watch(shutdown.clone()).await.expect("watch on an empty bucket"),
        other.watch(shutdown.clone()).await.expect("watch"),
    ];
    assert!(views.iter().all(KeyView::is_empty));

    let mut slowest = Duration::ZERO;
    let first = keys::generate_key();
    keys.set("cam-1", &first).await.expect("set");
    for view in &views {
        slowest = slowest.max(seen(view, "cam-1", Some(&first), PROPAGATION).await);
    }
    let rotated = keys::generate_key();
    keys.set("cam-1", &rotated).await.expect("rotate");
    for view in &views {
        slowest = slowest.max(seen(view, "cam-1", Some(&rotated), PROPAGATION).await);
    }
    // Read where ingest reads it: an SRT callback on a thread of its own.
    let view = views[0].clone();
    let on_thread = std::thread::spawn(move || view.get("cam-1").map(|key| key.to_string())).join().expect("thread");
    assert_eq!(on_thread.as_deref(), Some(rotated.as_str()));

    keys.remove("cam-1").await.expect("remove");
    for view in &views {
        slowest = slowest.max(seen(view, "cam-1", None, PROPAGATION).await);
    }
    println!("slowest change to reach a view: {slowest:?}");
    shutdown.cancel();
    nats.stop().await;
}

#[tokio::test]
async fn a_watch_returns_with_the_keys_already_stored() {
    let (_dir, nats, _bus, keys) = start().await;
    let mut stored = Vec::new();
    for i in 0..50 {
        let key = keys::generate_key();
        keys.set(&format!("cam-{i}"), &key).await.expect("set");
        stored.push(key);
    }
    // Markers of both kinds are the last entries of their names.
    keys.remove("cam-10").await.expect("remove");
    keys.set("cam-11", "rotated-0123456").await.expect("rotate");
    stored[11] = "rotated-0123456".into();
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    bus.jetstream().get_key_value(kv::STREAM_KEYS).await.expect("bucket").delete("cam-12").await.expect("delete");

    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let view = keys.watch(shutdown.clone()).await.expect("watch");
    println!("50 keys loaded in {:?}", started.elapsed());
    // No waiting: everything is there when watch returns.
    assert_eq!(view.len(), 48);
    for (i, key) in stored.iter().enumerate() {
        let expected = if i == 10 || i == 12 { None } else { Some(key.as_str()) };
        assert_eq!(view.get(&format!("cam-{i}")).as_deref(), expected, "cam-{i}");
    }
    shutdown.cancel();
    nats.stop().await;
}

#[tokio::test]
async fn a_view_survives_a_nats_restart_and_sees_what_changed() {
    let (_dir, mut nats, _bus, keys) = start().await;
    keys.set("cam-1", "before-restart-1").await.expect("set");
    keys.set("cam-2", "before-restart-2").await.expect("set");
    let shutdown = CancellationToken::new();
    let view = keys.watch(shutdown.clone()).await.expect("watch");

    nats.kill().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(view.get("cam-1").as_deref(), Some("before-restart-1"), "known keys are kept while NATS is down");
    nats.restart().await.expect("nats-server restarts on the same port and store");

    // Changed through a new connection as soon as the server is back, most likely before the view's client has
    // reconnected: the view must not miss the removal.
    let restarted = Instant::now();
    let writer = StreamKeys::open(&Bus::connect(&nats.url()).await.expect("connects")).await.expect("bucket");
    writer.remove("cam-1").await.expect("remove");
    writer.set("cam-2", "after-restart-2").await.expect("rotate");
    writer.set("cam-3", "after-restart-3").await.expect("set");
    let reconnect = Duration::from_secs(15);
    seen(&view, "cam-1", None, reconnect).await;
    seen(&view, "cam-2", Some("after-restart-2"), reconnect).await;
    seen(&view, "cam-3", Some("after-restart-3"), reconnect).await;
    println!("changes after the restart seen {:?} after it", restarted.elapsed());

    // And the watch made after the restart follows new changes as before.
    writer.set("cam-4", "after-restart-4").await.expect("set");
    let took = seen(&view, "cam-4", Some("after-restart-4"), PROPAGATION).await;
    println!("a later change seen in {took:?}");
    shutdown.cancel();
    nats.stop().await;
}
