//! Publishing through `Bus` against a real nats-server: duplicates are checked against what JetStream
//! stored, and a publish outlives a server restart.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use ladder_bus::{async_nats, header, server::NatsServer, topology, Bus, BusError};
use ladder_proto::{ChunkUploaded, Event, Timing};

fn chunk(size_bytes: u64, segmented_ms: i64) -> Event {
    Event::ChunkUploaded(ChunkUploaded {
        stream: "cam1".into(),
        session_id: "s1".into(),
        sequence: 3,
        object_key: "live/cam1/s1/source/00000003.ts".into(),
        size_bytes,
        first_pts: 540_000,
        duration: 180_000,
        wall_clock_ms: 1_700_000_006_000,
        timing: Some(Timing { segmented_ms, ..Default::default() }),
        ..Default::default()
    })
}

fn ts(payload: &'static [u8], received_ms: &str) -> PublishMessage {
    PublishMessage::build()
        .payload(payload.into())
        .message_id("ts.cam1.s1.0")
        .header(header::SESSION, "s1")
        .header(header::SEQUENCE, "0")
        .header(header::RECEIVED_MS, received_ms)
}

async fn stored_messages(bus: &Bus, stream: &str) -> u64 {
    let mut stream = bus.jetstream().get_stream(stream).await.expect("stream");
    stream.info().await.expect("info").state.messages
}

/// The server behaviour the duplicate check relies on: the acknowledgement of a duplicate names the
/// sequence of the message stored first, not the stream's last one.
#[tokio::test]
async fn the_ack_of_a_duplicate_carries_the_original_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts (make test installs it)");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    let js = bus.jetstream();
    let publish = |id: &'static str, payload: &'static [u8]| async move {
        let message = PublishMessage::build().payload(payload.into()).message_id(id);
        js.send_publish("ladder.set.cam1", message).await.expect("sent").await.expect("acknowledged")
    };
    let first = publish("a", b"first").await;
    let other = publish("b", b"other").await;
    let again = publish("a", b"first, again").await;
    assert_eq!((first.sequence, first.duplicate), (1, false));
    assert_eq!((other.sequence, other.duplicate), (2, false));
    assert_eq!((again.sequence, again.duplicate), (1, true), "{again:?}");
    nats.stop().await;
}

#[tokio::test]
async fn a_duplicate_event_with_the_same_content_is_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    bus.publish_event(&chunk(1000, 1)).await.expect("first publish");
    // A retry measures its timing anew; that is not a conflict.
    bus.publish_event(&chunk(1000, 2)).await.expect("the retry is a harmless duplicate");
    assert_eq!(stored_messages(&bus, topology::EVENTS_STREAM).await, 1);
    nats.stop().await;
}

#[tokio::test]
async fn a_duplicate_event_with_other_content_is_a_conflict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    let first = chunk(1000, 1);
    bus.publish_event(&first).await.expect("first publish");
    let error = bus.publish_event(&chunk(2000, 1)).await.expect_err("same id, other size");
    match error {
        BusError::DuplicateConflict { subject, message_id } => {
            assert_eq!(subject, "chunk.uploaded.cam1");
            assert_eq!(message_id, first.message_id());
        }
        other => panic!("expected a duplicate conflict, got {other}"),
    }
    assert_eq!(stored_messages(&bus, topology::EVENTS_STREAM).await, 1);
    nats.stop().await;
}

#[tokio::test]
async fn a_duplicate_ts_message_must_match_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    bus.publish_ts("cam1", ts(b"\x47 ts bytes", "100")).await.expect("first publish");
    bus.publish_ts("cam1", ts(b"\x47 ts bytes", "100")).await.expect("the same message again");
    let other_bytes = bus.publish_ts("cam1", ts(b"\x47 other", "100")).await.expect_err("other payload");
    assert!(matches!(other_bytes, BusError::DuplicateConflict { .. }), "{other_bytes}");
    let other_header = bus.publish_ts("cam1", ts(b"\x47 ts bytes", "101")).await.expect_err("other header");
    assert!(matches!(other_header, BusError::DuplicateConflict { .. }), "{other_header}");
    let extra_header = bus
        .publish_ts("cam1", ts(b"\x47 ts bytes", "100").header(header::END, "1"))
        .await
        .expect_err("a Ladder header more");
    assert!(matches!(extra_header, BusError::DuplicateConflict { .. }), "{extra_header}");
    assert_eq!(stored_messages(&bus, topology::INGEST_STREAM).await, 1);
    nats.stop().await;
}

#[tokio::test]
async fn a_publish_waits_out_a_server_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    bus.publish_event(&chunk(1000, 1)).await.expect("before the restart");

    nats.kill().await;
    let publishing = tokio::spawn({
        let bus = bus.clone();
        async move { bus.publish_ts("cam1", ts(b"\x47 during the outage", "100")).await }
    });
    // Down for a few seconds, as a restart or an upgrade is.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!publishing.is_finished(), "nothing can store the message while the server is down");
    nats.restart().await.expect("the server comes back on its port and store");
    publishing.await.expect("task").expect("the publish is stored once the server is back");
    assert_eq!(stored_messages(&bus, topology::INGEST_STREAM).await, 1);
    assert_eq!(stored_messages(&bus, topology::EVENTS_STREAM).await, 1, "the store survived the restart");
    nats.stop().await;
}
