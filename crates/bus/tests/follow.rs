//! `follow::Follower` against a real nats-server: an ordered consumer that is re-created before it delivered
//! anything still starts where it was asked to (async-nats alone starts it again from the oldest message).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{
        pull::{Ordered, OrderedConfig},
        DeliverPolicy,
    },
    stream,
};
use futures::{StreamExt, TryStreamExt};
use ladder_bus::{
    async_nats,
    follow::{Follower, Start},
    server::NatsServer,
};

const STREAM: &str = "FOLLOW_TEST";
const SUBJECT: &str = "follow.cam1";
const WAIT: Duration = Duration::from_secs(30);
/// Long enough for a consumer's first pull request to reach the server.
const IDLE: Duration = Duration::from_millis(500);

async fn setup(dir: &std::path::Path) -> (NatsServer, jetstream::Context) {
    let nats = NatsServer::start(dir, None).await.expect("nats-server starts (make test installs it)");
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let js = jetstream::new(client);
    js.create_stream(stream::Config { name: STREAM.into(), subjects: vec!["follow.>".into()], ..Default::default() })
        .await
        .expect("stream");
    (nats, js)
}

async fn publish(js: &jetstream::Context, count: usize) -> u64 {
    let mut last = 0;
    for _ in 0..count {
        last = js.publish(SUBJECT, "ts".into()).await.expect("publish").await.expect("stored").sequence;
    }
    last
}

/// Deletes every consumer of the stream, as a lost node or an operator would: async-nats re-creates ordered
/// consumers once it notices.
async fn delete_consumers(js: &jetstream::Context) -> usize {
    let stream = js.get_stream(STREAM).await.expect("stream");
    let names: Vec<String> = stream.consumer_names().try_collect().await.expect("consumer names");
    for name in &names {
        stream.delete_consumer(name).await.expect("delete the consumer");
    }
    names.len()
}

/// The follower's next message, within [`WAIT`].
async fn next_message(follower: &mut Follower) -> jetstream::Message {
    tokio::time::timeout(WAIT, follower.next())
        .await
        .expect("the follower delivers")
        .expect("not ended")
        .expect("a message")
}

fn sequence(message: &jetstream::Message) -> u64 {
    message.info().expect("a JetStream message").stream_sequence
}

#[tokio::test]
async fn a_consumer_recreated_before_its_first_message_keeps_its_start_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nats, js) = setup(dir.path()).await;
    let old = publish(&js, 5).await;
    let start = old + 1;
    let config = OrderedConfig { filter_subject: SUBJECT.into(), ..Default::default() };

    // async-nats alone: the consumer re-created before it delivered anything starts from the oldest message.
    let plain = js.get_stream(STREAM).await.expect("stream");
    let mut plain: Ordered = plain
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
            ..config.clone()
        })
        .await
        .expect("consumer")
        .messages()
        .await
        .expect("messages");
    let mut follower = Follower::new(&js, STREAM, config, Start::Sequence(start)).await.expect("follower");
    // Each waits for a message (its pull request is out), so it hears of the deletion.
    assert!(tokio::time::timeout(IDLE, plain.next()).await.is_err(), "nothing after the start yet");
    assert!(tokio::time::timeout(IDLE, follower.next()).await.is_err(), "nothing after the start yet");
    assert_eq!(delete_consumers(&js).await, 2, "the two ordered consumers");
    let wanted = publish(&js, 1).await;
    assert_eq!(wanted, start);

    let first = tokio::time::timeout(WAIT, plain.next())
        .await
        .expect("the plain consumer delivers")
        .expect("not ended")
        .expect("a message");
    assert_eq!(
        sequence(&first),
        1,
        "async-nats re-creates an ordered consumer that delivered nothing from the oldest message; if it now \
         keeps the start, crates/bus/src/follow.rs is no longer needed"
    );

    let first = next_message(&mut follower).await;
    assert_eq!(sequence(&first), start, "the follower starts at its start sequence");
    assert!(follower.restarts() >= 1, "the follower saw the forgotten start and created the consumer again");

    // From there on it goes on in order, nothing twice.
    let next = publish(&js, 1).await;
    let second = next_message(&mut follower).await;
    assert_eq!(sequence(&second), next);
    nats.stop().await;
}

#[tokio::test]
async fn a_consumer_recreated_before_its_first_message_keeps_its_start_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nats, js) = setup(dir.path()).await;
    publish(&js, 3).await;
    // Older than the start by more than the slack the follower allows.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let start = time::OffsetDateTime::now_utc();
    let config = OrderedConfig { filter_subject: SUBJECT.into(), ..Default::default() };
    let mut follower = Follower::new(&js, STREAM, config, Start::Time(start)).await.expect("follower");
    assert!(tokio::time::timeout(IDLE, follower.next()).await.is_err(), "nothing after the start yet");
    assert_eq!(delete_consumers(&js).await, 1);
    let wanted = publish(&js, 1).await;

    let first = next_message(&mut follower).await;
    assert_eq!(sequence(&first), wanted, "the first message stored after the start time");
    assert!(follower.restarts() >= 1, "the follower saw the forgotten start and created the consumer again");
    nats.stop().await;
}
