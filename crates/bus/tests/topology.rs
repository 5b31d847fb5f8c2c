//! `topology::ensure` against a real nats-server that an operator (or an older ladder) has changed.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt;
use ladder_bus::{async_nats, kv, server::NatsServer, topology, Bus};

#[tokio::test]
async fn an_operators_limits_survive_ensure_and_missing_subjects_are_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts (make test installs it)");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    let js = bus.jetstream();

    // The operator keeps events for 90 days; an older ladder did not know ladder.set.
    let mut config = js.get_stream(topology::EVENTS_STREAM).await.expect("stream").cached_info().config.clone();
    config.max_age = Duration::from_secs(90 * 24 * 3600);
    config.subjects.retain(|subject| subject != "ladder.set.*");
    js.update_stream(config).await.expect("operator's change");

    Bus::connect(&nats.url()).await.expect("connects again, ensuring the topology");
    let config = js.get_stream(topology::EVENTS_STREAM).await.expect("stream").cached_info().config.clone();
    assert_eq!(config.max_age, Duration::from_secs(90 * 24 * 3600), "the operator's max_age is kept");
    assert!(config.subjects.iter().any(|subject| subject == "ladder.set.*"), "{:?}", config.subjects);
    assert_eq!(config.subjects.len(), ladder_proto::subject::ALL.len(), "{:?}", config.subjects);
    nats.stop().await;
}

#[tokio::test]
async fn a_consumer_setting_changed_in_code_reaches_an_existing_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    let js = bus.jetstream();
    let stream = js.get_stream(topology::EVENTS_STREAM).await.expect("stream");

    // The transcoder consumer as an older ladder declared it, holding one delivered, unacknowledged message.
    stream
        .create_consumer(pull::Config {
            durable_name: Some(topology::TRANSCODER.into()),
            filter_subject: "chunk.uploaded.>".into(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 1_000,
            ..Default::default()
        })
        .await
        .expect("older consumer");
    js.publish("chunk.uploaded.cam1", "chunk".into()).await.expect("publish").await.expect("stored");
    let old: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(topology::TRANSCODER).await.expect("consumer");
    let mut batch = old.fetch().max_messages(1).messages().await.expect("fetch");
    batch.next().await.expect("one message").expect("delivered");

    let consumer = bus.consumer(topology::TRANSCODER).await.expect("the declared consumer");
    let info = stream.consumer_info(topology::TRANSCODER).await.expect("info");
    let declared = topology::CONSUMERS.iter().find(|spec| spec.durable == topology::TRANSCODER).expect("declared");
    assert_eq!(info.config.ack_wait, declared.ack_wait);
    assert_eq!(info.config.max_deliver, declared.max_deliver);
    assert_eq!(info.num_ack_pending, 1, "the update keeps the delivery state");
    assert_eq!(info.delivered.stream_sequence, 1);
    assert_eq!(consumer.cached_info().config.ack_wait, declared.ack_wait);
    nats.stop().await;
}

#[tokio::test]
async fn a_single_server_gets_one_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts");
    let bus = Bus::connect(&nats.url()).await.expect("connects");
    assert_eq!(bus.replicas(), 1);
    let js = bus.jetstream();
    for name in [topology::INGEST_STREAM, topology::EVENTS_STREAM] {
        let info = js.get_stream(name).await.expect("stream").cached_info().clone();
        assert_eq!(info.config.num_replicas, 1, "{name}");
    }
    for name in kv::BUCKETS {
        let status = js.get_key_value(name).await.expect("bucket").status().await.expect("status");
        assert_eq!(status.info.config.num_replicas, 1, "{name}");
    }
    nats.stop().await;
}
