//! One accepted publisher, from `StreamStarted` to the END marker.
//!
//! Two tasks per session: the reader (this module's [`run`]) takes SRT payloads, re-aligns and batches them
//! with a [`Batcher`] and stamps each batch with its arrival time; the publisher ([`publish_session`]) sends
//! `stream.started` and then the batches to JetStream one at a time, awaiting each acknowledgement so the
//! sequence numbers are stored in order. The queue between them is bounded in bytes ([`MAX_QUEUED_BYTES`]),
//! not in batches: SRT must be read as it arrives or it drops packets, so while NATS is slow or unreachable
//! the reader keeps queueing and the publisher retries the same message (same `Nats-Msg-Id`, same
//! `Ladder-Seq`) until JetStream stores it. Only a full queue ends the session.
//!
//! Everything is published under the session's [`Claim`]: nothing while it may have expired, and nothing more,
//! not even the END marker, once another publisher holds the name.
//!
//! Every `stats_interval` the reader also samples the connection's libsrt statistics and publishes them on
//! core NATS (`stats.srt.<stream>`): fire and forget, never retained, never in the way of the TS.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_nats::jetstream::{
    self, context::PublishErrorKind, message::PublishMessage, stream::LastRawMessageErrorKind,
};
use ladder_bus::{header, is_refusal, now_ms, topology, Bus};
use ladder_proto::{Event, SrtStats, StreamStarted};
use ladder_srt::{Connection, Stats};
use prost::Message as _;
use tokio::{
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    claims::{Claim, ClaimWatch, Lost},
    gate::LiveName,
    metrics,
    ts::{Batch, Batcher},
};

/// TS bytes of one session that may wait for JetStream: at 8 Mbit/s over four minutes of video, enough to ride
/// out a NATS restart or a cluster election many times over. When it is full the session ends with an error
/// (what is queued is still published) rather than let memory grow without bound.
pub const MAX_QUEUED_BYTES: usize = 256 << 20;
/// How long one publish attempt waits for its acknowledgement before it is sent again.
const PUBLISH_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pauses between publish attempts double from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Sortable by start time (zero-padded milliseconds), unique by the random suffix.
pub fn new_session_id(started_at_ms: i64) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{started_at_ms:013}-{}", &random[..8])
}

/// `Nats-Msg-Id` of a TS message: a retried publish of the same message is de-duplicated by JetStream.
pub fn ts_message_id(stream: &str, session: &str, sequence: u64) -> String {
    format!("ts.{stream}.{session}.{sequence}")
}

/// A publisher admitted on this instance and claimed cluster-wide.
pub(crate) struct Admitted {
    pub live: LiveName,
    pub claim: Claim,
    pub session: String,
    pub started_at_ms: i64,
    /// Cancelled to disconnect the publisher (a kick from the control API).
    pub kick: CancellationToken,
}

/// Why the reader stopped.
enum Stop {
    Disconnected,
    Shutdown,
    /// The control API asked for the publisher to be disconnected.
    Kicked,
    PublisherGone,
    /// Mostly bytes that are not TS packets: the publisher is not sending MPEG-TS.
    NotTransportStream,
    /// [`MAX_QUEUED_BYTES`] wait for JetStream.
    QueueFull,
    ClaimLost(Lost),
}

/// Why the publisher stopped before the queue was empty.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// JetStream answered with an error: sending the same message again cannot help.
    #[error("publish to {subject} refused: {message}")]
    Refused { subject: String, message: String },
    #[error(transparent)]
    ClaimLost(#[from] Lost),
    /// A message of another session was stored on the subject after this session's last one.
    #[error("another publisher wrote to {subject}: {by}")]
    Interleaved { subject: String, by: String },
}

impl Failure {
    /// The stream belongs to another publisher now: this session must not publish anything more.
    fn is_lost(&self) -> bool {
        matches!(self, Failure::ClaimLost(_) | Failure::Interleaved { .. })
    }
}

/// Bytes without TS sync after which a session that sent fewer whole packets than that is refused.
const MAX_SKIPPED: u64 = 1 << 20;

/// A batch in the queue, holding its share of [`MAX_QUEUED_BYTES`] until it is stored.
struct Queued {
    batch: Batch,
    _permit: OwnedSemaphorePermit,
}

/// Runs an accepted publisher until it disconnects, publishing fails, its claim is lost or `shutdown` is
/// cancelled.
pub async fn run(
    bus: &Bus,
    admitted: Admitted,
    mut connection: Connection,
    stats_interval: Duration,
    shutdown: CancellationToken,
) {
    let Admitted { live, claim, session, started_at_ms, kick } = admitted;
    let stream = live.name().to_string();
    let remote = connection.peer();
    let js = bus.jetstream().clone();
    let _connected = metrics::Connected::new();
    let sampler = Sampler {
        series: metrics::SrtSeries::new(&stream),
        client: js.client(),
        stream: stream.clone(),
        session: session.clone(),
        remote,
        key_length: connection.key_length(),
    };
    let mut next_sample = tokio::time::interval_at(Instant::now() + stats_interval, stats_interval);
    next_sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Event::StreamStarted(StreamStarted {
        stream: stream.clone(),
        session_id: session.clone(),
        started_at_ms,
        remote_addr: remote.to_string(),
    });
    let budget = Arc::new(Semaphore::new(MAX_QUEUED_BYTES));
    let (tx, rx) = mpsc::unbounded_channel();
    let publisher = TsPublisher::new(js, &stream, &session, claim.watch(), sampler.series.labels());
    let mut publisher = AbortOnDrop(tokio::spawn(publish_session(publisher, started, rx)));
    let mut claim_watch = claim.watch();

    let mut batcher = Batcher::new();
    let stop = loop {
        let deadline = batcher.deadline();
        let batches = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Stop::Shutdown,
            _ = kick.cancelled() => break Stop::Kicked,
            lost = claim_watch.lost() => break Stop::ClaimLost(lost),
            _ = tx.closed() => break Stop::PublisherGone,
            data = connection.recv() => match data {
                Some(data) => {
                    let full = batcher.push(&data, std::time::Instant::now(), now_ms());
                    if batcher.skipped() > MAX_SKIPPED && batcher.skipped() > batcher.packet_bytes() {
                        break Stop::NotTransportStream;
                    }
                    if full.is_empty() {
                        continue;
                    }
                    full
                }
                None => break Stop::Disconnected,
            },
            _ = next_sample.tick() => {
                sampler.publish(&connection).await;
                continue;
            }
            _ = tokio::time::sleep_until(deadline.map_or_else(Instant::now, Instant::from_std)), if deadline.is_some() => {
                batcher.flush().into_iter().collect()
            }
        };
        if let Err(stop) = enqueue(&tx, &budget, batches) {
            break stop;
        }
    };

    // The last sample, for the log line at the end; then the peer is told the connection is closed.
    let last_stats = connection.stats().ok();
    drop(connection);
    let tail = batcher.flush();
    if matches!(stop, Stop::Disconnected | Stop::Shutdown | Stop::Kicked | Stop::NotTransportStream)
        && enqueue(&tx, &budget, tail.into_iter().collect()).is_err()
    {
        tracing::warn!(%stream, %session, %remote, "the publish queue is full, dropped the last batch");
    }
    if batcher.partial_len() > 0 || batcher.skipped() > 0 {
        tracing::warn!(
            %stream, %session, %remote,
            incomplete_bytes = batcher.partial_len(),
            skipped_bytes = batcher.skipped(),
            "dropped bytes that were not whole ts packets"
        );
    }
    drop(tx);

    let (mut publisher, published) = match (&mut publisher.0).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(%stream, %session, %remote, error = %e, "ts publisher task failed");
            return;
        }
    };
    let lost = match (&published, &stop) {
        (Err(e), _) if e.is_lost() => Some(e.to_string()),
        (_, Stop::ClaimLost(lost)) => Some(lost.to_string()),
        _ => None,
    };
    if let Some(error) = lost {
        // Another publisher holds the name: anything more from this session would interleave with it.
        tracing::error!(
            %stream, %session, %remote, %error,
            messages = publisher.next_sequence,
            "session ended without its end marker"
        );
        return;
    }
    let reason = match (published, stop) {
        (Err(e), _) => {
            tracing::error!(%stream, %session, %remote, error = %e, "publishing ts failed, ending the session");
            format!("error: {e}")
        }
        (Ok(()), Stop::Shutdown) => "shutdown".to_string(),
        (Ok(()), Stop::Kicked) => "kicked".to_string(),
        (Ok(()), Stop::Disconnected | Stop::PublisherGone | Stop::ClaimLost(_)) => "disconnected".to_string(),
        (Ok(()), Stop::QueueFull) => {
            let reason = format!("publish queue full ({} MiB waiting for JetStream)", MAX_QUEUED_BYTES >> 20);
            tracing::error!(%stream, %session, %remote, %reason, "ending the session");
            format!("error: {reason}")
        }
        (Ok(()), Stop::NotTransportStream) => {
            let reason = format!("not an MPEG transport stream ({} bytes without TS sync)", batcher.skipped());
            metrics::refused("NOT_TS");
            tracing::error!(%stream, %session, %remote, %reason, "publisher refused");
            format!("error: {reason}")
        }
    };
    // The END marker is attempted even after a refused publish: it is how the segmenter learns that the
    // session is over and why (it publishes `stream.ended` once it has cut the last chunk).
    let bytes_received = batcher.packet_bytes();
    match publisher.end(&reason).await {
        Ok(()) => {
            let stats = last_stats.unwrap_or_default();
            tracing::info!(
                %stream, %session, %remote, %reason, bytes_received,
                messages = publisher.next_sequence,
                srt_lost = stats.packets_lost,
                srt_retransmitted = stats.packets_retransmitted,
                srt_dropped = stats.packets_dropped,
                srt_rtt_ms = stats.rtt_ms,
                "stream ended"
            )
        }
        Err(e) if e.is_lost() => {
            tracing::error!(%stream, %session, %remote, %reason, error = %e, "cannot publish the end marker");
            return;
        }
        Err(e) => tracing::error!(%stream, %session, %remote, %reason, error = %e, "cannot publish the end marker"),
    }
    // Only now, so that the next session on this name starts after this one's END marker.
    claim.release().await;
}

/// Queues batches for the publisher.
fn enqueue(tx: &mpsc::UnboundedSender<Queued>, budget: &Arc<Semaphore>, batches: Vec<Batch>) -> Result<(), Stop> {
    for batch in batches {
        let len = u32::try_from(batch.payload.len()).map_err(|_| Stop::QueueFull)?;
        let permit = Arc::clone(budget).try_acquire_many_owned(len).map_err(|_| Stop::QueueFull)?;
        tx.send(Queued { batch, _permit: permit }).map_err(|_| Stop::PublisherGone)?;
    }
    Ok(())
}

// === impl Sampler ===

/// Publishes a connection's statistics.
struct Sampler {
    client: async_nats::Client,
    stream: String,
    session: String,
    remote: SocketAddr,
    key_length: u32,
    series: metrics::SrtSeries,
}

impl Sampler {
    async fn publish(&self, connection: &Connection) {
        let stats = match connection.stats() {
            Ok(stats) => stats,
            Err(e) => {
                tracing::debug!(stream = %self.stream, error = %e, "cannot read srt statistics");
                return;
            }
        };
        self.series.observe(&stats);
        let sample = self.sample(&stats, now_ms());
        // Core NATS: buffered by the client, never waited for. A sample lost in an outage is not missed.
        if let Err(e) = self.client.publish(sample.subject(), sample.encode_to_vec().into()).await {
            tracing::debug!(stream = %self.stream, error = %e, "cannot publish srt statistics");
        }
    }

    fn sample(&self, stats: &Stats, now_ms: i64) -> SrtStats {
        let count = |value: i64| u64::try_from(value).unwrap_or(0);
        SrtStats {
            stream: self.stream.clone(),
            session_id: self.session.clone(),
            remote_addr: self.remote.to_string(),
            sampled_at_ms: now_ms,
            elapsed_ms: stats.elapsed_ms,
            rtt_ms: stats.rtt_ms,
            recv_rate_mbps: stats.recv_rate_mbps,
            bytes_received: stats.bytes_received,
            packets_received: count(stats.packets_received),
            packets_lost: count(stats.packets_lost),
            packets_retransmitted: count(stats.packets_retransmitted),
            packets_dropped: count(stats.packets_dropped),
            packets_undecrypted: count(stats.packets_undecrypted),
            flight_size: stats.flight_size,
            recv_buffer_ms: stats.recv_buffer_ms,
            recv_buffer_bytes: stats.recv_buffer_bytes,
            latency_ms: stats.latency_ms,
            encrypted: self.key_length > 0,
            key_length: i32::try_from(self.key_length).unwrap_or(0),
        }
    }
}

/// Publishes `stream.started`, then the batches in order until the queue closes, a publish is refused or the
/// claim is lost.
async fn publish_session(
    mut publisher: TsPublisher,
    started: Event,
    mut rx: mpsc::UnboundedReceiver<Queued>,
) -> (TsPublisher, Result<(), Failure>) {
    if let Err(e) = publisher.started(&started).await {
        return (publisher, Err(e));
    }
    if let Err(e) = publisher.read_last_stored().await {
        return (publisher, Err(e));
    }
    tracing::info!(stream = %publisher.stream, session = %publisher.session, "stream started");
    while let Some(queued) = rx.recv().await {
        if let Err(e) = publisher.publish(queued.batch).await {
            return (publisher, Err(e));
        }
    }
    (publisher, Ok(()))
}

/// The publisher task must not outlive its session: when shutdown aborts a session stuck in retries, the
/// task is aborted with it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// === impl TsPublisher ===

/// The messages of one session: `stream.started`, then raw TS messages numbered from 0.
///
/// Each TS message is published expecting the subject's last stored message to be this session's previous
/// one (`Nats-Expected-Last-Subject-Sequence`), so JetStream itself refuses to interleave two sessions, even
/// one whose message was held up in a client buffer while its claim expired. A retry of a message that was
/// stored is answered as a duplicate before that check, with the original sequence.
struct TsPublisher {
    js: jetstream::Context,
    claim: ClaimWatch,
    stream: String,
    subject: String,
    session: String,
    next_sequence: u64,
    labels: ladder_telemetry::StreamLabels,
    /// The span of the keyframe interval being published (`ingest.gop`): its messages carry its context.
    gop: Option<tracing::Span>,
    /// Stream sequence of the last message stored on `subject` (this session's previous one, or what was
    /// there before it); 0 for none.
    last_stored: u64,
}

impl TsPublisher {
    fn new(
        js: jetstream::Context,
        stream: &str,
        session: &str,
        claim: ClaimWatch,
        labels: ladder_telemetry::StreamLabels,
    ) -> TsPublisher {
        TsPublisher {
            js,
            claim,
            stream: stream.to_string(),
            labels,
            gop: None,
            subject: topology::ingest_subject(stream),
            session: session.to_string(),
            next_sequence: 0,
            last_stored: 0,
        }
    }

    async fn started(&mut self, started: &Event) -> Result<(), Failure> {
        let message =
            PublishMessage::build().payload(bytes::Bytes::from(started.encode())).message_id(started.message_id());
        self.publish_until_stored(started.subject(), message, false).await.map(|_| ())
    }

    /// Reads where the subject ends before this session's first TS message, retrying while NATS is away.
    async fn read_last_stored(&mut self) -> Result<(), Failure> {
        let mut attempt: u32 = 0;
        loop {
            self.claim.held().await?;
            match self.last_on_subject().await {
                Ok(last) => {
                    self.last_stored = last.map_or(0, |(sequence, _)| sequence);
                    return Ok(());
                }
                Err(error) => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(subject = %self.subject, session = %self.session, attempt, %error, "cannot read the end of the subject, retrying");
                    }
                    tokio::time::sleep(retry_pause(attempt)).await;
                }
            }
        }
    }

    async fn publish(&mut self, batch: Batch) -> Result<(), Failure> {
        let bytes = batch.payload.len();
        if crate::ts::starts_keyframe(&batch.payload) || self.gop.is_none() {
            // A new trace at each keyframe: the segmenter cuts chunks at them, and each chunk's spans join it.
            self.gop = Some(tracing::info_span!(
                parent: None, "ingest.gop", stream = %self.stream, session = %self.session, first_message = self.next_sequence
            ));
        }
        let message = self.message(batch.payload).header(header::RECEIVED_MS, batch.received_ms.to_string());
        self.last_stored = self.publish_until_stored(self.subject.clone(), message, true).await?;
        self.next_sequence += 1;
        metrics::stored(&self.labels, bytes);
        Ok(())
    }

    /// The empty message that closes the session, with why; it takes the next sequence number.
    async fn end(&mut self, reason: &str) -> Result<(), Failure> {
        let message = self
            .message(bytes::Bytes::new())
            .header(header::END, "1")
            .header(header::END_REASON, reason)
            .header(header::RECEIVED_MS, now_ms().to_string());
        self.last_stored = self.publish_until_stored(self.subject.clone(), message, true).await?;
        self.next_sequence += 1;
        Ok(())
    }

    fn message(&self, payload: bytes::Bytes) -> PublishMessage {
        let mut message = PublishMessage::build()
            .payload(payload)
            .message_id(self.message_id())
            .header(header::SESSION, self.session.as_str())
            .header(header::SEQUENCE, self.next_sequence.to_string());
        if let Some(gop) = &self.gop {
            for (key, value) in ladder_telemetry::trace::headers_of(gop) {
                message = message.header(key.as_str(), value.as_str());
            }
        }
        message
    }

    fn message_id(&self) -> String {
        ts_message_id(&self.stream, &self.session, self.next_sequence)
    }

    /// Sends `message` until JetStream stores it, while the claim is held; its stream sequence. The message
    /// (so its `Nats-Msg-Id`) is the same every time: an attempt that was stored but whose acknowledgement was
    /// lost is de-duplicated. With `follow`, it must come right after `last_stored` on its subject. Returns
    /// early only if JetStream refuses it, another session wrote to the subject or the claim is lost.
    async fn publish_until_stored(
        &mut self,
        subject: String,
        message: PublishMessage,
        follow: bool,
    ) -> Result<u64, Failure> {
        let mut attempt: u32 = 0;
        loop {
            self.claim.held().await?;
            let attempted =
                if follow { message.clone().expected_last_subject_sequence(self.last_stored) } else { message.clone() };
            let stored = tokio::time::timeout(PUBLISH_ATTEMPT_TIMEOUT, async {
                self.js.send_publish(subject.clone(), attempted).await?.await
            })
            .await;
            let error = match stored {
                Ok(Ok(ack)) => {
                    if attempt > 0 {
                        tracing::info!(%subject, session = %self.session, attempts = attempt + 1, "publish stored after retries");
                    }
                    return Ok(ack.sequence);
                }
                Ok(Err(e)) if follow && e.kind() == PublishErrorKind::WrongLastSequence => {
                    match self.reconcile(&subject).await {
                        Ok(Some(sequence)) => return Ok(sequence),
                        // The expected message expired from the stream; `last_stored` now names what is there.
                        Ok(None) => continue,
                        Err(Some(failure)) => return Err(failure),
                        Err(None) => "cannot read the end of the subject".to_string(),
                    }
                }
                Ok(Err(e)) if is_refusal(&e) => {
                    return Err(Failure::Refused { subject, message: e.to_string() });
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out waiting for the acknowledgement".to_string(),
            };
            attempt += 1;
            // Once, then every ten seconds or so: an outage is one story, not a line per message.
            if attempt == 1 || attempt.is_multiple_of(10) {
                tracing::warn!(%subject, session = %self.session, attempt, %error, "publish failed, retrying until it is stored");
            }
            tokio::time::sleep(retry_pause(attempt)).await;
        }
    }

    /// After JetStream refused the current message because the subject does not end at `last_stored`: its
    /// sequence if the message is the last one (stored, its acknowledgement lost); `None` if the subject ends
    /// before `last_stored` (the expected message expired, nothing newer came), with `last_stored` updated;
    /// a failure if another session wrote; `Err(None)` if NATS did not answer.
    async fn reconcile(&mut self, subject: &str) -> Result<Option<u64>, Option<Failure>> {
        let last = self.last_on_subject().await.map_err(|_| None)?;
        match last {
            Some((sequence, id)) if id == self.message_id() => Ok(Some(sequence)),
            Some((sequence, _)) if sequence < self.last_stored => {
                self.last_stored = sequence;
                Ok(None)
            }
            None => {
                self.last_stored = 0;
                Ok(None)
            }
            Some((sequence, id)) => Err(Some(Failure::Interleaved {
                subject: subject.to_string(),
                by: format!("message {id} at stream sequence {sequence}"),
            })),
        }
    }

    /// Stream sequence and `Nats-Msg-Id` of the last message on the subject.
    async fn last_on_subject(&self) -> Result<Option<(u64, String)>, String> {
        // A handle without a request: the stream is there since `Bus::connect`.
        let ingest = self.js.get_stream_no_info(topology::INGEST_STREAM).await.map_err(|e| e.to_string())?;
        let last = tokio::time::timeout(PUBLISH_ATTEMPT_TIMEOUT, ingest.get_last_raw_message_by_subject(&self.subject));
        match last.await {
            Ok(Ok(message)) => {
                let id = message.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|id| id.as_str().to_string());
                Ok(Some((message.sequence, id.unwrap_or_default())))
            }
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        }
    }
}

/// The pause after the `attempt`-th failure: doubling from [`RETRY_FIRST`] up to [`RETRY_MAX`].
fn retry_pause(attempt: u32) -> Duration {
    RETRY_FIRST.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_sort_by_start_time() {
        let early = new_session_id(1_700_000_000_000);
        let late = new_session_id(1_700_000_000_001);
        assert_eq!(early.len(), 13 + 1 + 8);
        assert!(early.starts_with("1700000000000-"));
        assert!(early < late);
        assert!(early[14..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(new_session_id(5), new_session_id(5), "random suffix");
        assert!(new_session_id(5).starts_with("0000000000005-"), "zero padded");
    }

    #[test]
    fn retry_pauses_double_up_to_a_second() {
        let pauses: Vec<_> = (1..=6).map(|attempt| retry_pause(attempt).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry_pause(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn ts_message_ids_name_stream_session_and_sequence() {
        assert_eq!(ts_message_id("cam-1", "0000000000005-abcdef01", 7), "ts.cam-1.0000000000005-abcdef01.7");
    }
}
