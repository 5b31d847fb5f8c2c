//! What must hold after any crash, kill or restart (issue 10), checked from the outside once the publishers are
//! done: every chunk of every session announced exactly once and listed exactly once in every variant's DVR
//! playlist, timestamps continuous across every join (by ffprobe on the segments a player downloads), no
//! discontinuity where the publisher did not reconnect, about as many seconds listed as were published, every
//! variant decoding cleanly, and objects that are never rewritten ([`MediaWatch`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::Hasher,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ladder_proto::Event;

use super::{eventually, get_url, parse_playlist, run, variant_names, video_pts, Deployment, Stack};

const CLOCK: f64 = 90_000.0;
/// 33-bit MPEG timestamps.
const PTS_WRAP: u64 = 1 << 33;
/// The target chunk duration of the test stacks (the segmenter's default), in seconds. The publishers send an
/// IDR every 2 s, so every chunk but the last is this long.
pub const CHUNK_SECONDS: f64 = 2.0;
/// Slack on a duration sum: EXTINF values are rounded to the microsecond, and the last frame's duration is
/// estimated.
const DURATION_SLACK: f64 = 0.1;

/// What the publisher of one session sent.
#[derive(Debug, Clone, Copy)]
pub enum Sent {
    /// The whole run of a publisher that finished by itself: this many seconds.
    Whole(f64),
    /// A publisher cut off midway (its ingest was stopped): how much it sent is not known exactly.
    CutShort,
}

// === shared checks ===

/// Checks stream `stream` once its publishers have finished, one [`Sent`] per publisher connection in order,
/// with `variants` (rendition names) expected in its master playlist. Waits (bounded) for every DVR playlist to
/// end, then checks the event log, the playlists, the segments and the stored objects.
pub fn check_stream(stack: &impl Deployment, stream: &str, sent: &[Sent], variants: &[&str]) {
    let crashed = stack.crashed();
    assert!(crashed.is_empty(), "instances exited by themselves: {crashed:?}\n{}", stack.logs());
    wait_ended(stack, stream);
    let sessions = check_events(stack, stream, sent, variants);
    let (_, master) = stack.get(&format!("/dvr/{stream}/master.m3u8"));
    parse_playlist(stack, &master);
    let mut listed = variant_names(&master);
    listed.sort();
    let mut expected: Vec<String> = variants.iter().map(|v| v.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected, "{stream}: the variants of the master playlist:\n{master}");
    for variant in variants {
        check_variant(stack, stream, variant, &sessions, sent);
    }
    if let Some(media) = stack.local_media() {
        check_stored_objects(&media, stream, &sessions, variants);
    }
}

/// One publish session as the event log tells it.
#[derive(Debug)]
pub struct SessionRecord {
    pub id: String,
    /// The source chunks, by sequence number 0..chunk_count.
    pub chunks: Vec<ladder_proto::ChunkUploaded>,
    /// Per rendition, its chunks by sequence number.
    pub renditions: BTreeMap<String, Vec<ladder_proto::RenditionReady>>,
}

fn wait_ended(stack: &impl Deployment, stream: &str) {
    eventually(Duration::from_secs(120), &format!("every DVR playlist of {stream} to end"), stack, || {
        let (status, master) = stack.get(&format!("/dvr/{stream}/master.m3u8"));
        let variants = variant_names(&master);
        let ended = status == 200
            && !variants.is_empty()
            && variants.iter().all(|v| stack.get(&format!("/dvr/{stream}/{v}.m3u8")).1.contains("#EXT-X-ENDLIST"));
        ended.then_some(())
    });
}

/// The event log of `stream`: one session per publisher connection, each announced as ended once with its chunk
/// count, every chunk and rendition announced for exactly the sequence numbers 0..count (an announcement
/// repeated only with the same content), source timestamps continuous from chunk to chunk, no discontinuity
/// within a session, about the published duration, and no failure at all.
fn check_events(stack: &impl Deployment, stream: &str, sent: &[Sent], variants: &[&str]) -> Vec<SessionRecord> {
    let events: Vec<Event> = stack.events().into_iter().filter(|e| e.stream() == stream).collect();
    let failures: Vec<String> = events
        .iter()
        .filter(|e| matches!(e, Event::ChunkFailed(_) | Event::StreamFailed(_)))
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(failures.is_empty(), "{stream}: nothing may fail, but:\n{}\n{}", failures.join("\n"), stack.logs());
    let ids: BTreeSet<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::StreamStarted(e) => Some(e.session_id.clone()),
            _ => None,
        })
        .collect();
    // Session ids start with their unix ms, so they sort by time.
    let ids: Vec<String> = ids.into_iter().collect();
    assert_eq!(ids.len(), sent.len(), "{stream}: one session per publisher connection: {ids:?}\n{}", stack.logs());

    let mut sessions = Vec::new();
    for (id, sent) in ids.iter().zip(sent) {
        let counts: BTreeSet<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::StreamEnded(e) if &e.session_id == id => Some(e.chunk_count),
                _ => None,
            })
            .collect();
        assert_eq!(counts.len(), 1, "{stream}/{id}: one chunk count in stream.ended, got {counts:?}\n{}", stack.logs());
        let count = counts.into_iter().next().unwrap_or_default();
        assert!(count > 0, "{stream}/{id}: no chunk at all");

        let chunks = exactly_once(
            stream,
            id,
            "source",
            count,
            events.iter().filter_map(|e| match e {
                Event::ChunkUploaded(e) if &e.session_id == id => Some(e.clone()),
                _ => None,
            }),
            |c| c.sequence,
            |c| (c.object_key.clone(), c.size_bytes, c.first_pts, c.duration, c.discontinuity),
        );
        for chunk in &chunks {
            let key = format!("live/{stream}/{id}/source/{:08}.ts", chunk.sequence);
            assert_eq!(chunk.object_key, key, "{stream}/{id}: where chunk {} is stored", chunk.sequence);
            // The first chunk of a session is flagged (it follows whatever came before under the name).
            assert!(
                chunk.sequence == 0 || !chunk.discontinuity,
                "{stream}/{id}: chunk {} is flagged as a discontinuity, but the publisher went on: {chunk:?}",
                chunk.sequence
            );
        }
        for pair in chunks.windows(2) {
            let frame = frame_ticks(pair[0].frame_duration);
            let gap = pair[1].first_pts as i64 - (pair[0].first_pts + pair[0].duration) as i64;
            assert!(
                gap.abs() <= frame,
                "{stream}/{id}: source chunk {} starts {gap} ticks away from where chunk {} ends",
                pair[1].sequence,
                pair[0].sequence
            );
        }
        let seconds: f64 = chunks.iter().map(|c| c.duration as f64 / CLOCK).sum();
        check_duration(&format!("{stream}/{id}: the source chunks"), seconds, *sent);

        let mut renditions = BTreeMap::new();
        for variant in variants {
            let ready = exactly_once(
                stream,
                id,
                variant,
                count,
                events.iter().filter_map(|e| match e {
                    Event::RenditionReady(e) if &e.session_id == id && &e.rendition == variant => Some(e.clone()),
                    _ => None,
                }),
                |r| r.sequence,
                |r| (r.object_key.clone(), r.size_bytes, r.first_pts, r.duration),
            );
            for r in &ready {
                let key = format!("live/{stream}/{id}/{variant}/{:08}.ts", r.sequence);
                assert_eq!(r.object_key, key, "{stream}/{id}: where {variant} chunk {} is stored", r.sequence);
            }
            renditions.insert(variant.to_string(), ready);
        }
        sessions.push(SessionRecord { id: id.clone(), chunks, renditions });
    }
    sessions
}

/// The announcements of one kind of chunk, one per sequence number 0..count: a repeated announcement must say
/// the same (`content`), else a chunk was cut or transcoded twice differently.
fn exactly_once<T: std::fmt::Debug, C: PartialEq + std::fmt::Debug>(
    stream: &str,
    session: &str,
    what: &str,
    count: u64,
    announced: impl Iterator<Item = T>,
    sequence: impl Fn(&T) -> u64,
    content: impl Fn(&T) -> C,
) -> Vec<T> {
    let mut by_sequence: BTreeMap<u64, Vec<T>> = BTreeMap::new();
    for item in announced {
        by_sequence.entry(sequence(&item)).or_default().push(item);
    }
    let found: Vec<u64> = by_sequence.keys().copied().collect();
    let expected: Vec<u64> = (0..count).collect();
    assert_eq!(
        found,
        expected,
        "{stream}/{session}: {what} chunks announced, against 0..{count} from stream.ended ({})",
        describe_difference(&found, &expected)
    );
    by_sequence
        .into_iter()
        .map(|(seq, mut items)| {
            let first = content(&items[0]);
            for other in &items[1..] {
                assert_eq!(
                    content(other),
                    first,
                    "{stream}/{session}: {what} chunk {seq} announced twice with different content"
                );
            }
            items.swap_remove(0)
        })
        .collect()
}

fn describe_difference(found: &[u64], expected: &[u64]) -> String {
    let found_set: BTreeSet<u64> = found.iter().copied().collect();
    let expected_set: BTreeSet<u64> = expected.iter().copied().collect();
    let missing: Vec<u64> = expected_set.difference(&found_set).copied().collect();
    let extra: Vec<u64> = found_set.difference(&expected_set).copied().collect();
    format!("missing {missing:?}, unexpected {extra:?}")
}

fn frame_ticks(frame_duration: u64) -> i64 {
    if frame_duration == 0 {
        3600
    } else {
        frame_duration as i64
    }
}

/// A session that a publisher sent whole lists that many seconds, less at most one chunk at its start or end.
fn check_duration(what: &str, seconds: f64, sent: Sent) {
    if let Sent::Whole(published) = sent {
        assert!(
            seconds >= published - CHUNK_SECONDS - DURATION_SLACK && seconds <= published + DURATION_SLACK,
            "{what}: {seconds:.3} s listed for {published} s published"
        );
    }
}

/// One variant's DVR playlist: exactly the session's chunks in order, discontinuities only where a session
/// starts, durations as announced, and the downloaded segments continuous by ffprobe and decoding cleanly.
fn check_variant(stack: &impl Deployment, stream: &str, variant: &str, sessions: &[SessionRecord], sent: &[Sent]) {
    let path = format!("/dvr/{stream}/{variant}.m3u8");
    let (status, text) = stack.get(&path);
    assert_eq!(status, 200, "{path}: {text}");
    let playlist = parse_playlist(stack, &text);
    assert_eq!(playlist["media_sequence"].as_u64().unwrap_or(0), 0, "{path}: DVR starts at the beginning");
    assert_eq!(playlist["endlist"], true, "{path}");
    let segments = playlist["segments"].as_array().expect("segments").clone();

    let expected: Vec<&ladder_proto::RenditionReady> =
        sessions.iter().flat_map(|s| s.renditions[variant].iter()).collect();
    let listed: Vec<String> = segments.iter().map(|s| key_of(s["uri"].as_str().expect("uri"))).collect();
    let wanted: Vec<String> = expected.iter().map(|r| r.object_key.clone()).collect();
    if listed != wanted {
        let mut seen = BTreeMap::new();
        for key in &listed {
            *seen.entry(key.as_str()).or_insert(0) += 1;
        }
        let duplicates: Vec<&&str> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k).collect();
        let missing: Vec<&String> = wanted.iter().filter(|k| !seen.contains_key(k.as_str())).collect();
        panic!(
            "{path}: lists {} segments, {} expected; duplicates {duplicates:?}, missing {missing:?}\n{text}",
            listed.len(),
            wanted.len()
        );
    }

    // Discontinuities exactly where a later session starts, that is where the publisher reconnected.
    let starts: BTreeSet<usize> =
        sessions.iter().scan(0, |at, s| Some(std::mem::replace(at, *at + s.chunks.len()))).skip(1).collect();
    let flagged: BTreeSet<usize> =
        segments.iter().enumerate().filter(|(_, s)| s["discontinuity"] == true).map(|(i, _)| i).collect();
    assert_eq!(flagged, starts, "{path}: EXT-X-DISCONTINUITY only where the publisher reconnected\n{text}");
    let tags = text.lines().filter(|l| *l == "#EXT-X-DISCONTINUITY").count();
    assert_eq!(tags, starts.len(), "{path}: discontinuity tags\n{text}");

    // Durations as announced, and about what was published per session.
    let durations: Vec<f64> = segments.iter().map(|s| s["duration"].as_f64().expect("duration")).collect();
    for (duration, ready) in durations.iter().zip(&expected) {
        let announced = ready.duration as f64 / CLOCK;
        assert!((duration - announced).abs() < 0.001, "{path}: {} lasts {duration}, not {announced}", ready.object_key);
    }
    let mut at = 0;
    for (session, sent) in sessions.iter().zip(sent) {
        let n = session.chunks.len();
        let seconds: f64 = durations[at..at + n].iter().sum();
        check_duration(&format!("{path}, session {}", session.id), seconds, *sent);
        at += n;
    }

    // Continuity across every join, by ffprobe on the segments as a player downloads them: each segment's first
    // video PTS is the previous one's plus its duration, within a frame, and the source chunk's first PTS.
    let dir = stack.data().join("check").join(stream).join(variant);
    std::fs::create_dir_all(&dir).expect("check dir");
    let mut at = 0;
    for session in sessions {
        let mut previous: Option<(i64, f64, String)> = None;
        for (i, chunk) in session.chunks.iter().enumerate() {
            let uri = segments[at + i]["uri"].as_str().expect("uri");
            let file = dir.join(format!("{}-{:08}.ts", session.id, i));
            let (status, body) = get_url(&absolute(stack, uri));
            assert_eq!(status, 200, "GET {uri}");
            std::fs::write(&file, body).expect("write segment");
            let pts = video_pts(&file);
            assert!(!pts.is_empty(), "{uri} has video");
            let frame = pts.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0).min().unwrap_or(3600);
            let first = pts[0];
            let source_first = (chunk.first_pts % PTS_WRAP) as i64;
            assert!(
                (first - source_first).abs() <= frame,
                "{uri} starts at PTS {first}, its source chunk at {source_first}"
            );
            if let Some((before, duration, before_uri)) = &previous {
                let expected = before + (duration * CLOCK).round() as i64;
                let gap = unwrap_gap(first - expected);
                assert!(
                    gap.abs() <= frame,
                    "{uri} starts at PTS {first}, {gap} ticks from where {before_uri} ends ({expected})"
                );
            }
            previous = Some((first, durations[at + i], uri.to_string()));
        }
        at += session.chunks.len();
    }
    decode_by_session(stack, &path, &text);
}

/// A difference of 33-bit timestamps, taken the short way round.
fn unwrap_gap(gap: i64) -> i64 {
    let wrap = PTS_WRAP as i64;
    let mut gap = gap % wrap;
    if gap > wrap / 2 {
        gap -= wrap;
    } else if gap < -wrap / 2 {
        gap += wrap;
    }
    gap
}

/// The object key in a segment URI (`/media/live/...` or `<base>/live/...`).
fn key_of(uri: &str) -> String {
    uri.find("live/").map_or_else(|| uri.to_string(), |at| uri[at..].to_string())
}

fn absolute(stack: &impl Deployment, uri: &str) -> String {
    if uri.starts_with("http") {
        uri.to_string()
    } else {
        stack.url(uri)
    }
}

/// Decodes a DVR playlist with ffmpeg, every stream, and fails on any error. A playlist of several sessions is
/// decoded one session at a time: ffmpeg's HLS reader ignores EXT-X-DISCONTINUITY, so across a reconnect its
/// muxer would see the new publisher's timestamps go back (players reset at the tag).
fn decode_by_session(stack: &impl Deployment, path: &str, text: &str) {
    let decode = |input: &str| {
        let args = ["-hide_banner", "-v", "error", "-protocol_whitelist", "file,http,tcp", "-i", input];
        let (ok, _, stderr) = run("ffmpeg", &[&args[..], &["-map", "0", "-f", "null", "-"]].concat());
        assert!(ok && stderr.trim().is_empty(), "ffmpeg decoding {path} ({input}): {stderr}");
    };
    if !text.lines().any(|l| l == "#EXT-X-DISCONTINUITY") {
        decode(&stack.url(path));
        return;
    }
    let mut parts = vec![String::new()];
    for line in text.lines().skip_while(|l| !l.starts_with("#EXTINF") && !l.starts_with("#EXT-X-PROGRAM-DATE-TIME")) {
        match line {
            "#EXT-X-DISCONTINUITY" => parts.push(String::new()),
            "#EXT-X-ENDLIST" => {}
            uri if !uri.starts_with('#') => {
                parts.last_mut().expect("part").push_str(&format!("{}\n", absolute(stack, uri)))
            }
            tag => parts.last_mut().expect("part").push_str(&format!("{tag}\n")),
        }
    }
    let name = path.trim_start_matches('/').replace('/', "-");
    for (i, part) in parts.iter().enumerate() {
        let file = stack.data().join(format!("{name}-session-{i}.m3u8"));
        let playlist = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n{part}#EXT-X-ENDLIST\n");
        std::fs::write(&file, playlist).expect("write playlist");
        decode(file.to_str().expect("utf-8 path"));
    }
}

/// With media in the stack's directory: the stream's objects are exactly the announced ones, so no chunk was
/// cut twice under another name. (Files with a `#` are object_store's staging files of unfinished writes.)
fn check_stored_objects(root: &Path, stream: &str, sessions: &[SessionRecord], variants: &[&str]) {
    let mut stored = Vec::new();
    walk(&root.join("live").join(stream), &mut stored);
    let stored: BTreeSet<String> = stored
        .iter()
        .filter(|p| !p.to_string_lossy().contains('#'))
        .map(|p| p.strip_prefix(root).expect("under media").to_string_lossy().into_owned())
        .collect();
    let mut expected = BTreeSet::new();
    for session in sessions {
        expected.extend(session.chunks.iter().map(|c| c.object_key.clone()));
        for variant in variants {
            expected.extend(session.renditions[*variant].iter().map(|r| r.object_key.clone()));
        }
    }
    let extra: Vec<&String> = stored.difference(&expected).collect();
    let missing: Vec<&String> = expected.difference(&stored).collect();
    assert!(extra.is_empty() && missing.is_empty(), "{stream}: stored objects: extra {extra:?}, missing {missing:?}");
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

// === write-once ===

/// Hashes every file under a directory every 200 ms, from start to [`MediaWatch::finish`], and remembers every
/// file whose content ever changed or that disappeared. A file that only grew (seen while its writer was still
/// writing it) is not a change; files with a `#` in their name are object_store's staging files.
pub struct MediaWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<WatchReport>>,
}

#[derive(Debug, Default)]
pub struct WatchReport {
    /// Complete passes over the directory.
    pub passes: usize,
    /// Files seen.
    pub files: usize,
    /// What changed, one line each.
    pub violations: Vec<String>,
}

struct Seen {
    len: usize,
    hash: u64,
}

impl MediaWatch {
    pub fn start(root: PathBuf) -> MediaWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
            let mut report = WatchReport::default();
            let mut reported: BTreeSet<PathBuf> = BTreeSet::new();
            loop {
                // One more pass after the stop, so the last writes are compared too.
                let last = flag.load(Ordering::SeqCst);
                watch_pass(&root, &mut seen, &mut report, &mut reported, started);
                report.passes += 1;
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            report.files = seen.len();
            report
        });
        MediaWatch { stop, thread: Some(thread) }
    }

    /// Stops watching and returns what was seen.
    pub fn finish(mut self) -> WatchReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map(|t| t.join().expect("the media watch panicked")).unwrap_or_default()
    }

    /// Stops watching and fails if any object was rewritten, or if fewer than `at_least` files were watched.
    pub fn assert_write_once(self, at_least: usize) {
        let report = self.finish();
        eprintln!("write-once: {} files watched over {} passes", report.files, report.passes);
        assert!(report.violations.is_empty(), "objects were rewritten:\n{}", report.violations.join("\n"));
        assert!(report.files >= at_least, "only {} files under media/, {at_least} expected", report.files);
    }
}

impl Drop for MediaWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

fn watch_pass(
    root: &Path,
    seen: &mut HashMap<PathBuf, Seen>,
    report: &mut WatchReport,
    reported: &mut BTreeSet<PathBuf>,
    started: Instant,
) {
    let mut files = Vec::new();
    walk(root, &mut files);
    files.retain(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().contains('#')));
    let present: BTreeSet<&PathBuf> = files.iter().collect();
    let at = started.elapsed().as_secs_f64();
    for path in seen.keys() {
        if !present.contains(path) && reported.insert(path.clone()) {
            report.violations.push(format!("{} disappeared ({at:.1} s into the run)", path.display()));
        }
    }
    for path in &files {
        let Ok(bytes) = std::fs::read(path) else { continue };
        let now = Seen { len: bytes.len(), hash: hash(&bytes) };
        match seen.get(path) {
            None => {
                seen.insert(path.clone(), now);
            }
            Some(before) if before.len == now.len && before.hash == now.hash => {}
            // Still being written when first seen: it grew, its beginning is what was seen.
            Some(before) if now.len > before.len && hash(&bytes[..before.len]) == before.hash => {
                seen.insert(path.clone(), now);
            }
            Some(before) => {
                if reported.insert(path.clone()) {
                    report.violations.push(format!(
                        "{} changed from {} to {} bytes of other content ({at:.1} s into the run)",
                        path.display(),
                        before.len,
                        now.len
                    ));
                }
                seen.insert(path.clone(), now);
            }
        }
    }
}

// === segmenter ownership ===

/// A time a segmenter instance owned a stream, by its log's timestamps.
#[derive(Debug, Clone)]
pub struct Ownership {
    pub instance: String,
    pub from: String,
    /// `None`: still owned when the log ends.
    pub until: Option<String>,
}

/// When each segmenter instance owned `stream`, from its log: from `stream owned` to `stream released` or
/// `taken over`, or to the harness's SIGKILL, or to the instance starting again after it exited.
pub fn segmenter_ownership(stack: &Stack, stream: &str) -> Vec<Ownership> {
    let field = format!("stream={stream}");
    let mut ownership = Vec::new();
    for name in stack.services.iter().filter(|i| i.service == "segmenter").map(|i| i.name.clone()) {
        let mut open: Option<String> = None;
        for line in stack.log(&name).lines() {
            let at = line.split_whitespace().next().unwrap_or_default().to_string();
            let about = line.split_whitespace().any(|w| w == field);
            let ends = if line.contains("=== test harness:") {
                line.contains("SIGKILL") || line.contains("started again")
            } else {
                about && (line.contains("stream released") || line.contains("taken over"))
            };
            if ends {
                if let Some(from) = open.take() {
                    ownership.push(Ownership { instance: name.clone(), from, until: Some(at) });
                }
            } else if about && line.contains("stream owned") && open.is_none() {
                open = Some(at);
            }
        }
        if let Some(from) = open {
            ownership.push(Ownership { instance: name.clone(), from, until: None });
        }
    }
    ownership.sort_by(|a, b| a.from.cmp(&b.from));
    ownership
}

/// Fails unless the segmenters' logs show `stream` owned at least once, and never by two instances at once.
/// Returns who owned it when.
pub fn check_one_owner_at_a_time(stack: &Stack, stream: &str) -> Vec<Ownership> {
    let ownership = segmenter_ownership(stack, stream);
    assert!(!ownership.is_empty(), "no segmenter log says it owned {stream} (`stream owned stream={stream}`)");
    for (i, earlier) in ownership.iter().enumerate() {
        for later in &ownership[i + 1..] {
            let apart = earlier.until.as_ref().is_some_and(|until| *until <= later.from);
            assert!(apart, "{stream} owned by two segmenters at once: {earlier:?} and {later:?}\n{ownership:#?}");
        }
    }
    ownership
}
