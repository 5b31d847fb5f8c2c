//! One accepted publisher, from `StreamStarted` to the END marker.
//!
//! Two tasks per session: the reader (this module's [`run`]) takes SRT payloads, re-aligns and batches them
//! with a [`Batcher`] and stamps each batch with its arrival time; the publisher ([`publish_batches`]) sends
//! the batches to JetStream one at a time, awaiting each acknowledgement so the sequence numbers are stored
//! in order. The bounded channel between them absorbs a slow acknowledgement without stalling the SRT
//! receiver (which would make it drop packets), and applies back-pressure when NATS is slower than the
//! stream for longer than that.

use std::{net::SocketAddr, time::Instant};

use async_nats::jetstream::message::PublishMessage;
use futures::{SinkExt, StreamExt};
use ladder_bus::{header, now_ms, Bus, BusError};
use ladder_proto::{Event, StreamStarted};
use srt_tokio::SrtSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    ts::{Batch, Batcher},
    LiveName,
};

/// Batches waiting for their publish: at 50 ms a batch this is over 10 s of a typical stream.
const PUBLISH_QUEUE: usize = 256;
/// How long closing an SRT socket may take on shutdown.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Sortable by start time (zero-padded milliseconds), unique by the random suffix.
pub fn new_session_id(started_at_ms: i64) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{started_at_ms:013}-{}", &random[..8])
}

/// `Nats-Msg-Id` of a TS message: a retried publish of the same message is de-duplicated by JetStream.
pub fn ts_message_id(stream: &str, session: &str, sequence: u64) -> String {
    format!("ts.{stream}.{session}.{sequence}")
}

/// Why the reader stopped.
enum Stop {
    Disconnected,
    Shutdown,
    PublisherGone,
    /// Mostly bytes that are not TS packets: the publisher is not sending MPEG-TS.
    NotTransportStream,
}

/// Bytes without TS sync after which a session that sent fewer whole packets than that is refused.
const MAX_SKIPPED: u64 = 1 << 20;

/// Runs an accepted publisher until it disconnects, publishing fails or `shutdown` is cancelled.
pub async fn run(bus: Bus, live: LiveName, remote: SocketAddr, mut socket: SrtSocket, shutdown: CancellationToken) {
    let stream = live.name().to_string();
    let started_at_ms = now_ms();
    let session = new_session_id(started_at_ms);
    let started = Event::StreamStarted(StreamStarted {
        stream: stream.clone(),
        session_id: session.clone(),
        started_at_ms,
        remote_addr: remote.to_string(),
    });
    if let Err(e) = bus.publish_event(&started).await {
        tracing::error!(%stream, %session, %remote, error = %e, "cannot publish stream started, closing the connection");
        close(&mut socket).await;
        return;
    }
    tracing::info!(%stream, %session, %remote, "stream started");

    let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
    let mut publisher =
        AbortOnDrop(tokio::spawn(publish_batches(TsPublisher::new(bus.clone(), &stream, &session), rx)));

    let mut batcher = Batcher::new();
    let stop = loop {
        let deadline = batcher.deadline();
        let batch = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Stop::Shutdown,
            _ = tx.closed() => break Stop::PublisherGone,
            item = socket.next() => match item {
                Some(Ok((_, data))) => {
                    let full = batcher.push(&data, Instant::now(), now_ms());
                    if batcher.skipped() > MAX_SKIPPED && batcher.skipped() > batcher.packet_bytes() {
                        break Stop::NotTransportStream;
                    }
                    if full.is_empty() {
                        continue;
                    }
                    full
                }
                Some(Err(e)) => {
                    // srt-tokio 0.4 ends the stream rather than yielding errors; kept for a future version.
                    tracing::warn!(%stream, %session, %remote, error = %e, "srt receive failed");
                    break Stop::Disconnected;
                }
                None => break Stop::Disconnected,
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                batcher.flush().into_iter().collect()
            }
        };
        if !send(&tx, batch).await {
            break Stop::PublisherGone;
        }
    };

    if !matches!(stop, Stop::Disconnected) {
        close(&mut socket).await;
    }
    drop(socket);
    let tail = batcher.flush();
    if !matches!(stop, Stop::PublisherGone) {
        send(&tx, tail.into_iter().collect()).await;
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
    let reason = match (&published, stop) {
        (Err(e), _) => {
            tracing::error!(%stream, %session, %remote, error = %e, "publishing ts failed, ending the session");
            format!("error: {e}")
        }
        (Ok(()), Stop::Shutdown) => "shutdown".to_string(),
        (Ok(()), Stop::Disconnected | Stop::PublisherGone) => "disconnected".to_string(),
        (Ok(()), Stop::NotTransportStream) => {
            let reason = format!("not an MPEG transport stream ({} bytes without TS sync)", batcher.skipped());
            tracing::error!(%stream, %session, %remote, %reason, "publisher refused");
            format!("error: {reason}")
        }
    };
    // The END marker is attempted even after a failed publish: it is how the segmenter learns that the
    // session is over and why (it publishes `stream.ended` once it has cut the last chunk), and NATS may be
    // back by now.
    let bytes_received = batcher.packet_bytes();
    if let Err(e) = publisher.end(&reason).await {
        tracing::error!(%stream, %session, %remote, %reason, error = %e, "cannot publish the end marker");
        return;
    }
    tracing::info!(
        %stream, %session, %remote, %reason, bytes_received,
        messages = publisher.next_sequence,
        "stream ended"
    );
}

/// Hands batches to the publisher; false if it is gone.
async fn send(tx: &mpsc::Sender<Batch>, batches: Vec<Batch>) -> bool {
    for batch in batches {
        if tx.send(batch).await.is_err() {
            return false;
        }
    }
    true
}

async fn close(socket: &mut SrtSocket) {
    // Closing the sending half makes srt-tokio send a shutdown to the peer.
    if tokio::time::timeout(CLOSE_TIMEOUT, socket.close()).await.is_err() {
        tracing::debug!("closing the srt socket timed out");
    }
}

/// Publishes batches in order until the channel closes or a publish fails (after the bus's retries).
async fn publish_batches(
    mut publisher: TsPublisher,
    mut rx: mpsc::Receiver<Batch>,
) -> (TsPublisher, Result<(), BusError>) {
    while let Some(batch) = rx.recv().await {
        if let Err(e) = publisher.publish(batch).await {
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

/// The raw TS messages of one session, numbered from 0.
struct TsPublisher {
    bus: Bus,
    stream: String,
    session: String,
    next_sequence: u64,
}

impl TsPublisher {
    fn new(bus: Bus, stream: &str, session: &str) -> TsPublisher {
        TsPublisher { bus, stream: stream.to_string(), session: session.to_string(), next_sequence: 0 }
    }

    async fn publish(&mut self, batch: Batch) -> Result<(), BusError> {
        let message = self.message(batch.payload).header(header::RECEIVED_MS, batch.received_ms.to_string());
        self.bus.publish_ts(&self.stream, message).await?;
        self.next_sequence += 1;
        Ok(())
    }

    /// The empty message that closes the session, with why; it takes the next sequence number.
    async fn end(&mut self, reason: &str) -> Result<(), BusError> {
        let message = self
            .message(bytes::Bytes::new())
            .header(header::END, "1")
            .header(header::END_REASON, reason)
            .header(header::RECEIVED_MS, now_ms().to_string());
        self.bus.publish_ts(&self.stream, message).await?;
        self.next_sequence += 1;
        Ok(())
    }

    fn message(&self, payload: bytes::Bytes) -> PublishMessage {
        PublishMessage::build()
            .payload(payload)
            .message_id(ts_message_id(&self.stream, &self.session, self.next_sequence))
            .header(header::SESSION, self.session.as_str())
            .header(header::SEQUENCE, self.next_sequence.to_string())
    }
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
    fn ts_message_ids_name_stream_session_and_sequence() {
        assert_eq!(ts_message_id("cam-1", "0000000000005-abcdef01", 7), "ts.cam-1.0000000000005-abcdef01.7");
    }
}
