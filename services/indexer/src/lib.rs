//! # Layout
//! The indexer folds every event of `LADDER_EVENTS` (durable consumer `indexer`) into the index with
//! [`Index::apply`], and acknowledges each event once it is written. Applying is idempotent, so redelivery
//! and replay (`ladder reindex`) are safe.
//!
//! Instances: indexers that share one index (ScyllaDB) share the durable consumer `indexer` and split the
//! events between them. An indexer with an index of its own (a SQLite file) needs every event: it gets a
//! consumer of its own ([`Config::consumer`], e.g. `indexer-b`), with the same settings.
#![forbid(unsafe_code)]

mod metrics;

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use async_nats::jetstream::message::AckKind;
use futures::StreamExt;
use ladder_bus::{topology, Bus, BusError};
use ladder_index::Index;
use ladder_proto::Event;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Config {
    pub nats_url: String,
    pub index: Arc<dyn Index>,
    /// Name of the durable consumer: `indexer` (shared) unless this indexer's index is its own.
    pub consumer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("consuming events: {0}")]
    Consume(String),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), IndexerError> {
    LazyLock::force(&metrics::METRICS);
    let bus = Bus::connect(&config.nats_url).await?;
    let consumer = bus.consumer_named(topology::INDEXER, &config.consumer).await?;
    let backlog = ladder_bus::metrics::watch_consumer(consumer.clone(), shutdown.child_token());
    let mut messages = consumer.messages().await.map_err(|e| IndexerError::Consume(e.to_string()))?;
    tracing::info!(consumer = %config.consumer, "indexer started");
    ladder_telemetry::health::register("indexer: nats", ladder_telemetry::health::nats(bus.jetstream().client()));
    let index = config.index.clone();
    ladder_telemetry::health::probe("indexer: index", shutdown.child_token(), move || {
        let index = index.clone();
        async move { index.latest_session("ladder-readyz").await.map(|_| ()).map_err(|e| e.to_string()) }
    });
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = messages.next() => message,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "receiving events failed");
                continue;
            }
            None => return Err(IndexerError::Consume("consumer stream ended".into())),
        };
        let event = match Event::decode(&message.subject, &message.payload) {
            Ok(event) => event,
            Err(e) => {
                // Not ours to fix by retrying: keep it out of the index and say so.
                tracing::error!(subject = %message.subject, error = %e, "skipping undecodable event");
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            }
        };
        let applying = std::time::Instant::now();
        let span = tracing::info_span!(parent: None, "indexer.apply", event = event.subject_prefix(), stream = %event.stream());
        ladder_telemetry::trace::set_parent(&span, message.headers.as_ref());
        let applied = tracing::Instrument::instrument(config.index.apply(&event), span).await;
        metrics::applied(&event, applied.is_ok(), applying.elapsed());
        match applied {
            Ok(()) => {
                if let Err(e) = message.ack().await {
                    tracing::warn!(error = %e, "ack failed");
                }
            }
            Err(e) => {
                tracing::error!(subject = %message.subject, error = %e, "index write failed, will retry");
                let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }
    backlog.abort();
    bus.drain().await;
    tracing::info!("indexer stopped");
    Ok(())
}
