//! HLS playlists (RFC 8216) from the index.

use std::{collections::BTreeMap, fmt::Write};

use ladder_index::{Rendition, Segment, Session};

pub const CLOCK: f64 = 90_000.0;

/// The master playlist: one variant per rendition, lowest bandwidth first. `query` is appended to each
/// variant URI (a clip's time range), or empty.
pub fn master(renditions: &[Rendition], query: &str) -> String {
    let mut variants: Vec<&Rendition> = renditions.iter().collect();
    variants.sort_by_key(|r| (bandwidth(r), r.name.clone()));
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},",
            bandwidth(r),
            r.average_bps.max(1),
            r.width,
            r.height
        );
        if r.frame_duration > 0 {
            let _ = write!(out, "FRAME-RATE={:.3},", CLOCK / r.frame_duration as f64);
        }
        let _ = writeln!(out, "CODECS=\"{}\"\n{}.m3u8{query}", r.codecs, r.name);
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

/// How long a chunk may be missing while later chunks of its rendition are ready before it is treated as lost
/// and skipped, counted from the wall clock of the first later chunk (so every manifest instance, at any request
/// time, decides alike). It covers a transcoder killed mid-chunk (redelivered after the consumer's ack wait)
/// and a few retries; a chunk that fails for good is skipped as soon as its `chunk.failed` is indexed.
pub const GAP_WAIT_MS: i64 = 30_000;

/// The segments a playlist may list: in sequence order from the first, stopping at the first chunk that
/// is neither ready nor failed for good, so a player never requests a missing segment. A failed chunk is
/// skipped and the next segment carries a discontinuity; so is a missing chunk once the next ready one is
/// [`GAP_WAIT_MS`] old at `now_ms`.
pub fn playable(segments: &[Segment], failed: &[u64], now_ms: i64) -> Vec<(Segment, bool)> {
    let mut out = Vec::new();
    let mut expected = segments.first().map_or(0, |s| s.sequence);
    let mut gap = false;
    for segment in segments {
        let given_up = now_ms - segment.wall_clock_ms >= GAP_WAIT_MS;
        while expected < segment.sequence {
            if !given_up && !failed.contains(&expected) {
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

/// One publish session of a stream with the chunks of one rendition.
#[derive(Debug, Clone)]
pub struct SessionMedia {
    pub session: Session,
    pub segments: Vec<Segment>,
    /// Sequence numbers of chunks that failed for good.
    pub failed: Vec<u64>,
}

/// A segment placed on the stream's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Media sequence number: unique and increasing across the stream's sessions.
    pub msn: u64,
    /// Which of the sessions given to [`timeline`] the segment belongs to.
    pub session: usize,
    pub segment: Segment,
    /// Something between the previous entry and this one breaks continuity: a reconnect, a skipped chunk or a
    /// timestamp jump.
    pub discontinuity: bool,
    /// Wall-clock time of the segment's first frame, in Unix milliseconds.
    pub program_date_ms: i64,
}

/// Every playable segment of one rendition across the stream's sessions, in order.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub entries: Vec<Entry>,
    /// The newest session has ended and each of its chunks is listed or failed for good.
    pub complete: bool,
    /// When the newest session ended, if it has.
    pub ended_at_ms: Option<i64>,
    /// The target duration: the longest segment of the timeline, rounded to the nearest second. It can only
    /// grow as the stream goes on, never shrink, as RFC 8216 requires of a live playlist.
    pub target_duration: u64,
    /// The segment that comes after the last entry, if the timeline is not held up before it: the one being
    /// produced now, whose LL-HLS parts a live playlist lists.
    pub next: Option<Slot>,
}

/// A place on the timeline: the chunk `sequence` of session `session`, with its media sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub session: usize,
    pub sequence: u64,
    pub msn: u64,
    /// It starts a new session after an earlier one (a reconnect).
    pub discontinuity: bool,
}

/// How long a session that ended with its last chunks still missing waits for them: time for them to be
/// transcoded. Meanwhile an earlier session holds back the sessions after it, and the newest one's playlists do
/// not end. After that its missing chunks are treated as lost.
pub const IN_FLIGHT_WAIT_MS: i64 = 120_000;

/// Puts the sessions (oldest first) on one timeline. Media sequence numbers count every chunk of every earlier
/// session, so they never go backwards or repeat while the stream's sessions are retained, and each new session
/// starts with a discontinuity. The timeline stops at the first chunk that is neither ready nor failed for good,
/// so a player never requests a segment that does not exist yet, unless later chunks have been ready for a
/// while ([`playable`]). `now_ms` is the current time.
pub fn timeline(sessions: &[SessionMedia], now_ms: i64) -> Timeline {
    let mut entries: Vec<Entry> = Vec::new();
    let mut base = 0u64;
    let mut complete = false;
    // Where each session's numbers start; whether a session held the later ones back.
    let mut bases = Vec::with_capacity(sessions.len());
    let mut held_back = false;
    for (k, media) in sessions.iter().enumerate() {
        bases.push(base);
        let newest = k + 1 == sessions.len();
        let listed = playable(&media.segments, &media.failed, now_ms);
        // Program dates anchor on a session's first segment, and again after each discontinuity (a timestamp
        // jump); in between they follow the media timeline (PTS are unwrapped, so a plain difference).
        let mut anchor: Option<(i64, u64)> = None;
        let mut session_start = true;
        for (segment, gap) in &listed {
            let discontinuity = *gap || (session_start && !entries.is_empty());
            if anchor.is_none() || *gap || segment.discontinuity {
                anchor = Some((segment.wall_clock_ms, segment.first_pts));
            }
            let program_date_ms =
                anchor.map_or(segment.wall_clock_ms, |(wall, pts)| wall + (segment.first_pts as i64 - pts as i64) / 90);
            entries.push(Entry {
                msn: base + segment.sequence,
                session: k,
                segment: segment.clone(),
                discontinuity,
                program_date_ms,
            });
            session_start = false;
        }
        let next = listed.last().map_or(0, |(s, _)| s.sequence + 1);
        let seen = media.segments.iter().map(|s| s.sequence + 1).chain(media.failed.iter().map(|f| f + 1)).max();
        let count = media.session.chunk_count.or(seen).unwrap_or(0).max(next);
        let all_listed = (next..count).all(|seq| media.failed.contains(&seq));
        if newest {
            // The last chunks of an ended session may never come (the transcoder lost them and nobody said so):
            // like an earlier session's, they are waited for a while, not for ever, so the playlist can end.
            let waited = media.session.ended_at_ms.is_some_and(|ended_at| now_ms - ended_at >= IN_FLIGHT_WAIT_MS);
            complete =
                media.session.ended_at_ms.is_some() && media.session.chunk_count.is_some() && (all_listed || waited);
        } else if let (Some(ended_at), false) = (media.session.ended_at_ms, all_listed) {
            // An earlier session still has chunks in flight: later ones wait behind it, for a while. A rendition
            // the session never had (a smaller source, another ladder) holds nothing back.
            if !media.segments.is_empty() && now_ms - ended_at < IN_FLIGHT_WAIT_MS {
                held_back = true;
                break;
            }
        }
        base += count;
    }
    let next = match (held_back, entries.last(), sessions.len()) {
        (true, _, _) | (_, _, 0) => None,
        // The newest session goes on after its last listed chunk (or waits for the chunk missing there).
        (false, Some(last), n) if last.session + 1 == n => Some(Slot {
            session: last.session,
            sequence: last.segment.sequence + 1,
            msn: last.msn + 1,
            discontinuity: false,
        }),
        // The newest session has nothing listed yet (the ones between, if any, hold nothing back): its first
        // chunk is next.
        (false, _, n) => {
            Some(Slot { session: n - 1, sequence: 0, msn: bases[n - 1], discontinuity: !entries.is_empty() })
        }
    };
    let target_duration =
        entries.iter().map(|e| (e.segment.duration as f64 / CLOCK).round() as u64).max().unwrap_or(2).max(1);
    let ended_at_ms = sessions.last().and_then(|m| m.session.ended_at_ms);
    Timeline { entries, complete, ended_at_ms, target_duration, next }
}

/// Which media playlist to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The last `window` segments, sliding.
    Live { window: usize },
    /// Every retained segment: the stream so far, for seeking back (DVR).
    Dvr,
    /// The segments overlapping a wall-clock range (Unix ms), as a VOD playlist.
    Clip { from_ms: i64, to_ms: i64 },
}

/// A media playlist, and whether it is final (has EXT-X-ENDLIST, so it will not change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlaylist {
    pub text: String,
    pub fixed: bool,
}

/// What a live media playlist adds for LL-HLS (RFC 8216bis): the parts of its last segments and of the one
/// being produced, the next part to expect, where the other renditions are, and what the server can do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LowLatency {
    /// PART-TARGET in 90 kHz ticks: no part is longer.
    pub part_target: u64,
    /// The parts of listed segments, by media sequence number: only the last few segments' are listed.
    pub parts: BTreeMap<u64, Vec<PartLine>>,
    /// The parts so far of the segment after the last listed one ([`Timeline::next`]).
    pub pending: Vec<PartLine>,
    /// When the segment being produced starts, wall clock (for its EXT-X-PROGRAM-DATE-TIME).
    pub pending_date_ms: i64,
    /// The URI of the next part (EXT-X-PRELOAD-HINT).
    pub hint: Option<String>,
    /// Every other rendition's live edge (EXT-X-RENDITION-REPORT).
    pub reports: Vec<RenditionReport>,
}

/// One EXT-X-PART line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartLine {
    /// 90 kHz ticks.
    pub duration: u64,
    /// The object key; the playlist prefixes the media base.
    pub key: String,
    pub independent: bool,
}

/// One EXT-X-RENDITION-REPORT line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    pub uri: String,
    pub last_msn: u64,
    /// The last part of that segment; `None` when its parts are not known.
    pub last_part: Option<u32>,
}

/// Segments whose parts a live playlist lists: RFC 8216bis 6.2.2 drops parts older than three target
/// durations from the end of the playlist.
pub const PARTS_LISTED: usize = 3;

impl LowLatency {
    /// PART-HOLD-BACK: three part targets, what the spec says a server should give (at least two).
    pub fn part_hold_back(&self) -> f64 {
        3.0 * self.part_target as f64 / CLOCK
    }
}

/// The skip boundary of delta updates (CAN-SKIP-UNTIL): six target durations, the least the spec allows.
pub fn skip_until(target_duration: u64) -> f64 {
    6.0 * target_duration as f64
}

/// A media playlist of `kind` from the timeline. `ended` adds EXT-X-ENDLIST (the stream is over, grace period
/// included). A clip is a VOD playlist once all of its range is available; while its range runs past what is
/// listed yet, it is an EVENT playlist that grows. Segment URIs are `media_base` followed by the object key:
/// `/media/` when the manifest serves media itself, or the public base URL of the bucket or CDN in front of it.
/// `None` when a clip has nothing to list.
///
/// With `ll` (a live playlist whose stream has parts), it is an LL-HLS playlist: EXT-X-SERVER-CONTROL,
/// EXT-X-PART-INF, the parts of the last segments and of the one in progress, EXT-X-PRELOAD-HINT and
/// EXT-X-RENDITION-REPORT. Players without LL-HLS ignore those tags and play the same segments. With `skip` too
/// it is a delta update (`_HLS_skip=YES`): the segments more than [`skip_until`] from the end are replaced by
/// EXT-X-SKIP.
pub fn media(
    timeline: &Timeline,
    kind: Kind,
    ended: bool,
    media_base: &str,
    ll: Option<&LowLatency>,
    skip: bool,
) -> Option<MediaPlaylist> {
    let entries = &timeline.entries;
    let (start, end) = match kind {
        Kind::Live { window } => (entries.len().saturating_sub(window), entries.len()),
        Kind::Dvr => (0, entries.len()),
        Kind::Clip { from_ms, to_ms } => {
            let end_of = |e: &Entry| e.program_date_ms + (e.segment.duration / 90) as i64;
            // Dates increase along the timeline: the range is found by bisection, not by a walk over it.
            let first = entries.partition_point(|e| end_of(e) <= from_ms);
            let last = entries.partition_point(|e| e.program_date_ms < to_ms);
            if first >= last {
                return None;
            }
            (first, last)
        }
    };
    let ll = ll.filter(|_| !ended && matches!(kind, Kind::Live { .. }));
    let listed = entries.get(start..end).filter(|l| !l.is_empty());
    if listed.is_none() && matches!(kind, Kind::Clip { .. }) {
        return None;
    }
    let listed = listed.unwrap_or_default();
    // Discontinuities before the first listed segment are counted, not tagged (the first entry's never counts:
    // nothing came before it).
    let discontinuity_sequence = entries.iter().take(start + 1).skip(1).filter(|e| e.discontinuity).count();
    let media_sequence = listed.first().map_or(entries.last().map_or(0, |e| e.msn + 1), |e| e.msn);
    // A delta update leaves out the listed segments that end more than the skip boundary from the end.
    let skipped = match (ll, skip) {
        (Some(ll), true) => {
            let pending: u64 = ll.pending.iter().map(|p| p.duration).sum();
            let mut remaining = listed.iter().map(|e| e.segment.duration).sum::<u64>() + pending;
            let boundary = (skip_until(timeline.target_duration) * CLOCK) as u64;
            let mut n = 0;
            for entry in listed {
                remaining -= entry.segment.duration;
                if remaining < boundary {
                    break;
                }
                n += 1;
            }
            n
        }
        _ => 0,
    };
    let version = match (ll, skipped) {
        (Some(_), 1..) => 9,
        (Some(_), 0) => 6,
        (None, _) => 3,
    };
    let mut out = String::new();
    let _ = write!(out, "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n", timeline.target_duration);
    if let Some(ll) = ll {
        let _ = write!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},CAN-SKIP-UNTIL={:.1}\n\
             #EXT-X-PART-INF:PART-TARGET={:.3}\n",
            ll.part_hold_back(),
            skip_until(timeline.target_duration),
            ll.part_target as f64 / CLOCK,
        );
    }
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{media_sequence}");
    if discontinuity_sequence > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}");
    }
    let end_of = |e: &Entry| e.program_date_ms + (e.segment.duration / 90) as i64;
    let clip_open = match kind {
        Kind::Clip { to_ms, .. } => !timeline.complete && entries.last().is_none_or(|last| to_ms > end_of(last)),
        _ => false,
    };
    let fixed = ended || (matches!(kind, Kind::Clip { .. }) && !clip_open);
    match kind {
        Kind::Clip { .. } if clip_open => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
        Kind::Clip { .. } => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        _ => {}
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if skipped > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    let part_line = |out: &mut String, part: &PartLine| {
        let _ =
            write!(out, "#EXT-X-PART:DURATION={:.5},URI=\"{media_base}{}\"", part.duration as f64 / CLOCK, part.key);
        out.push_str(if part.independent { ",INDEPENDENT=YES\n" } else { "\n" });
    };
    for (i, entry) in listed.iter().enumerate().skip(skipped) {
        if entry.discontinuity && i > 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        // Every segment carries its date, so a player joining at any point can place it.
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", program_date_time(entry.program_date_ms));
        let recent = listed.len() - i <= PARTS_LISTED;
        for part in ll.filter(|_| recent).and_then(|ll| ll.parts.get(&entry.msn)).into_iter().flatten() {
            part_line(&mut out, part);
        }
        let _ = write!(
            out,
            "#EXTINF:{:.6},\n{media_base}{}\n",
            entry.segment.duration as f64 / CLOCK,
            entry.segment.object_key
        );
    }
    if let (Some(ll), Some(next)) = (ll, timeline.next) {
        if !ll.pending.is_empty() {
            if next.discontinuity || listed.last().is_some_and(|last| last.msn + 1 != next.msn) {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", program_date_time(ll.pending_date_ms));
            for part in &ll.pending {
                part_line(&mut out, part);
            }
        }
    }
    if let Some(ll) = ll {
        if let Some(hint) = &ll.hint {
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{media_base}{hint}\"");
        }
        for report in &ll.reports {
            let _ = write!(out, "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}", report.uri, report.last_msn);
            if let Some(part) = report.last_part {
                let _ = write!(out, ",LAST-PART={part}");
            }
            out.push('\n');
        }
    }
    if fixed {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    Some(MediaPlaylist { text: out, fixed })
}

/// ISO 8601 with milliseconds and a UTC offset, as EXT-X-PROGRAM-DATE-TIME wants.
pub fn program_date_time(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A time given in a clip URL: Unix milliseconds, or RFC 3339 (`2026-11-24T20:15:00Z`).
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(session: &str, sequence: u64, duration: u64) -> Segment {
        Segment {
            sequence,
            object_key: format!("live/s/{session}/720p/{sequence:08}.ts"),
            size_bytes: 1,
            first_pts: 900_000 + sequence * duration,
            duration,
            wall_clock_ms: 1_700_000_000_000 + sequence as i64 * 2_000 + 37, // arrival jitter
            discontinuity: sequence == 0,
        }
    }

    fn session(id: &str, started: i64, ended: Option<(i64, u64)>, count: u64, failed: &[u64]) -> SessionMedia {
        SessionMedia {
            session: Session {
                stream: "s".into(),
                session_id: id.into(),
                started_at_ms: started,
                ended_at_ms: ended.map(|(at, _)| at),
                chunk_count: ended.map(|(_, n)| n),
            },
            segments: (0..count).filter(|n| !failed.contains(n)).map(|n| segment(id, n, 180_000)).collect(),
            failed: failed.to_vec(),
        }
    }

    fn uris(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn live_window_with_real_durations() {
        let mut media = session("a", 0, None, 10, &[]);
        media.segments = (0..10).map(|i| segment("a", i, 180_180)).collect();
        let timeline = timeline(&[media], 0);
        let text =
            super::media(&timeline, Kind::Live { window: 6 }, false, "/media/", None, false).expect("playlist").text;
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "2.002 s rounds to 2: {text}");
        assert_eq!(text.matches("#EXTINF:2.002000,").count(), 6);
        assert!(!text.contains("ENDLIST") && !text.contains("DISCONTINUITY"));
    }

    #[test]
    fn stops_at_a_missing_chunk_and_skips_a_failed_one() {
        let mut media = session("a", 0, None, 6, &[2]);
        media.segments.retain(|s| s.sequence != 4);
        let listed: Vec<u64> = playable(&media.segments, &media.failed, 0).iter().map(|(s, _)| s.sequence).collect();
        assert_eq!(listed, vec![0, 1, 3], "4 is not ready, so 5 is not listed yet");
        let text = super::media(&timeline(&[media], 0), Kind::Live { window: 6 }, false, "/media/", None, false)
            .expect("playlist")
            .text;
        assert!(text.contains("00000001.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:"), "{text}");
        assert_eq!(uris(&text).last(), Some(&"/media/live/s/a/720p/00000003.ts"));
    }

    fn msns(timeline: &Timeline) -> Vec<u64> {
        timeline.entries.iter().map(|e| e.msn).collect()
    }

    #[test]
    fn skips_a_chunk_missing_in_the_newest_session_after_a_bounded_wait() {
        let mut media = session("a", 0, None, 6, &[]);
        media.segments.retain(|s| s.sequence != 2);
        // Counted from chunk 3, the first later one, so it does not matter when or where the playlist is asked for.
        let since = media.segments[2].wall_clock_ms;
        assert_eq!(msns(&timeline(&[media.clone()], since + GAP_WAIT_MS - 1)), vec![0, 1], "still waiting for 2");
        let moved_on = timeline(&[media.clone()], since + GAP_WAIT_MS);
        assert_eq!(msns(&moved_on), vec![0, 1, 3, 4, 5]);
        let text =
            super::media(&moved_on, Kind::Live { window: 6 }, false, "/media/", None, false).expect("playlist").text;
        assert!(text.contains("00000001.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        // Should the chunk come after all, it takes its place.
        let mut late = media.clone();
        late.segments.insert(2, segment("a", 2, 180_000));
        let whole = timeline(&[late], since + GAP_WAIT_MS);
        assert_eq!(msns(&whole), (0..6).collect::<Vec<_>>());
        assert!(whole.entries.iter().skip(1).all(|e| !e.discontinuity));
        // A missing chunk with nothing ready after it is waited for: it may be the live edge.
        let mut edge = session("a", 0, None, 6, &[]);
        edge.segments.retain(|s| s.sequence != 5);
        assert_eq!(msns(&timeline(&[edge], i64::MAX / 2)), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_newest_session_ends_without_a_last_chunk_that_never_came() {
        let mut media = session("a", 0, Some((1_700_000_012_000, 6)), 6, &[]);
        media.segments.retain(|s| s.sequence != 5);
        let waiting = timeline(&[media.clone()], 1_700_000_012_000 + IN_FLIGHT_WAIT_MS - 1);
        assert!(!waiting.complete, "chunk 5 may still be transcoding");
        let done = timeline(&[media], 1_700_000_012_000 + IN_FLIGHT_WAIT_MS);
        assert!(done.complete);
        assert_eq!(msns(&done), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn program_dates_follow_the_media_timeline_from_the_session_anchor() {
        let timeline = timeline(&[session("a", 0, None, 3, &[])], 0);
        let dates: Vec<i64> = timeline.entries.iter().map(|e| e.program_date_ms).collect();
        assert_eq!(dates, vec![1_700_000_000_037, 1_700_000_002_037, 1_700_000_004_037]);
        assert_eq!(program_date_time(1_700_000_002_037), "2023-11-14T22:13:22.037Z");
        assert_eq!(parse_time("2023-11-14T22:13:22.037Z"), Some(1_700_000_002_037));
        assert_eq!(parse_time("1700000002037"), Some(1_700_000_002_037));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn a_reconnect_continues_the_sequence_with_a_discontinuity() {
        let sessions = [session("a", 0, Some((1, 5)), 5, &[]), session("b", 2, None, 4, &[])];
        let timeline = timeline(&sessions, 0);
        let msns: Vec<u64> = timeline.entries.iter().map(|e| e.msn).collect();
        assert_eq!(msns, (0..9).collect::<Vec<_>>(), "b's chunk 0 follows a's chunk 4");
        let text =
            super::media(&timeline, Kind::Live { window: 6 }, false, "/media/", None, false).expect("playlist").text;
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n") && !text.contains("DISCONTINUITY-SEQUENCE"), "{text}");
        assert!(text.contains("a/720p/00000004.ts\n#EXT-X-DISCONTINUITY\n"), "{text}");
        // Once the reconnect point slides out, the discontinuity sequence counts it.
        let later = [session("a", 0, Some((1, 5)), 5, &[]), session("b", 2, None, 12, &[])];
        let text = super::media(&super::timeline(&later, 0), Kind::Live { window: 6 }, false, "/media/", None, false)
            .expect("pl")
            .text;
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:11\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    }

    #[test]
    fn a_later_session_waits_for_an_earlier_one_still_transcoding() {
        let mut first = session("a", 0, Some((1, 5)), 5, &[]);
        first.segments.retain(|s| s.sequence != 4);
        let timeline = timeline(&[first, session("b", 2, None, 3, &[])], 0);
        assert_eq!(timeline.entries.len(), 4, "nothing of b before a's chunk 4");
    }

    #[test]
    fn ended_dvr_and_clip_playlists() {
        let done = timeline(&[session("a", 0, Some((1, 10)), 10, &[])], 0);
        assert!(done.complete);
        let live = super::media(&done, Kind::Live { window: 6 }, true, "/media/", None, false).expect("playlist").text;
        assert!(live.ends_with("#EXT-X-ENDLIST\n") && live.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{live}");
        let dvr = super::media(&done, Kind::Dvr, false, "/media/", None, false).expect("playlist").text;
        assert_eq!(uris(&dvr).len(), 10);
        assert!(!dvr.contains("ENDLIST"));
        let waiting = timeline(&[session("a", 0, Some((1, 10)), 9, &[])], 0);
        assert!(!waiting.complete, "the last chunk is still being transcoded");
        // A clip running past what is listed grows as an EVENT playlist, without ENDLIST, until it is whole.
        let open = Kind::Clip { from_ms: 1_700_000_006_500, to_ms: 1_700_000_030_000 };
        let growing = super::media(&waiting, open, false, "/media/", None, false).expect("clip");
        assert!(!growing.fixed && growing.text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{}", growing.text);
        assert!(!growing.text.contains("ENDLIST"));

        // Chunks 3 to 5 cover [1_700_000_006_037, 1_700_000_012_037).
        let clip = Kind::Clip { from_ms: 1_700_000_006_500, to_ms: 1_700_000_011_000 };
        let text = super::media(&done, clip, false, "https://cdn.example.com/", None, false).expect("clip").text;
        assert_eq!(
            uris(&text),
            vec![
                "https://cdn.example.com/live/s/a/720p/00000003.ts",
                "https://cdn.example.com/live/s/a/720p/00000004.ts",
                "https://cdn.example.com/live/s/a/720p/00000005.ts"
            ]
        );
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{text}");
        assert_eq!(super::media(&done, Kind::Clip { from_ms: 0, to_ms: 1 }, false, "/media/", None, false), None);

        // An earlier session with a chunk missing holds later ones back while it may be in flight, not for ever;
        // one that never had the rendition holds nothing back.
        let mut stuck = session("a", 0, Some((1_000, 5)), 5, &[]);
        stuck.segments.retain(|s| s.sequence != 4);
        let later = session("b", 2_000, None, 3, &[]);
        assert_eq!(timeline(&[stuck.clone(), later.clone()], 60_000).entries.len(), 4);
        let moved_on = timeline(&[stuck, later.clone()], 1_000 + IN_FLIGHT_WAIT_MS);
        assert_eq!(moved_on.entries.iter().map(|e| e.msn).collect::<Vec<_>>(), vec![0, 1, 2, 3, 5, 6, 7]);
        let mut absent = session("a", 0, Some((1_000, 5)), 5, &[]);
        absent.segments.clear();
        assert_eq!(timeline(&[absent, later], 2_000).entries.first().map(|e| e.msn), Some(5));
    }

    #[test]
    fn master_lists_frame_rate_and_codecs_by_bandwidth() {
        let rendition = |name: &str, bps: u64| Rendition {
            name: name.into(),
            width: 640,
            height: 360,
            bitrate: bps,
            codecs: "avc1.64001e,mp4a.40.2".into(),
            peak_bps: bps + 1,
            average_bps: bps,
            last_sequence: 3,
            frame_duration: 3003,
        };
        let text = master(&[rendition("hi", 2_000_000), rendition("lo", 500_000)], "");
        assert!(text.contains("FRAME-RATE=29.970,CODECS=\"avc1.64001e,mp4a.40.2\"\nlo.m3u8\n#EXT"), "{text}");
        assert!(text.find("lo.m3u8") < text.find("hi.m3u8"));
        assert!(master(&[rendition("lo", 1)], "?from=1&to=2").contains("lo.m3u8?from=1&to=2\n"));
    }
}
