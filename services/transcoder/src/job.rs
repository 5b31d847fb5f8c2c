//! One chunk, transcoded while it arrives: the source read from the raw TS ([`crate::source`]) is written into
//! one ffmpeg ([`crate::ffmpeg::Encoder`]); each rendition's output is cut into LL-HLS parts as it comes
//! ([`ladder_media::PartCutter`]), and every part is stored and announced on its own (`part.ready.<stream>`).
//! When the chunk is complete, each rendition's segment, the concatenation of its parts, is stored and announced
//! with `rendition.ready.<stream>`, as before there were parts.
//!
//! Three kinds of task run at once and are cancelled together when one fails (ffmpeg is killed with them):
//! the feeder (raw TS into ffmpeg's stdin), and per rendition a reader (ffmpeg's output through the cutter)
//! and a writer (parts into storage and onto the bus, in order). The reader never waits for storage, so a slow
//! put never stalls ffmpeg, and through it the other renditions.
//!
//! Keys are write-once. A worker that redoes a chunk (its predecessor died) cuts the same parts, because the
//! encoding is repeatable (see [`crate::ffmpeg`]) and part boundaries depend only on timestamps: storing a part
//! again is a no-op, announcing it again a duplicate JetStream drops. A part that comes out different from the
//! stored one (an ffmpeg of another version on this worker) cannot be continued from: the chunk is given up
//! ([`JobError::Diverged`]), and the playlists skip it.

use std::time::Duration;

use bytes::Bytes;
use ladder_bus::{now_ms, Bus};
use ladder_media::{Part, PartCutter};
use ladder_proto::{ChunkStarted, Event, PartReady, RenditionReady, Timing};
use ladder_storage::{keys, ErrorKind};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{mpsc, watch},
};

use tracing::Instrument;

use crate::{
    current_ladder, ffmpeg, ladder, metrics,
    source::{Finished, RawChunk, SourceError},
    store, Config, JobError, RenditionSpec,
};

/// Parts cut but not yet stored, per rendition: a backlog this long means storage is far slower than the
/// stream, and ffmpeg is held up rather than memory grown.
const PART_QUEUE: usize = 64;

/// Transcodes the chunk `started` announces into every rendition of the stream's ladder that fits the source.
pub async fn transcode(bus: &Bus, config: &Config, started: &ChunkStarted) -> Result<(), JobError> {
    if !crate::key_part_ok(&started.stream) || !crate::key_part_ok(&started.session_id) {
        return Err(JobError::Malformed("a stream or session that is not a key part".into()));
    }
    let started_ms = now_ms();
    metrics::METRICS.queue_wait.observe((started_ms - started.wall_clock_ms).max(0) as f64 / 1000.0);
    let ladder = current_ladder(bus, &started.stream).await?.unwrap_or_else(|| config.ladder.clone());
    let renditions = ladder::fit(&ladder, started.width, started.height);
    if renditions.is_empty() {
        return Ok(());
    }
    let mut source = RawChunk::open(bus, started).await?;
    // ffmpeg reads its whole analysis duration before it starts, so it is started once the chunk's first bytes
    // say how much that must be (up to the first whole audio packet), and what the source's frame duration is
    // (from its first two frames: the chunker's, at a session's first chunk, is a guess until then), on which
    // the frame-rate caps depend.
    let mut head = Vec::new();
    let (needed, frame_duration) = loop {
        let next = source.next().await?;
        let end = next.is_none();
        head.extend_from_slice(&next.unwrap_or_default());
        let needed = ladder_media::probe::needed_for_parameters(&head);
        let step = ladder_media::probe::first_frame_step(&head);
        match (needed, step, end) {
            (Some(needed), Some(step), _) => break (needed, step),
            (needed, step, true) => {
                break (needed.unwrap_or(started.target_duration * 30), step.unwrap_or(started.frame_duration))
            }
            _ => {}
        }
    };
    let ffmpeg_started_ms = now_ms();
    // One span per ffmpeg run: from its start, while the chunk is fed to it, to its exit.
    let ffmpeg_span = tracing::info_span!("ffmpeg", renditions = renditions.len(), preset = %config.preset);
    let analyze = ffmpeg::analyze_us(needed, frame_duration);
    let mut encoder = ffmpeg::Encoder::spawn(&renditions, &config.preset, frame_duration, analyze)?;
    let mut stdin = encoder.stdin.take();
    let outputs = std::mem::take(&mut encoder.outputs);
    let (finished_tx, finished_rx) = watch::channel(None::<Finished>);

    let feeder = async {
        let mut pending = Some(head);
        loop {
            let bytes = match pending.take() {
                Some(head) => head,
                None => match source.next().await? {
                    Some(bytes) => bytes,
                    None => break,
                },
            };
            if let Some(input) = stdin.as_mut() {
                // A broken pipe means ffmpeg failed: its exit status says why.
                if input.write_all(&bytes).await.is_err() {
                    stdin = None;
                }
            }
        }
        drop(stdin);
        let finished = source
            .finished()
            .cloned()
            .ok_or(JobError::Source(SourceError::Bus("the session ended before the chunk had a frame".into())))?;
        // Only once ffmpeg has exited cleanly is a rendition's last part its last: a killed or failed ffmpeg
        // fails the chunk with its own reason.
        encoder.wait(config.ffmpeg_timeout).await?;
        finished_tx.send_replace(Some(finished));
        Ok::<_, JobError>(())
    }
    .instrument(ffmpeg_span);
    let job = Job {
        bus,
        config,
        started,
        source_frame: frame_duration,
        timing: Timing { transcode_started_ms: started_ms, ffmpeg_started_ms, ..Default::default() },
    };
    let pipelines =
        renditions.iter().zip(outputs).map(|(spec, output)| rendition(&job, spec, output, finished_rx.clone()));
    futures::try_join!(feeder, futures::future::try_join_all(pipelines))?;
    tracing::debug!(stream = %started.stream, sequence = started.sequence, ms = now_ms() - started_ms, "chunk transcoded");
    Ok(())
}

/// What the renditions of one chunk share.
struct Job<'a> {
    bus: &'a Bus,
    config: &'a Config,
    started: &'a ChunkStarted,
    /// One source frame, 90 kHz ticks.
    source_frame: u64,
    timing: Timing,
}

/// One rendition: ffmpeg's output cut into parts, which a writer stores and announces in order, then the
/// segment.
async fn rendition(
    job: &Job<'_>,
    spec: &RenditionSpec,
    mut output: tokio::net::unix::pipe::Receiver,
    finished: watch::Receiver<Option<Finished>>,
) -> Result<(), JobError> {
    let Job { bus, config, started, source_frame, timing } = job;
    let (bus, config, started, timing) = (*bus, *config, *started, *timing);
    let frame = source_frame * ladder::frame_step(*source_frame, spec.max_fps);
    let target = ticks(config.part_target);
    let (parts_tx, mut parts_rx) = mpsc::channel::<Part>(PART_QUEUE);
    let mut chunk_end = finished.clone();
    let reader = async move {
        let mut cutter = PartCutter::new(target, frame, spec.audio == "aac");
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = output.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            for part in cutter.push(&buffer[..read]) {
                parts_tx.send(part).await.map_err(|_| JobError::Aborted)?;
            }
        }
        // ffmpeg is done with this rendition and has exited; the last part lasts what the chunk has left of its
        // duration.
        let duration = chunk_end
            .wait_for(Option::is_some)
            .await
            .map_err(|_| JobError::Aborted)?
            .as_ref()
            .map_or(0, |f| f.chunk.duration);
        let last = cutter.finish(duration).ok_or_else(|| {
            JobError::Ffmpeg(ffmpeg::FfmpegError::Output {
                rendition: spec.name.clone(),
                message: "no video frame".into(),
            })
        })?;
        parts_tx.send(last).await.map_err(|_| JobError::Aborted)?;
        Ok::<_, JobError>(())
    };
    let writer = async {
        let mut segment = Vec::new();
        while let Some(part) = parts_rx.recv().await {
            segment.extend_from_slice(&part.data);
            let last = part.last;
            store_part(bus, config, started, spec, part, target).await?;
            if last {
                return Ok(segment);
            }
        }
        Err(JobError::Aborted)
    };
    let ((), segment) = futures::try_join!(reader, writer)?;
    let transcode_finished_ms = now_ms();
    let Some(finished) = finished.borrow().clone() else {
        return Err(JobError::Aborted);
    };
    let key = keys::rendition_chunk(&started.stream, &started.session_id, &spec.name, started.sequence);
    let stored = store(&config.storage, &key, &spec.name, ffmpeg::check(&spec.name, segment)?).await?;
    let event = Event::RenditionReady(RenditionReady {
        stream: started.stream.clone(),
        session_id: started.session_id.clone(),
        sequence: started.sequence,
        rendition: spec.name.clone(),
        object_key: key,
        size_bytes: stored.size,
        // Timestamps are kept from the source, so the source chunk's are the rendition's.
        first_pts: finished.chunk.first_pts,
        duration: finished.chunk.duration,
        wall_clock_ms: started.wall_clock_ms,
        discontinuity: finished.chunk.discontinuity,
        width: stored.width,
        height: stored.height,
        bitrate: spec.bitrate,
        codecs: stored.codecs,
        frame_duration: frame,
        timing: Some(Timing {
            ingest_last_packet_ms: finished.last_packet_ms,
            // The transcoder cuts the chunk from the raw TS itself: it has it when it sees its end.
            segmented_ms: finished.cut_ms,
            uploaded_ms: finished.cut_ms,
            transcode_finished_ms,
            ..timing
        }),
    });
    bus.publish_event(&event).await?;
    let labels = metrics::rendition(&spec.name);
    metrics::METRICS.renditions_ready.get_or_create(&labels).inc();
    metrics::METRICS
        .ffmpeg
        .get_or_create(&labels)
        .observe((transcode_finished_ms - timing.ffmpeg_started_ms) as f64 / 1000.0);
    Ok(())
}

/// Stores one part at its write-once key and announces it.
async fn store_part(
    bus: &Bus,
    config: &Config,
    started: &ChunkStarted,
    spec: &RenditionSpec,
    part: Part,
    target: u64,
) -> Result<(), JobError> {
    let key = keys::rendition_part(&started.stream, &started.session_id, &spec.name, started.sequence, part.index);
    let size_bytes = part.data.len() as u64;
    match config.storage.put(&key, Bytes::from(part.data)).await {
        Ok(_) => {}
        // Players may have this part already: it never changes, and nothing encoded now can follow it.
        Err(e) if e.kind == ErrorKind::Conflict => return Err(JobError::Diverged { key }),
        Err(e) => return Err(e.into()),
    }
    let ready = PartReady {
        stream: started.stream.clone(),
        session_id: started.session_id.clone(),
        sequence: started.sequence,
        rendition: spec.name.clone(),
        part: part.index,
        object_key: key,
        size_bytes,
        duration: part.duration,
        independent: part.independent,
        last: part.last,
        part_target: target,
        wall_clock_ms: started.wall_clock_ms,
        stored_ms: now_ms(),
    };
    bus.publish_part(&ready).await?;
    metrics::METRICS.parts.get_or_create(&metrics::rendition(&spec.name)).inc();
    Ok(())
}

/// 90 kHz ticks.
pub fn ticks(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros() * 9 / 100).unwrap_or(u64::MAX)
}
