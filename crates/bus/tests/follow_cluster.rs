//! `follow::Follower` on a real 3-node cluster while a node is killed mid-stream, as the compose test does
//! with nats2: every follower, wherever its client and its consumer were, goes on delivering every message in
//! order, without a gap and without a stall.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_nats::jetstream::{consumer::pull::OrderedConfig, stream};
use ladder_bus::{
    async_nats,
    follow::{Follower, Start},
    server::NatsCluster,
    Bus,
};

const STREAM: &str = "FOLLOW_R3";
const SUBJECT: &str = "follow.cam1";
/// How long the publisher publishes, and when the node dies.
const PUBLISH_FOR: Duration = Duration::from_secs(20);
const KILL_AFTER: Duration = Duration::from_secs(4);
/// How long a follower may go without a message (a leader election takes seconds).
const CATCH_UP: Duration = Duration::from_secs(40);

#[tokio::test]
async fn followers_go_on_through_the_loss_of_a_node() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = NatsCluster::start(dir.path(), 3).await.expect("3-node cluster starts");
    let admin = Bus::connect(&cluster.url()).await.expect("connects");
    admin
        .jetstream()
        .create_stream(stream::Config {
            name: STREAM.into(),
            subjects: vec!["follow.>".into()],
            num_replicas: 3,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("R3 stream");

    // The publisher: one message every 20 ms, each retried until stored (a leader election takes seconds).
    let last = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (last, done) = (last.clone(), done.clone());
        let bus = Bus::connect(&cluster.url()).await.expect("connects");
        async move {
            let started = tokio::time::Instant::now();
            while started.elapsed() < PUBLISH_FOR {
                loop {
                    let ack = match bus.jetstream().publish(SUBJECT, "ts".into()).await {
                        Ok(ack) => ack.await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match ack {
                        Ok(ack) => {
                            last.store(ack.sequence, Ordering::SeqCst);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done.store(true, Ordering::SeqCst);
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Followers on clients of every node first (the victim's clients must reconnect elsewhere), from a
    // sequence, from new and from the start.
    let victim = 1;
    let mut followers = Vec::new();
    for (i, start) in [Start::All, Start::New, Start::Sequence(10)].into_iter().cycle().take(9).enumerate() {
        let node = i % cluster.size();
        let mut urls = vec![cluster.node_url(node)];
        urls.extend((0..cluster.size()).filter(|n| *n != node).map(|n| cluster.node_url(n)));
        let bus = Bus::connect(&urls.join(",")).await.expect("connects");
        let mut follower = Follower::new(
            bus.jetstream(),
            STREAM,
            OrderedConfig { filter_subject: SUBJECT.into(), ..Default::default() },
            start,
        )
        .await
        .expect("follower");
        let (last, done) = (last.clone(), done.clone());
        followers.push(tokio::spawn(async move {
            let _bus = bus;
            let mut expected = None::<u64>;
            loop {
                let wait = tokio::time::timeout(CATCH_UP, follower.next());
                let message = match wait.await {
                    Ok(Some(Ok(message))) => message,
                    Ok(Some(Err(e))) => return Err(format!("follower {i} ({start:?}, node {node}): {e}")),
                    Ok(None) => return Err(format!("follower {i}: ended")),
                    Err(_) if done.load(Ordering::SeqCst) && expected == Some(last.load(Ordering::SeqCst) + 1) => {
                        return Ok(())
                    }
                    Err(_) => {
                        return Err(format!(
                            "follower {i} ({start:?}, node {node}) stalled after {expected:?}, {} published",
                            last.load(Ordering::SeqCst)
                        ))
                    }
                };
                let sequence = message.info().expect("a JetStream message").stream_sequence;
                if let Some(expected) = expected {
                    if sequence != expected {
                        return Err(format!(
                            "follower {i} ({start:?}, node {node}): {sequence} after {}",
                            expected - 1
                        ));
                    }
                }
                expected = Some(sequence + 1);
                if done.load(Ordering::SeqCst) && sequence >= last.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
        }));
    }

    tokio::time::sleep(KILL_AFTER).await;
    cluster.kill(victim).await;
    eprintln!("killed node {victim} with {} published", last.load(Ordering::SeqCst));
    publisher.await.expect("publisher");
    eprintln!("published {}", last.load(Ordering::SeqCst));
    let mut failed = Vec::new();
    for follower in followers {
        if let Err(e) = follower.await.expect("follower task") {
            failed.push(e);
        }
    }
    assert!(failed.is_empty(), "every follower delivers every message in order:\n{}", failed.join("\n"));
}
