//! The backlog of the durable consumers, as gauges: JetStream's own numbers (`consumer.info()`), read every
//! [`SAMPLE_EVERY`] by each service that reads through one. Instances sharing a consumer report the same
//! values; take the `max` across instances.

use std::{sync::LazyLock, time::Duration};

use async_nats::jetstream::consumer::PullConsumer;
use ladder_telemetry::{register, ConsumerLabels, Family, Gauge};
use tokio_util::sync::CancellationToken;

/// How often a consumer's numbers are read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

struct Metrics {
    pending: Family<ConsumerLabels, Gauge>,
    ack_pending: Family<ConsumerLabels, Gauge>,
    redelivered: Family<ConsumerLabels, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    pending: register(
        "ladder_consumer_pending",
        "Messages of the consumer's stream not yet delivered to it (its backlog)",
        Family::default(),
    ),
    ack_pending: register(
        "ladder_consumer_ack_pending",
        "Messages delivered and not yet acknowledged (being worked on)",
        Family::default(),
    ),
    redelivered: register(
        "ladder_consumer_redelivered",
        "Messages delivered more than once and not yet acknowledged",
        Family::default(),
    ),
});

/// Reports `consumer`'s backlog until `shutdown`. A failed read is skipped; the gauges keep their last value.
pub fn watch_consumer(consumer: PullConsumer, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut consumer = consumer;
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let info = match tokio::time::timeout(SAMPLE_EVERY, consumer.info()).await {
                Ok(Ok(info)) => info.clone(),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot read consumer info");
                    continue;
                }
                Err(_) => continue,
            };
            let labels = ConsumerLabels { stream: info.stream_name.clone(), consumer: info.name.clone() };
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            METRICS.pending.get_or_create(&labels).set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            METRICS.ack_pending.get_or_create(&labels).set(count(info.num_ack_pending));
            METRICS.redelivered.get_or_create(&labels).set(count(info.num_redelivered));
        }
    })
}
