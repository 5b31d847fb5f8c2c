//! Indexers on a real nats-server: two with indexes of their own (SQLite files) each see every event, through
//! consumers of their own; two sharing the default consumer would split the events between them.

use std::time::Duration;

use ladder_bus::{server::NatsServer, Bus};
use ladder_proto::{Event, StreamStarted};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexers_with_their_own_sqlite_file_and_consumer_each_see_every_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(&dir.path().join("nats"), None).await.expect("nats-server");
    let bus = Bus::connect(&nats.url()).await.expect("bus");
    let streams: Vec<String> = (0..20).map(|i| format!("cam{i}")).collect();
    for (i, stream) in streams.iter().enumerate() {
        let started = Event::StreamStarted(StreamStarted {
            stream: stream.clone(),
            session_id: format!("17000000000{i:02}-00000000"),
            started_at_ms: 1_700_000_000_000 + i as i64,
            remote_addr: "127.0.0.1:1".into(),
        });
        bus.publish_event(&started).await.expect("published");
    }
    let stop = CancellationToken::new();
    let mut indexes = Vec::new();
    for name in ["indexer-a", "indexer-b"] {
        let index =
            ladder_index::open(&dir.path().join(format!("{name}.db")).display().to_string()).await.expect("index");
        indexes.push(index.clone());
        let config = ladder_indexer::Config { nats_url: nats.url(), index, consumer: name.to_string() };
        tokio::spawn(ladder_indexer::run(config, stop.clone()));
    }
    for (name, index) in ["a", "b"].iter().zip(&indexes) {
        let mut listed = 0;
        for _ in 0..100 {
            listed = index.streams().await.expect("streams").len();
            if listed == streams.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(listed, streams.len(), "indexer {name} saw every stream");
    }
    stop.cancel();
}
