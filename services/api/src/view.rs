//! The streams as the API sees them: a projection of the event log and of ingest's SRT statistics, in memory,
//! rebuilt from NATS by every instance that starts.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;
use ladder_bus::{
    follow::{Follower, Start},
    topology, Bus,
};
use ladder_proto::{
    v1::{Failure, StreamStatus},
    Event, SrtStats,
};
use prost::Message;
use tokio_util::sync::CancellationToken;

/// Failures kept, newest first, across streams.
const FAILURES_KEPT: usize = 1_000;
/// Chunks of a session kept in detail (the newest); older ones are only counted.
const CHUNKS_KEPT: u64 = 64;
/// Streams whose session ended longer ago than this are forgotten.
const FORGET_AFTER_MS: i64 = crate::EVENTS_LOOKBACK.as_millis() as i64;
/// A stream with SRT statistics this recent has a publisher, whatever the event log says (its start may be
/// older than the lookback).
const STATS_FRESH_MS: i64 = 15_000;

pub fn now_ms() -> i64 {
    ladder_bus::now_ms()
}

#[derive(Default)]
pub struct View {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, StreamView>,
    failures: VecDeque<Failure>,
}

/// One stream: its newest session, and its latest SRT sample.
#[derive(Default)]
struct StreamView {
    session_id: String,
    started_ms: i64,
    ended_ms: i64,
    end_reason: String,
    remote_addr: String,
    /// Chunks cut (chunk.uploaded) in the session, and the newest [`CHUNKS_KEPT`] of them.
    chunk_count: u64,
    chunks: BTreeSet<u64>,
    /// The renditions each of those chunks is in, with when its last one was stored and its last packet
    /// arrived.
    ready: BTreeMap<u64, Ready>,
    failed_count: u64,
    failed: BTreeSet<u64>,
    stats: Option<SrtStats>,
}

#[derive(Default)]
struct Ready {
    renditions: BTreeSet<String>,
    last_packet_ms: i64,
    finished_ms: i64,
}

impl StreamView {
    /// Switches to `session` if it is newer than the one kept (session ids sort by start time).
    fn session(&mut self, session: &str) -> bool {
        if session < self.session_id.as_str() {
            return false;
        }
        if session > self.session_id.as_str() {
            let stats = self.stats.take();
            *self = StreamView { session_id: session.to_string(), ..Default::default() };
            self.stats = stats;
        }
        true
    }

    /// Keeps the newest [`CHUNKS_KEPT`] chunks in detail.
    fn prune(&mut self) {
        let Some(&newest) = self.chunks.iter().next_back().max(self.ready.keys().next_back()) else { return };
        let keep = newest.saturating_sub(CHUNKS_KEPT);
        self.chunks.retain(|&s| s >= keep);
        self.ready.retain(|&s, _| s >= keep);
        self.failed.retain(|&s| s >= keep);
    }

    fn status(&self, stream: &str, now_ms: i64) -> StreamStatus {
        // All renditions of a chunk come out of one ffmpeg run, within moments of each other: a chunk with one
        // is transcoded. The newest such chunk says which renditions the stream has now (a ladder may change).
        let newest = self.ready.values().next_back();
        let renditions: Vec<String> = newest.map(|r| r.renditions.iter().cloned().collect()).unwrap_or_default();
        let behind =
            self.chunks.iter().filter(|s| !self.ready.contains_key(s) && !self.failed.contains(s)).count() as u64;
        let stats = self.stats.as_ref().filter(|s| s.session_id == self.session_id || self.session_id.is_empty());
        let fresh = stats.is_some_and(|s| now_ms - s.sampled_at_ms < STATS_FRESH_MS);
        let open = !self.session_id.is_empty() && self.ended_ms == 0;
        StreamStatus {
            stream: stream.to_string(),
            live: (open || fresh) && self.ended_ms == 0,
            session_id: self.session_id.clone(),
            session_started_ms: self.started_ms,
            session_ended_ms: self.ended_ms,
            end_reason: self.end_reason.clone(),
            remote_addr: stats.map(|s| s.remote_addr.clone()).unwrap_or_else(|| self.remote_addr.clone()),
            input_bitrate_bps: stats.map_or(0.0, |s| s.recv_rate_mbps * 1e6),
            rtt_ms: stats.map_or(0.0, |s| s.rtt_ms),
            packets_lost: stats.map_or(0, |s| s.packets_lost),
            packets_retransmitted: stats.map_or(0, |s| s.packets_retransmitted),
            packets_dropped: stats.map_or(0, |s| s.packets_dropped),
            stats_at_ms: stats.map_or(0, |s| s.sampled_at_ms),
            chunks: self.chunk_count,
            chunks_behind: behind,
            renditions,
            latency_s: newest.map_or(0.0, |r| (r.finished_ms - r.last_packet_ms).max(0) as f64 / 1000.0),
            last_chunk_ms: newest.map_or(0, |r| r.finished_ms),
            has_key: false,
            chunks_failed: self.failed_count,
        }
    }
}

impl View {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Folds one event in, published at `at_ms`.
    pub fn apply(&self, event: &Event, at_ms: i64) {
        let mut state = self.lock();
        let stream = event.stream().to_string();
        match event {
            Event::StreamStarted(e) => {
                let view = state.streams.entry(stream).or_default();
                if view.session(&e.session_id) {
                    view.started_ms = e.started_at_ms;
                    view.remote_addr = e.remote_addr.clone();
                }
            }
            Event::StreamEnded(e) => {
                let view = state.streams.entry(stream).or_default();
                if view.session(&e.session_id) {
                    view.ended_ms = e.ended_at_ms;
                    view.end_reason = e.reason.clone();
                }
            }
            Event::ChunkUploaded(e) => {
                let view = state.streams.entry(stream).or_default();
                if view.session(&e.session_id) && view.chunks.insert(e.sequence) {
                    view.chunk_count += 1;
                    view.prune();
                }
            }
            Event::RenditionReady(e) => {
                let view = state.streams.entry(stream).or_default();
                if view.session(&e.session_id) {
                    let ready = view.ready.entry(e.sequence).or_default();
                    ready.renditions.insert(e.rendition.clone());
                    if let Some(timing) = &e.timing {
                        ready.last_packet_ms = timing.ingest_last_packet_ms;
                        ready.finished_ms = ready.finished_ms.max(timing.transcode_finished_ms);
                    }
                    view.prune();
                }
            }
            Event::ChunkFailed(e) => {
                if e.permanent && e.has_sequence {
                    let view = state.streams.entry(stream).or_default();
                    if view.session(&e.session_id) && view.failed.insert(e.sequence) {
                        view.failed_count += 1;
                    }
                }
                state.failures.push_front(Failure {
                    stream: e.stream.clone(),
                    session_id: e.session_id.clone(),
                    sequence: e.sequence,
                    has_sequence: e.has_sequence,
                    stage: e.stage.clone(),
                    reason: e.reason.clone(),
                    permanent: e.permanent,
                    at_ms,
                });
            }
            Event::StreamFailed(e) => {
                state.streams.entry(stream).or_default().session(&e.session_id);
                state.failures.push_front(Failure {
                    stream: e.stream.clone(),
                    session_id: e.session_id.clone(),
                    sequence: 0,
                    has_sequence: false,
                    stage: e.stage.clone(),
                    reason: e.reason.clone(),
                    permanent: true,
                    at_ms: e.failed_at_ms,
                });
            }
            Event::ChunkStarted(_) | Event::LadderSet(_) => {}
        }
        state.failures.truncate(FAILURES_KEPT);
    }

    /// Keeps a stream's newest SRT sample.
    pub fn apply_stats(&self, stats: SrtStats) {
        let mut state = self.lock();
        let view = state.streams.entry(stats.stream.clone()).or_default();
        if view.session_id.is_empty() || stats.session_id >= view.session_id {
            view.stats = Some(stats);
        }
    }

    pub fn status(&self, stream: &str, now_ms: i64) -> Option<StreamStatus> {
        self.lock().streams.get(stream).map(|view| view.status(stream, now_ms))
    }

    /// Every stream, live ones first, then by name. Streams over for longer than the lookback are forgotten.
    pub fn statuses(&self, now_ms: i64) -> Vec<StreamStatus> {
        let mut state = self.lock();
        state.streams.retain(|_, view| view.ended_ms == 0 || now_ms - view.ended_ms < FORGET_AFTER_MS);
        let mut statuses: Vec<StreamStatus> =
            state.streams.iter().map(|(name, view)| view.status(name, now_ms)).collect();
        statuses.sort_by(|a, b| b.live.cmp(&a.live).then_with(|| a.stream.cmp(&b.stream)));
        statuses
    }

    /// The newest failures of `stream` (every stream if empty), at most `limit`.
    pub fn failures(&self, stream: &str, limit: usize) -> Vec<Failure> {
        self.lock().failures.iter().filter(|f| stream.is_empty() || f.stream == stream).take(limit).cloned().collect()
    }
}

/// Follows the event log into `view` from [`crate::EVENTS_LOOKBACK`] ago, resuming after the last event seen
/// when the consumer breaks.
pub async fn follow_events(bus: Bus, view: std::sync::Arc<View>, shutdown: CancellationToken) {
    let mut last: Option<u64> = None;
    while !shutdown.is_cancelled() {
        let start = match last {
            Some(sequence) => Start::Sequence(sequence + 1),
            None => Start::Time(time::OffsetDateTime::now_utc() - crate::EVENTS_LOOKBACK),
        };
        let messages = Follower::new(bus.jetstream(), topology::EVENTS_STREAM, OrderedConfig::default(), start);
        let mut messages = match messages.await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "cannot follow the event log, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            let Some(Ok(message)) = next else { break };
            let mut at_ms = now_ms();
            if let Ok(info) = message.info() {
                last = Some(info.stream_sequence);
                at_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
            }
            match Event::decode(&message.subject, &message.payload) {
                Ok(event) => view.apply(&event, at_ms),
                Err(error) => tracing::debug!(subject = %message.subject, %error, "undecodable event, skipped"),
            }
        }
    }
}

/// Keeps each stream's newest SRT sample (core NATS, `stats.srt.<stream>`).
pub async fn follow_stats(client: async_nats::Client, view: std::sync::Arc<View>, shutdown: CancellationToken) {
    loop {
        let mut samples = match client.subscribe(ladder_proto::stats::SRT_ALL).await {
            Ok(samples) => samples,
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to srt statistics, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = samples.next() => next,
            };
            let Some(message) = next else { break };
            if let Ok(stats) = SrtStats::decode(message.payload.as_ref()) {
                view.apply_stats(stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ladder_proto::{ChunkUploaded, RenditionReady, StreamEnded, StreamStarted, Timing};

    use super::*;

    fn ready(sequence: u64, rendition: &str, finished_ms: i64) -> Event {
        Event::RenditionReady(RenditionReady {
            stream: "cam".into(),
            session_id: "s2".into(),
            sequence,
            rendition: rendition.into(),
            timing: Some(Timing {
                ingest_last_packet_ms: 1_000,
                transcode_finished_ms: finished_ms,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn a_stream_is_its_newest_session() {
        let view = View::default();
        let started = |session: &str| {
            Event::StreamStarted(StreamStarted {
                stream: "cam".into(),
                session_id: session.into(),
                started_at_ms: 5,
                ..Default::default()
            })
        };
        view.apply(&started("s1"), 0);
        view.apply(
            &Event::StreamEnded(StreamEnded {
                stream: "cam".into(),
                session_id: "s1".into(),
                ended_at_ms: 9,
                reason: "disconnected".into(),
                ..Default::default()
            }),
            0,
        );
        assert!(!view.status("cam", 10).expect("cam").live);
        view.apply(&started("s2"), 0);
        for sequence in 0..3 {
            view.apply(
                &Event::ChunkUploaded(ChunkUploaded {
                    stream: "cam".into(),
                    session_id: "s2".into(),
                    sequence,
                    ..Default::default()
                }),
                0,
            );
        }
        view.apply(&ready(0, "720p", 2_000), 0);
        view.apply(&ready(0, "360p", 2_500), 0);
        view.apply(&ready(1, "720p", 4_000), 0);
        // An event of the older session changes nothing.
        view.apply(
            &Event::ChunkUploaded(ChunkUploaded {
                stream: "cam".into(),
                session_id: "s1".into(),
                sequence: 7,
                ..Default::default()
            }),
            0,
        );
        let status = view.status("cam", 10).expect("cam");
        assert!(status.live);
        assert_eq!(status.session_id, "s2");
        assert_eq!(status.chunks, 3);
        assert_eq!(status.chunks_behind, 1, "chunk 2 has no rendition yet");
        assert_eq!(status.renditions, ["720p"], "the newest chunk's: a ladder may have changed");
        assert_eq!(status.latency_s, 3.0, "the newest chunk transcoded: 1, done at 4 s, last packet at 1 s");
    }
}
