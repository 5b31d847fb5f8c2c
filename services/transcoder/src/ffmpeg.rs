//! One ffmpeg run per chunk, producing every rendition.
//!
//! Why these options:
//! - `-copyts` and `-mpegts_copyts 1` with zero mux delay keep the source timestamps, so chunk N+1 of every
//!   rendition starts where chunk N ended, and renditions stay aligned with each other for ABR switching;
//! - `-fps_mode passthrough` keeps every source frame with its timestamp (no duplicated or dropped frames), and
//!   the 1/90000 encoder time base keeps those timestamps exact (the default, 1/frame rate, rounds them);
//! - one keyframe per chunk (a GOP longer than any chunk, no scene-cut keyframes): each rendition chunk starts
//!   with an IDR and its GOP is closed;
//! - capped rate control keeps the bitrate near the target even though every chunk's rate control starts
//!   fresh: maxrate 1.1x the target, a one-second VBV buffer, and the buffer starting half full (x264's
//!   default, 90%, lets every chunk spend most of a second's worth of extra bits on its first frames, which
//!   measured 15-20% over the target on 2 s chunks);
//! - a frame-rate cap keeps every n-th frame (`select`), so kept frames keep their exact timestamps and every
//!   chunk still starts with its first frame;
//! - audio is copied unchanged by default, which keeps it free of encoder priming at chunk boundaries; a
//!   re-encoded (`aac`) rendition has its priming frame removed from each chunk so chunks do not overlap.

use std::{process::Stdio, time::Duration};

use crate::{ladder::frame_step, RenditionSpec};

#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    #[error("cannot run ffmpeg: {0}")]
    Spawn(std::io::Error),
    #[error("ffmpeg failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("ffmpeg was still running after the {}s wall-clock limit and was killed", limit.as_secs_f64())]
    Timeout { limit: Duration },
    #[error("ffmpeg output for {rendition} is unreadable: {message}")]
    Output { rendition: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One encoded rendition chunk.
#[derive(Debug, Clone)]
pub struct Output {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
}

/// The ffmpeg arguments that transcode `input` into one output file per rendition. `frame_duration` is the
/// source's, in 90 kHz ticks (0 when unknown).
pub fn command(
    input: &str,
    renditions: &[RenditionSpec],
    outputs: &[String],
    preset: &str,
    frame_duration: u64,
) -> Vec<String> {
    let words = |text: &str| text.split_whitespace().map(String::from).collect::<Vec<_>>();
    let mut args = words("-hide_banner -nostdin -loglevel error -copyts -i");
    args.push(input.to_string());
    let labels: String = (0..renditions.len()).map(|i| format!("[s{i}]")).collect();
    let mut graph = format!("[0:v:0]split={}{labels}", renditions.len());
    for (i, r) in renditions.iter().enumerate() {
        let width = if r.width == 0 { "-2".to_string() } else { r.width.to_string() };
        graph.push_str(&format!(";[s{i}]scale={width}:{}", r.height));
        let step = frame_step(frame_duration, r.max_fps);
        if step > 1 {
            graph.push_str(&format!(",select='not(mod(n,{step}))'"));
        }
        graph.push_str(&format!("[v{i}]"));
    }
    args.extend(["-filter_complex".to_string(), graph]);
    for (i, (r, output)) in renditions.iter().zip(outputs).enumerate() {
        let kbps = r.bitrate / 1000;
        args.extend(["-map".to_string(), format!("[v{i}]"), "-map".into(), "0:a?".into()]);
        args.extend(words(&format!(
            "-c:v libx264 -preset {preset} -profile:v high -pix_fmt yuv420p -b:v {kbps}k -maxrate {}k -bufsize {kbps}k \
             -x264-params vbv-init=0.5 \
             -enc_time_base:v 1:90000 -g 100000 -keyint_min 100000 -sc_threshold 0 -fps_mode passthrough",
            kbps * 11 / 10,
        )));
        match r.audio.as_str() {
            // One AAC frame per PES, so that the encoder's priming frame can be dropped alone (see below).
            "aac" => args.extend(words(&format!("-c:a aac -b:a {} -pes_payload_size 0", r.audio_bitrate_or_default()))),
            _ => args.extend(words("-c:a copy")),
        }
        args.extend(words("-f mpegts -mpegts_copyts 1 -muxdelay 0 -muxpreload 0"));
        args.push(output.clone());
    }
    args
}

/// Transcodes one source chunk into every rendition, in the order of `renditions`. ffmpeg is killed if it runs
/// longer than `limit`: a chunk that makes it hang must not hold a worker for ever.
pub async fn transcode(
    source: &[u8],
    renditions: &[RenditionSpec],
    preset: &str,
    frame_duration: u64,
    limit: Duration,
) -> Result<Vec<Output>, FfmpegError> {
    let dir = tempfile::Builder::new().prefix("ladder-transcode-").tempdir()?;
    let input = dir.path().join("source.ts");
    tokio::fs::write(&input, source).await?;
    // Files are named by position, not by rendition name, so no name can reach the file system.
    let outputs: Vec<String> =
        (0..renditions.len()).map(|i| dir.path().join(format!("out{i}.ts")).display().to_string()).collect();
    let args = command(&input.display().to_string(), renditions, &outputs, preset, frame_duration);
    let run = tokio::process::Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Dropping the run on timeout (or on shutdown) kills ffmpeg.
        .kill_on_drop(true)
        .output();
    let result = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| FfmpegError::Timeout { limit })?
        .map_err(FfmpegError::Spawn)?;
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr);
        return Err(FfmpegError::Failed {
            status: result.status.to_string(),
            stderr: stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | "),
        });
    }
    let mut encoded = Vec::with_capacity(renditions.len());
    for (r, path) in renditions.iter().zip(&outputs) {
        let mut data = tokio::fs::read(path).await?;
        if r.audio == "aac" {
            // The encoder starts with a priming frame one frame before the chunk's first sample; it would overlap
            // the previous chunk's last frame, so it goes.
            data = ladder_media::ts::drop_first_audio_pes(&data);
        }
        encoded.push(check(&r.name, data)?);
    }
    Ok(encoded)
}

/// Reads a rendition chunk with the segmenter's parser: it must hold video and start with an IDR, and its size
/// and codecs come from its SPS. Used on fresh ffmpeg output and on a chunk found already stored.
pub fn check(rendition: &str, data: Vec<u8>) -> Result<Output, FfmpegError> {
    let output = |message: String| FfmpegError::Output { rendition: rendition.to_string(), message };
    let probe = ladder_media::probe::probe(&data)
        .map_err(|e| output(e.to_string()))?
        .ok_or_else(|| output("no video frame".into()))?;
    if !probe.starts_with_idr {
        return Err(output("does not start with an IDR frame".into()));
    }
    Ok(Output { data, width: probe.width, height: probe.height, codecs: probe.codecs })
}
