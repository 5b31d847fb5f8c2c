//! One chunk through the transcoder's ffmpeg run and into write-once storage, with real ffmpeg and a local
//! storage directory: the wall-clock limit, and a retry that adopts the encoding an earlier attempt stored.

use std::{process::Command, time::Duration};

use bytes::Bytes;
use ladder_storage::Storage;
use ladder_transcoder::{ffmpeg, RenditionSpec};

/// Two seconds of 320x240 H.264 at 25 fps with AAC, one IDR at the start: a chunk as the segmenter cuts it.
fn source_chunk(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("source.ts");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2"])
        .args(["-c:v", "libx264", "-g", "100", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the source");
    std::fs::read(&path).expect("source")
}

fn rendition() -> Vec<RenditionSpec> {
    vec![RenditionSpec::new("180p", 180, 300_000)]
}

#[tokio::test]
async fn ffmpeg_is_killed_at_its_wall_clock_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = source_chunk(dir.path());
    let error = ffmpeg::transcode(&source, &rendition(), "veryfast", 3600, Duration::from_millis(1))
        .await
        .expect_err("no chunk transcodes in a millisecond");
    assert!(matches!(error, ffmpeg::FfmpegError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("0.001s wall-clock limit"), "{error}");
    let outputs = ffmpeg::transcode(&source, &rendition(), "veryfast", 3600, Duration::from_secs(60))
        .await
        .expect("within the limit");
    assert_eq!((outputs[0].width, outputs[0].height), (240, 180));
}

#[tokio::test]
async fn a_retry_announces_the_encoding_an_earlier_attempt_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::local(&dir.path().join("media")).expect("storage");
    let source = source_chunk(dir.path());
    let encode = |preset: &'static str| {
        let source = source.clone();
        async move {
            let mut outputs = ffmpeg::transcode(&source, &rendition(), preset, 3600, Duration::from_secs(60))
                .await
                .expect("transcode");
            outputs.remove(0)
        }
    };
    // Two presets stand in for two machines: the same chunk, other bytes.
    let (first, second) = (encode("ultrafast").await, encode("medium").await);
    assert_ne!(first.data, second.data);
    let key = "live/cam/s1/180p/00000000.ts";

    let stored = ladder_transcoder::store(&storage, key, "180p", first.clone()).await.expect("first attempt");
    assert_eq!(stored.size, first.data.len() as u64);
    let adopted = ladder_transcoder::store(&storage, key, "180p", second.clone()).await.expect("retry");
    assert_eq!(adopted, stored, "the retry announces what is stored");
    assert_eq!(storage.get(key).await.expect("get"), Bytes::from(first.data.clone()), "never overwritten");
    // The same bytes again are simply stored already.
    assert_eq!(ladder_transcoder::store(&storage, key, "180p", first).await.expect("same bytes"), stored);

    // What is stored is checked like fresh output before it is announced.
    let garbage = "live/cam/s1/180p/00000001.ts";
    storage.put(garbage, Bytes::from_static(b"not a transport stream")).await.expect("put");
    let error = ladder_transcoder::store(&storage, garbage, "180p", second).await.expect_err("garbage stored");
    assert!(error.to_string().contains("180p"), "{error}");
}
