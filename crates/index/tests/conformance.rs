//! The index conformance suite: every implementation of `Index` must pass it. SQLite always; ScyllaDB when
//! `LADDER_TEST_SCYLLA=<host:port>` is set, in a throw-away keyspace:
//!
//! ```sh
//! docker compose -f deploy/compose/docker-compose.yml up -d scylla
//! LADDER_TEST_SCYLLA=127.0.0.1:9042 cargo test -p ladder-index --test conformance
//! ```

use ladder_index::{Index, ScyllaConfig, ScyllaIndex, SqliteIndex};
use ladder_proto::{ChunkFailed, Event, LadderSet, RenditionConfig, RenditionReady, StreamEnded, StreamStarted};

fn rendition(session: &str, name: &str, sequence: u64, bitrate: u64, size: u64) -> Event {
    Event::RenditionReady(RenditionReady {
        stream: "cam".into(),
        session_id: session.into(),
        sequence,
        rendition: name.into(),
        object_key: format!("live/cam/{session}/{name}/{sequence:08}.ts"),
        size_bytes: size,
        first_pts: 1_000 + sequence * 180_000,
        duration: 180_000,
        wall_clock_ms: 1_700_000_000_000 + sequence as i64 * 2000,
        discontinuity: sequence == 0,
        width: 1280,
        height: 720,
        bitrate,
        codecs: "avc1.64001f,mp4a.40.2".into(),
        timing: None,
        frame_duration: 3600,
    })
}

async fn conformance(index: &dyn Index) {
    let started = |session: &str, at: i64| {
        Event::StreamStarted(StreamStarted {
            stream: "cam".into(),
            session_id: session.into(),
            started_at_ms: at,
            remote_addr: "127.0.0.1:5000".into(),
        })
    };
    index.apply(&started("s1", 1_000)).await.expect("apply");
    index.apply(&started("s1", 1_000)).await.expect("applying twice is fine");
    assert_eq!(index.latest_session("cam").await.expect("read").map(|s| s.session_id), Some("s1".into()));
    assert_eq!(index.latest_session("nope").await.expect("read"), None);

    // Out of order and duplicated, as redelivery makes them.
    for event in [
        rendition("s1", "720p", 1, 3_000_000, 900_000),
        rendition("s1", "720p", 0, 3_000_000, 600_000),
        rendition("s1", "720p", 1, 3_000_000, 900_000),
        rendition("s1", "360p", 0, 800_000, 150_000),
    ] {
        index.apply(&event).await.expect("apply");
    }
    let segments = index.segments("cam", "s1", "720p").await.expect("segments");
    assert_eq!(segments.iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![0, 1]);
    assert!(segments[0].discontinuity && !segments[1].discontinuity);
    assert_eq!(segments[1].duration, 180_000);

    let renditions = index.renditions("cam", "s1").await.expect("renditions");
    assert_eq!(renditions.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), vec!["720p", "360p"]);
    // 900 000 bytes in 2 s is 3.6 Mb/s at peak; 1.5 MB in 4 s is 3 Mb/s on average.
    assert_eq!(renditions[0].peak_bps, 3_600_000);
    assert_eq!(renditions[0].average_bps, 3_000_000);
    assert_eq!(renditions[0].frame_duration, 3600);

    index.apply(&started("s2", 2_000)).await.expect("apply");
    assert_eq!(index.latest_session("cam").await.expect("read").map(|s| s.session_id), Some("s2".into()));
    assert!(index.renditions("cam", "s2").await.expect("renditions").is_empty(), "sessions are separate");
    let sessions = index.sessions("cam").await.expect("sessions");
    assert_eq!(sessions.iter().map(|s| s.session_id.as_str()).collect::<Vec<_>>(), vec!["s1", "s2"], "oldest first");
    assert!(index.sessions("nope").await.expect("sessions").is_empty());
    let streams = index.streams().await.expect("streams");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].session_id, "s2");

    index
        .apply(&Event::StreamEnded(StreamEnded {
            stream: "cam".into(),
            session_id: "s2".into(),
            ended_at_ms: 3_000,
            bytes_received: 10,
            reason: "disconnected".into(),
            chunk_count: 12,
        }))
        .await
        .expect("apply");
    let latest = index.latest_session("cam").await.expect("read").expect("a session");
    assert_eq!((latest.started_at_ms, latest.ended_at_ms, latest.chunk_count), (2_000, Some(3_000), Some(12)));

    index
        .apply(&Event::ChunkFailed(ChunkFailed {
            stream: "cam".into(),
            session_id: "s1".into(),
            sequence: 2,
            has_sequence: true,
            stage: "transcoder".into(),
            reason: "ffmpeg exited 1".into(),
            permanent: true,
        }))
        .await
        .expect("apply");
    assert_eq!(index.failed_chunks("cam", "s1").await.expect("failures"), vec![2]);

    // Ladders: the newest wins even when an older one is applied after it, as a replay may do.
    let ladder = |at: i64, height: u32| {
        Event::LadderSet(LadderSet {
            stream: "cam".into(),
            renditions: vec![RenditionConfig {
                name: format!("{height}p"),
                height,
                video_bitrate: 1_000_000,
                video_codec: "h264".into(),
                audio: "copy".into(),
                ..Default::default()
            }],
            set_at_ms: at,
        })
    };
    assert_eq!(index.ladder("cam").await.expect("ladder"), None);
    index.apply(&ladder(2_000, 480)).await.expect("apply");
    index.apply(&ladder(1_000, 720)).await.expect("apply");
    let current = index.ladder("cam").await.expect("ladder").expect("a ladder");
    assert_eq!((current.set_at_ms, current.renditions[0].height), (2_000, 480));
    assert_eq!(index.ladder("other").await.expect("ladder"), None);
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = SqliteIndex::open(&dir.path().join("index.db")).expect("open");
    conformance(&index).await;
}

/// Runs only when `LADDER_TEST_SCYLLA` names a node; then an unreachable node fails the test, loudly.
#[tokio::test]
async fn scylla_conformance() {
    let Ok(node) = std::env::var("LADDER_TEST_SCYLLA") else {
        eprintln!("scylla_conformance: skipped, set LADDER_TEST_SCYLLA=<host:port> to run it");
        return;
    };
    let keyspace = format!("ladder_test_{}", std::process::id());
    let url = format!("scylla://{node}/{keyspace}?consistency=one&replication_factor=1");
    let config = ScyllaConfig::from_url(&url).expect("LADDER_TEST_SCYLLA is host:port");
    let index = ScyllaIndex::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("LADDER_TEST_SCYLLA={node} is set but the node is unusable: {e}"));
    conformance(&index).await;
    // Connecting again finds the schema applied and applies nothing twice.
    let again = ScyllaIndex::connect(&config).await.expect("reconnect to an existing keyspace");
    assert_eq!(again.latest_session("cam").await.expect("read").map(|s| s.session_id), Some("s2".into()));
    index.drop_keyspace(&keyspace).await.expect("drop the test keyspace");
}
