//! HLS playlists (RFC 8216) from the index.

use std::fmt::Write;

use ladder_index::{Rendition, Segment};

const CLOCK: f64 = 90_000.0;

/// The master playlist: one variant per rendition, lowest bandwidth first.
pub fn master(renditions: &[Rendition]) -> String {
    let mut variants: Vec<&Rendition> = renditions.iter().collect();
    variants.sort_by_key(|r| (bandwidth(r), r.name.clone()));
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in variants {
        let _ = writeln!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}\"\n{}.m3u8",
            bandwidth(r),
            r.average_bps.max(1),
            r.width,
            r.height,
            r.codecs,
            r.name
        );
    }
    out
}

/// The renditions of the ladder in force: those that have one of the two newest chunks. A rendition dropped
/// by a ladder change leaves the master playlist; one added joins it with its first chunk.
pub fn current(renditions: Vec<Rendition>) -> Vec<Rendition> {
    let newest = renditions.iter().map(|r| r.last_sequence).max().unwrap_or(0);
    renditions.into_iter().filter(|r| r.last_sequence + 1 >= newest).collect()
}

/// Peak measured bitrate; the target until chunks exist to measure.
fn bandwidth(r: &Rendition) -> u64 {
    if r.peak_bps > 0 {
        r.peak_bps
    } else {
        r.bitrate
    }
}

/// The segments a playlist may list: in sequence order from the first, stopping at the first chunk that
/// is neither ready nor failed for good, so a player never requests a missing segment. A failed chunk is
/// skipped and the next segment carries a discontinuity.
pub fn playable(segments: &[Segment], failed: &[u64]) -> Vec<(Segment, bool)> {
    let mut out = Vec::new();
    let mut expected = segments.first().map_or(0, |s| s.sequence);
    let mut gap = false;
    for segment in segments {
        while expected < segment.sequence {
            if !failed.contains(&expected) {
                return out;
            }
            gap = true;
            expected += 1;
        }
        out.push((segment.clone(), segment.discontinuity || gap));
        gap = false;
        expected = segment.sequence + 1;
    }
    out
}

/// A media playlist: the last `window` playable segments while live; every segment with ENDLIST once the
/// session has ended (`chunk_count` is known) and each of its chunks is listed or failed for good.
/// Segment URIs are `media_base` followed by the object key: `/media/` when the manifest serves media itself,
/// or the public base URL of the bucket or CDN in front of it.
pub fn media(
    segments: &[Segment],
    failed: &[u64],
    window: usize,
    chunk_count: Option<u64>,
    media_base: &str,
) -> String {
    let playable = playable(segments, failed);
    let next = playable.last().map_or(0, |(s, _)| s.sequence + 1);
    let ended = chunk_count.is_some_and(|count| (next..count).all(|seq| failed.contains(&seq)));
    let listed = if ended { &playable[..] } else { &playable[playable.len().saturating_sub(window)..] };
    let target = listed.iter().map(|(s, _)| (s.duration as f64 / CLOCK).ceil() as u64).max().unwrap_or(2).max(1);
    let media_sequence = listed.first().map_or(0, |(s, _)| s.sequence);
    let mut out = String::new();
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{media_sequence}\n"
    );
    for (i, (segment, discontinuity)) in listed.iter().enumerate() {
        // A discontinuity before the first listed segment says nothing to a player: it has nothing before it.
        if *discontinuity && i > 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = write!(out, "#EXTINF:{:.6},\n{media_base}{}\n", segment.duration as f64 / CLOCK, segment.object_key);
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(sequence: u64, duration: u64) -> Segment {
        Segment {
            sequence,
            object_key: format!("live/s/x/720p/{sequence:08}.ts"),
            size_bytes: 1,
            first_pts: sequence * 180_000,
            duration,
            wall_clock_ms: 0,
            discontinuity: sequence == 0,
        }
    }

    #[test]
    fn live_window_with_real_durations() {
        let segments: Vec<Segment> = (0..10).map(|i| segment(i, 180_180)).collect();
        let text = media(&segments, &[], 6, None, "/media/");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");
        assert_eq!(text.matches("#EXTINF:2.002000,").count(), 6);
        assert!(!text.contains("ENDLIST") && !text.contains("DISCONTINUITY"));
    }

    #[test]
    fn stops_at_a_missing_chunk_and_skips_a_failed_one() {
        let segments = vec![segment(0, 180_000), segment(1, 180_000), segment(3, 180_000), segment(5, 180_000)];
        let listed: Vec<u64> = playable(&segments, &[2]).iter().map(|(s, _)| s.sequence).collect();
        assert_eq!(listed, vec![0, 1, 3], "4 is not ready, so 5 is not listed yet");
        let text = media(&segments, &[2], 6, None, "/media/");
        assert!(text.contains("00000001.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000000,\n/media/live/s/x/720p/00000003.ts"));
    }

    #[test]
    fn ended_session_lists_everything_with_endlist() {
        let segments: Vec<Segment> = (0..10).map(|i| segment(i, 180_000)).collect();
        let text = media(&segments, &[], 6, Some(10), "/media/");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n") && text.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(text.matches("#EXTINF").count(), 10);
        let waiting = media(&segments[..9], &[], 6, Some(10), "/media/");
        assert!(!waiting.contains("ENDLIST"), "the last chunk is still being transcoded");
    }

    #[test]
    fn segment_uris_follow_the_media_base() {
        let segments: Vec<Segment> = (0..2).map(|i| segment(i, 180_000)).collect();
        let text = media(&segments, &[], 6, None, "https://cdn.example.com/");
        let uris: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            uris,
            vec![
                "https://cdn.example.com/live/s/x/720p/00000000.ts",
                "https://cdn.example.com/live/s/x/720p/00000001.ts"
            ]
        );
    }
}
