//! A real 3-node nats-server cluster on loopback: a replicated stream keeps taking writes while a node is
//! down, and the node comes back on its own ports and store.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use ladder_bus::{async_nats, server::NatsCluster};

/// Publishes until JetStream acknowledges, for up to 30 s: a stream leader election takes a few seconds.
async fn publish_until_acked(js: &jetstream::Context, subject: &str, payload: &'static [u8]) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let result = match js.publish(subject.to_string(), payload.into()).await {
            Ok(ack) => ack.await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(ack) => return ack.sequence,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("publish not acknowledged yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("publish to {subject} never acknowledged: {e}"),
        }
    }
}

#[tokio::test]
async fn a_replicated_stream_takes_writes_with_a_node_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        NatsCluster::start(dir.path(), 3).await.expect("3-node cluster starts (make test installs nats-server)");
    assert_eq!(cluster.url().split(',').count(), 3);

    let servers: Vec<async_nats::ServerAddr> =
        cluster.url().split(',').map(|url| url.parse().expect("node url")).collect();
    let client = async_nats::connect(servers).await.expect("connects");
    let js = jetstream::new(client);
    let mut stream = js
        .create_stream(stream::Config {
            name: "R3TEST".into(),
            subjects: vec!["r3.>".into()],
            num_replicas: 3,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("R3 stream is created");
    assert_eq!(publish_until_acked(&js, "r3.a", b"before").await, 1);

    // Kill the node that leads the stream, the harder case: a new leader has to be elected.
    let info = stream.info().await.expect("stream info");
    let cluster_info = info.cluster.clone().expect("a clustered stream reports its cluster");
    assert_eq!(cluster_info.replicas.len(), 2, "two followers besides the leader: {cluster_info:?}");
    let leader = cluster_info.leader.expect("the stream has a leader");
    let leader_index: usize = leader.trim_start_matches('n').parse().expect("nodes are named n<i>");
    cluster.kill(leader_index).await;

    assert_eq!(publish_until_acked(&js, "r3.a", b"during").await, 2);
    let info = stream.info().await.expect("stream info with a node down");
    assert_ne!(info.cluster.clone().and_then(|c| c.leader), Some(leader.clone()), "a new leader took over");

    cluster.restart(leader_index).await.expect("the killed node comes back on its ports and store");
    assert_eq!(publish_until_acked(&js, "r3.a", b"after").await, 3);
    let restarted =
        async_nats::connect(cluster.node_url(leader_index)).await.expect("the restarted node takes clients");
    let message = jetstream::new(restarted)
        .get_stream("R3TEST")
        .await
        .expect("stream through the restarted node")
        .get_raw_message(2)
        .await
        .expect("the message published while the node was down");
    assert_eq!(&message.payload[..], b"during");
}

#[tokio::test]
async fn a_bus_on_three_nodes_replicates_everything_three_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = NatsCluster::start(dir.path(), 3).await.expect("3-node cluster starts");
    let bus = ladder_bus::Bus::connect_with(&cluster.url(), None).await.expect("connects");
    assert_eq!(bus.replicas(), 3);
    let js = bus.jetstream();
    for name in [ladder_bus::topology::INGEST_STREAM, ladder_bus::topology::EVENTS_STREAM] {
        let mut stream = js.get_stream(name).await.expect("stream");
        let info = stream.info().await.expect("info");
        assert_eq!(info.config.num_replicas, 3, "{name}");
        assert_eq!(info.cluster.as_ref().map(|c| c.replicas.len()), Some(2), "{name}: a leader and two followers");
    }
    for spec in &ladder_bus::topology::CONSUMERS {
        let info =
            js.get_stream(spec.stream).await.expect("stream").consumer_info(spec.durable).await.expect("consumer");
        assert_eq!(info.config.num_replicas, 3, "{}", spec.durable);
        assert_eq!(info.cluster.map(|c| c.replicas.len()), Some(2), "{}", spec.durable);
    }
    for name in ladder_bus::kv::BUCKETS {
        let status = js.get_key_value(name).await.expect("bucket").status().await.expect("status");
        assert_eq!(status.info.config.num_replicas, 3, "{name}");
    }
    // An instance that starts later, told to use one replica, changes nothing that exists.
    let later = ladder_bus::Bus::connect_with(&cluster.node_url(1), Some("1")).await.expect("connects");
    assert_eq!(later.replicas(), 1);
    let info = js.get_stream(ladder_bus::topology::EVENTS_STREAM).await.expect("stream").cached_info().clone();
    assert_eq!(info.config.num_replicas, 3);
}

#[tokio::test]
async fn a_bus_publish_rides_out_the_loss_of_the_stream_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = NatsCluster::start(dir.path(), 3).await.expect("3-node cluster starts");
    let bus = ladder_bus::Bus::connect(&cluster.url()).await.expect("connects");
    let js = bus.jetstream();
    let mut stream = js.get_stream(ladder_bus::topology::EVENTS_STREAM).await.expect("stream");
    let leader = stream.info().await.expect("info").cluster.clone().and_then(|c| c.leader).expect("a leader");
    cluster.kill(leader.trim_start_matches('n').parse().expect("nodes are named n<i>")).await;

    let event = ladder_proto::Event::StreamStarted(ladder_proto::StreamStarted {
        stream: "cam1".into(),
        session_id: "s1".into(),
        started_at_ms: 1,
        remote_addr: "127.0.0.1:9000".into(),
    });
    bus.publish_event(&event).await.expect("stored once a new leader is elected");
    bus.publish_event(&event).await.expect("a retry is a harmless duplicate");
    let info = stream.info().await.expect("info");
    assert_eq!(info.state.messages, 1);
    assert_ne!(info.cluster.as_ref().and_then(|c| c.leader.clone()), Some(leader));
}
