//! Keeps [`Live`] up to date from the bus: an ordered consumer over the event log and one over the LL-HLS parts,
//! each started a while back ([`EVENTS_LOOKBACK`], [`PARTS_LOOKBACK`]) so that a manifest that starts, or
//! restarts, catches what the index may not have yet, and the parts of the live edge. Applying an event twice
//! changes nothing, so the overlap with what the index already holds is harmless. Every manifest instance
//! follows the bus on its own: none depends on another, and none keeps anything that must survive it.
//!
//! A consumer that fails (a NATS restart, a lost node) is created again from the message after the last one
//! applied.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use ladder_bus::{
    follow::{Follower, Start},
    topology, Bus,
};
use ladder_proto::{Event, PartReady};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::live::Live;

/// How far back in the event log a manifest starts: the index holds what came before (the indexer applies
/// events within milliseconds), and this covers an indexer that lags or restarts.
pub const EVENTS_LOOKBACK: Duration = Duration::from_secs(5 * 60);
/// How far back in the parts a manifest starts: a live playlist lists the parts of its last few segments.
pub const PARTS_LOOKBACK: Duration = Duration::from_secs(60);
/// Messages applied before the streams they changed are rendered, while a consumer catches up.
const RENDER_EVERY: usize = 256;

/// Follows one JetStream stream until `shutdown`.
pub async fn follow(bus: Bus, live: Arc<Live>, parts: bool, shutdown: CancellationToken) {
    let (stream_name, lookback) =
        if parts { (topology::PARTS_STREAM, PARTS_LOOKBACK) } else { (topology::EVENTS_STREAM, EVENTS_LOOKBACK) };
    let mut last_sequence: Option<u64> = None;
    let mut pause = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let start = match last_sequence {
            Some(sequence) => Start::Sequence(sequence + 1),
            None => Start::Time(time::OffsetDateTime::now_utc() - lookback),
        };
        let messages = Follower::new(bus.jetstream(), stream_name, OrderedConfig::default(), start);
        let mut messages = match messages.await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(stream = stream_name, %error, "cannot follow the bus, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        pause = Duration::from_millis(200);
        let mut changed = BTreeSet::new();
        let mut applied = 0usize;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(stream = stream_name, %error, "following the bus failed, following again");
                    break;
                }
                None => break,
            };
            let info = message.info().ok().map(|info| (info.stream_sequence, info.pending));
            let result = if parts {
                match PartReady::decode(message.payload.as_ref()) {
                    Ok(part) => live.apply_part(&part).await,
                    Err(error) => {
                        tracing::warn!(subject = %message.subject, %error, "undecodable part, skipped");
                        Ok(None)
                    }
                }
            } else {
                match Event::decode(&message.subject, &message.payload) {
                    Ok(event @ Event::RenditionReady(_)) => {
                        // The end of a chunk's trace: its rendition in this manifest's playlists.
                        let span = tracing::info_span!(
                            parent: None, "manifest.listing", stream = %event.stream(), subject = %message.subject
                        );
                        ladder_telemetry::trace::set_parent(&span, message.headers.as_ref());
                        tracing::Instrument::instrument(live.apply(&event), span).await
                    }
                    Ok(event) => live.apply(&event).await,
                    Err(error) => {
                        tracing::warn!(subject = %message.subject, %error, "undecodable event, skipped");
                        Ok(None)
                    }
                }
            };
            match result {
                Ok(Some(stream)) => {
                    changed.insert(stream);
                }
                Ok(None) => {}
                // The stream could not be loaded from the index: the next request or event tries again.
                Err(error) => {
                    tracing::warn!(subject = %message.subject, %error, "cannot load the stream from the index")
                }
            }
            if let Some((sequence, _)) = info {
                last_sequence = Some(sequence);
            }
            applied += 1;
            // Caught up (nothing pending), or a batch while catching up: render what changed.
            if info.is_none_or(|(_, pending)| pending == 0) || applied.is_multiple_of(RENDER_EVERY) {
                for stream in std::mem::take(&mut changed) {
                    live.refresh(&stream).await;
                }
            }
        }
    }
}

/// Renders the streams still live again every [`crate::live::TICK`]: their playlists depend on the time too.
pub async fn tick(live: Arc<Live>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(crate::live::TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => live.tick().await,
        }
    }
}
