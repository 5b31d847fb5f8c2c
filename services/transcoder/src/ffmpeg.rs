//! One ffmpeg per chunk, producing every rendition while the chunk arrives: the source is written to its
//! stdin as it comes, and each rendition is read from a pipe of its own (fd 3, 4, ...) as it is encoded.
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
//! - latency and repeatability, for parts produced while the chunk arrives: ffmpeg reads an MPEG-TS input
//!   for its whole analysis duration before it encodes anything (5 s by default), so it is told to analyze
//!   just enough to have the audio's parameters (see `ladder_media::probe::needed_for_parameters`), and not to
//!   probe frame rates; x264 uses two *sliced* threads (no frame of delay, unlike frame threads) and a short
//!   lookahead. A fixed thread count makes the output the same bytes on every run and every machine with the
//!   same ffmpeg: x264 with frame threads, or with as many threads as the machine has cores, is not, and a
//!   worker that redoes a chunk must write the parts its predecessor wrote;
//! - a frame-rate cap keeps every n-th frame (`select`), so kept frames keep their exact timestamps and every
//!   chunk still starts with its first frame;
//! - audio is copied unchanged by default, which keeps it free of encoder priming at chunk boundaries; a
//!   re-encoded (`aac`) rendition has its priming frame removed from each chunk (by the part cutter) so chunks
//!   do not overlap;
//! - `-flush_packets 1`: every packet reaches its pipe when it is muxed.

use std::{os::fd::OwnedFd, process::Stdio, time::Duration};

use command_fds::{CommandFdExt, FdMapping};
use tokio::{io::AsyncReadExt, net::unix::pipe};

use crate::{ladder::frame_step, RenditionSpec};

/// x264 lookahead in frames: the encoder's delay (veryfast's default is 10; with its 3 B-frames, 3 is the
/// least that keeps them: 120 ms at 25 fps, measured 75 ms less per LL-HLS part than 5).
pub const LOOKAHEAD_FRAMES: u32 = 3;
/// First file descriptor of the rendition outputs in ffmpeg.
const FIRST_OUTPUT_FD: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    #[error("cannot run ffmpeg: {0}")]
    Spawn(std::io::Error),
    #[error("ffmpeg failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("ffmpeg was still running past its {}s wall-clock limit and was killed", limit.as_secs_f64())]
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

/// The ffmpeg arguments that transcode the TS on stdin into one MPEG-TS per rendition, rendition `i` on file
/// descriptor 3 + `i`. `frame_duration` is the source's, in 90 kHz ticks (0 when unknown); ffmpeg reads
/// `analyze_us` microseconds of input before it starts.
pub fn command(renditions: &[RenditionSpec], preset: &str, frame_duration: u64, analyze_us: u64) -> Vec<String> {
    let words = |text: &str| text.split_whitespace().map(String::from).collect::<Vec<_>>();
    // The input is untrusted: read as MPEG-TS and nothing else (no probing into the HLS, concat or image
    // demuxers, which open other files), from the pipe only.
    let mut args = words(&format!(
        "-hide_banner -nostdin -loglevel error -copyts -fpsprobesize 0 -analyzeduration {analyze_us} \
         -f mpegts -protocol_whitelist pipe -i pipe:0"
    ));
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
    for (i, r) in renditions.iter().enumerate() {
        let kbps = r.bitrate / 1000;
        args.extend(["-map".to_string(), format!("[v{i}]"), "-map".into(), "0:a?".into()]);
        args.extend(words(&format!(
            "-c:v libx264 -preset {preset} -profile:v high -pix_fmt yuv420p -b:v {kbps}k -maxrate {}k -bufsize {kbps}k \
             -x264-params vbv-init=0.5:threads=2:sliced-threads=1:rc-lookahead={LOOKAHEAD_FRAMES} \
             -enc_time_base:v 1:90000 -g 100000 -keyint_min 100000 -sc_threshold 0 -fps_mode passthrough",
            kbps * 11 / 10,
        )));
        match r.audio.as_str() {
            // One AAC frame per PES, so that the encoder's priming frame can be dropped alone.
            "aac" => args.extend(words(&format!("-c:a aac -b:a {} -pes_payload_size 0", r.audio_bitrate_or_default()))),
            _ => args.extend(words("-c:a copy")),
        }
        args.extend(words("-f mpegts -mpegts_copyts 1 -muxdelay 0 -muxpreload 0 -flush_packets 1"));
        args.push(format!("pipe:{}", FIRST_OUTPUT_FD + i as i32));
    }
    args
}

/// A running ffmpeg: the source goes into [`Encoder::stdin`], rendition `i` comes out of `outputs[i]`.
pub struct Encoder {
    child: tokio::process::Child,
    pub stdin: Option<tokio::process::ChildStdin>,
    pub outputs: Vec<pipe::Receiver>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Encoder {
    /// Starts ffmpeg for `renditions`, analyzing `analyze_us` of input before it starts. It is killed when the
    /// encoder is dropped.
    pub fn spawn(
        renditions: &[RenditionSpec],
        preset: &str,
        frame_duration: u64,
        analyze_us: u64,
    ) -> Result<Encoder, FfmpegError> {
        let mut readers = Vec::with_capacity(renditions.len());
        let mut mappings = Vec::with_capacity(renditions.len());
        for i in 0..renditions.len() {
            let (reader, writer) = std::io::pipe()?;
            readers.push(reader);
            mappings.push(FdMapping { parent_fd: OwnedFd::from(writer), child_fd: FIRST_OUTPUT_FD + i as i32 });
        }
        let mut std_command = std::process::Command::new("ffmpeg");
        std_command.args(command(renditions, preset, frame_duration, analyze_us));
        std_command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        std_command.fd_mappings(mappings).map_err(|e| FfmpegError::Spawn(std::io::Error::other(e.to_string())))?;
        let mut run = tokio::process::Command::from(std_command);
        run.kill_on_drop(true);
        let mut child = run.spawn().map_err(FfmpegError::Spawn)?;
        // The write ends now belong to ffmpeg alone (the command held the parent's copies): each pipe ends when
        // ffmpeg closes its output.
        drop(run);
        let outputs = readers
            .into_iter()
            .map(|reader| pipe::Receiver::from_owned_fd(OwnedFd::from(reader)))
            .collect::<Result<Vec<_>, _>>()?;
        let stdin = child.stdin.take();
        let mut stderr = child.stderr.take();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            if let Some(stderr) = stderr.as_mut() {
                // At most 64 KiB is kept: the last lines say what went wrong.
                let _ = stderr.take(64 * 1024).read_to_string(&mut text).await;
            }
            text
        });
        Ok(Encoder { child, stdin, outputs, stderr })
    }

    /// Waits for ffmpeg to exit, at most `limit` (counted from now: once its input has ended, ffmpeg only has
    /// the last frames to encode); killed past it.
    pub async fn wait(mut self, limit: Duration) -> Result<(), FfmpegError> {
        drop(self.stdin.take());
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                let _ = self.child.kill().await;
                return Err(FfmpegError::Timeout { limit });
            }
        };
        if status.success() {
            return Ok(());
        }
        let stderr = self.stderr.await.unwrap_or_default();
        Err(FfmpegError::Failed {
            status: status.to_string(),
            stderr: stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | "),
        })
    }
}

/// The analysis duration to give ffmpeg for a chunk whose streams' parameters are all known after `needed`
/// ticks of video (`ladder_media::probe::needed_for_parameters`): that, and a frame and 20 ms more, so that
/// ffmpeg reads past the packet that completes them.
pub fn analyze_us(needed: u64, frame_duration: u64) -> u64 {
    (needed + frame_duration.max(3000)) * 1000 / 90 + 20_000
}

/// Reads a rendition chunk with the segmenter's parser: it must hold video and start with an IDR, and its size
/// and codecs come from its SPS. Used on every finished segment, fresh or found already stored.
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

/// Transcodes a whole source chunk at once (the encoder fed from memory): for tests and tools that have the
/// chunk already. Returns the renditions in the order of `renditions`, each a finished segment.
pub async fn transcode(
    source: &[u8],
    renditions: &[RenditionSpec],
    preset: &str,
    frame_duration: u64,
    limit: Duration,
) -> Result<Vec<Output>, FfmpegError> {
    use tokio::io::AsyncWriteExt;
    let needed = ladder_media::probe::needed_for_parameters(source).unwrap_or(60 * 90_000);
    let mut encoder = Encoder::spawn(renditions, preset, frame_duration, analyze_us(needed, frame_duration))?;
    let mut stdin = encoder.stdin.take();
    let source = source.to_vec();
    let feed = async move {
        if let Some(stdin) = stdin.as_mut() {
            // ffmpeg may stop reading early (a failure): its exit status says why, not the broken pipe.
            let _ = stdin.write_all(&source).await;
        }
        drop(stdin);
    };
    let reads = encoder.outputs.drain(..).map(|mut output| async move {
        let mut data = Vec::new();
        output.read_to_end(&mut data).await.map(|_| data)
    });
    let (_, outputs) = tokio::time::timeout(limit, futures::future::join(feed, futures::future::join_all(reads)))
        .await
        .map_err(|_| FfmpegError::Timeout { limit })?;
    encoder.wait(limit).await?;
    let mut encoded = Vec::with_capacity(renditions.len());
    for (r, data) in renditions.iter().zip(outputs) {
        let mut data = data?;
        if r.audio == "aac" {
            data = ladder_media::ts::drop_first_audio_pes(&data);
        }
        encoded.push(check(&r.name, data)?);
    }
    Ok(encoded)
}
