//! The manifest's playlists, kept in memory and rendered once per change.
//!
//! Every stream the manifest has heard of has a [`StreamState`]: its retained sessions with their segments per
//! rendition, failed chunks and the LL-HLS parts of the last few segments. It is loaded from the index the first
//! time the stream is asked for or an event of it arrives (the index stays the source for a cold start and for
//! history), and from then on kept up to date by the events themselves (`follow.rs`), applied with the index's
//! own rules, so both say the same. After each change every playlist of the stream is rendered once into a
//! [`Snapshot`] (bytes, ETag, live edge), published on a `watch` channel: a request serves the bytes, and a
//! blocking reload (`_HLS_msn`, `_HLS_part`) waits on the channel until the part it wants is in the snapshot.
//! DVR playlists are rendered on their first request after a change, once, whatever the number of requests.
//!
//! A timeline (which segments a playlist lists, with their sequence numbers and dates) depends on the time as
//! well as the events (a missing chunk is skipped after a while, playlists end after the grace period): streams
//! still live are rendered again every [`TICK`].

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use bytes::Bytes;
use ladder_index::{Index, IndexError, Rendition, Segment, Session};
use ladder_proto::{Event, PartReady};
use tokio::sync::watch;

use crate::playlist::{self, Kind, LowLatency, PartLine, RenditionReport, Timeline};

/// How often the playlists of streams still live are rendered again.
pub const TICK: Duration = Duration::from_secs(1);

/// What the playlists are rendered with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub window: usize,
    pub media_base: String,
    pub end_grace: Duration,
}

/// A rendered response body, the same for every request until the next change.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: Bytes,
    /// A hash of the body, the same on every manifest instance.
    pub etag: String,
}

impl Rendered {
    pub fn from_text(text: String) -> Rendered {
        Rendered::new(text)
    }

    fn new(text: String) -> Rendered {
        let etag = format!("\"{:016x}\"", fnv1a(text.as_bytes()));
        Rendered { body: Bytes::from(text), etag }
    }
}

/// FNV-1a, 64 bits: stable across processes and builds, unlike std's hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Where a rendition's live playlist ends: what a blocking reload waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Edge {
    /// Media sequence number of the last listed (complete) segment.
    pub last_msn: Option<u64>,
    /// How many parts of that segment are known.
    pub last_parts: Option<u32>,
    /// The segment in progress and how many of its parts are listed (at least one).
    pub pending: Option<(u64, u32)>,
}

impl Edge {
    /// Whether the playlist holds segment `msn` (complete), or with `part`, that part of it (a part index past
    /// the last part of a complete segment is the next segment's first, RFC 8216bis 6.2.5.2).
    pub fn has(&self, msn: u64, part: Option<u32>) -> bool {
        if let Some(last) = self.last_msn {
            if msn < last {
                return true;
            }
            if msn == last {
                match part {
                    None => return true,
                    Some(p) if self.last_parts.is_none_or(|n| p < n) => return true,
                    Some(_) => return self.has(msn + 1, Some(0)),
                }
            }
        }
        match self.pending {
            Some((pending, _)) if msn < pending => true,
            Some((pending, count)) if msn == pending => part.is_some_and(|p| p < count),
            _ => false,
        }
    }

    /// The newest media sequence number in the playlist, complete or not.
    pub fn newest(&self) -> Option<u64> {
        self.pending.map(|(msn, _)| msn).or(self.last_msn)
    }

    /// The last part listed (for EXT-X-RENDITION-REPORT).
    fn report(&self) -> Option<(u64, Option<u32>)> {
        match (self.pending, self.last_msn) {
            (Some((msn, count)), _) => Some((msn, Some(count - 1))),
            (None, Some(msn)) => Some((msn, self.last_parts.map(|n| n.saturating_sub(1)))),
            (None, None) => None,
        }
    }
}

/// One rendition's playlists in a snapshot.
#[derive(Debug)]
pub struct RenditionView {
    pub live: Rendered,
    /// The delta update (`_HLS_skip=YES`), when there is anything to skip.
    pub delta: Option<Rendered>,
    /// The live playlist will not change (EXT-X-ENDLIST).
    pub fixed: bool,
    pub edge: Edge,
    pub target_duration: u64,
    /// Part target in 90 kHz ticks, if the rendition has parts.
    pub part_target: Option<u64>,
    timeline: Arc<Timeline>,
    ended: bool,
    dvr: OnceLock<Rendered>,
}

impl RenditionView {
    /// The DVR playlist: rendered on the first request after a change, then served as bytes.
    pub fn dvr(&self, media_base: &str) -> &Rendered {
        self.dvr.get_or_init(|| {
            let text = playlist::media(&self.timeline, Kind::Dvr, self.ended, media_base, None, false)
                .map(|p| p.text)
                .unwrap_or_default();
            Rendered::new(text)
        })
    }

    /// A clip of the wall-clock range: found by bisection on the timeline.
    pub fn clip(&self, from_ms: i64, to_ms: i64, media_base: &str) -> Option<playlist::MediaPlaylist> {
        playlist::media(&self.timeline, Kind::Clip { from_ms, to_ms }, false, media_base, None, false)
    }

    /// Whether the stream is over (grace period included): the playlists will not change.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

/// Every playlist of one stream, as of one change.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: u64,
    /// The stream has at least one session.
    pub exists: bool,
    /// The renditions of the ladder in force (the master playlist's variants); empty until one has a chunk.
    pub current: Vec<Rendition>,
    /// The master playlist; `None` while no rendition has a chunk.
    pub master: Option<Rendered>,
    /// The newest session is over, grace period included.
    pub over: bool,
    pub renditions: HashMap<String, Arc<RenditionView>>,
}

/// What the manifest knows of every stream.
pub struct Live {
    index: Arc<dyn Index>,
    settings: Settings,
    streams: Mutex<HashMap<String, Arc<StreamEntry>>>,
}

struct StreamEntry {
    state: tokio::sync::Mutex<Option<StreamState>>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// Each rendition's live edge, and whether its playlist is fixed: what blocked requests wait on, so that
    /// a change of one rendition (a part) wakes only the requests for that rendition. Updated after the
    /// snapshot, so a request woken by its edge finds the snapshot that has it.
    edges: Mutex<HashMap<String, watch::Sender<(Edge, bool)>>>,
    /// When a request or an event last concerned the stream (Unix ms).
    used_ms: AtomicI64,
}

/// A stream that is over, and that no request or event has concerned for this long, is dropped from memory
/// (its next request loads it from the index again).
const EVICT_AFTER_MS: i64 = 10 * 60 * 1000;

impl Live {
    pub fn new(index: Arc<dyn Index>, settings: Settings) -> Live {
        Live { index, settings, streams: Mutex::new(HashMap::new()) }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn entry(&self, stream: &str) -> Arc<StreamEntry> {
        let mut streams = self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = streams
            .entry(stream.to_string())
            .or_insert_with(|| {
                Arc::new(StreamEntry {
                    state: tokio::sync::Mutex::new(None),
                    snapshot: watch::channel(Arc::new(Snapshot::default())).0,
                    edges: Mutex::new(HashMap::new()),
                    used_ms: AtomicI64::new(now_ms()),
                })
            })
            .clone();
        entry.used_ms.store(now_ms(), Ordering::Relaxed);
        entry
    }

    fn known(&self, stream: &str) -> Option<Arc<StreamEntry>> {
        let entry = self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(stream).cloned()?;
        entry.used_ms.store(now_ms(), Ordering::Relaxed);
        Some(entry)
    }

    /// The stream's playlists, loading it from the index the first time; `None` if the index has never heard
    /// of it (nothing is kept for names asked for at random).
    pub async fn watch(&self, stream: &str) -> Result<Option<watch::Receiver<Arc<Snapshot>>>, IndexError> {
        let entry = match self.known(stream) {
            Some(entry) => entry,
            None => {
                if self.index.sessions(stream).await?.is_empty() {
                    return Ok(None);
                }
                self.entry(stream)
            }
        };
        {
            let mut state = entry.state.lock().await;
            if state.is_none() {
                *state = Some(StreamState::load(&*self.index, stream).await?);
                self.render(&entry, state.as_mut());
            }
        }
        Ok(Some(entry.snapshot.subscribe()))
    }

    /// The live edge of one rendition of a stream loaded by [`Live::watch`], and whether its playlist is fixed,
    /// as they change.
    pub fn watch_edge(&self, stream: &str, rendition: &str) -> Option<watch::Receiver<(Edge, bool)>> {
        let entry = self.known(stream)?;
        let mut edges = entry.edges.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = edges.entry(rendition.to_string()).or_insert_with(|| {
            let current = entry.snapshot.borrow().renditions.get(rendition).map(|v| (v.edge, v.fixed));
            watch::channel(current.unwrap_or_default()).0
        });
        Some(sender.subscribe())
    }

    /// Applies an event of the event log. Returns the stream it changed, to be rendered.
    pub async fn apply(&self, event: &Event) -> Result<Option<String>, IndexError> {
        if matches!(event, Event::ChunkStarted(_) | Event::ChunkUploaded(_) | Event::LadderSet(_)) {
            return Ok(None);
        }
        let stream = event.stream().to_string();
        let entry = self.entry(&stream);
        let mut state = entry.state.lock().await;
        if state.is_none() {
            *state = Some(StreamState::load(&*self.index, &stream).await?);
        }
        if let Some(state) = state.as_mut() {
            state.apply(event);
        }
        Ok(Some(stream))
    }

    /// Applies a part announcement.
    pub async fn apply_part(&self, part: &PartReady) -> Result<Option<String>, IndexError> {
        let entry = self.entry(&part.stream);
        let mut state = entry.state.lock().await;
        if state.is_none() {
            *state = Some(StreamState::load(&*self.index, &part.stream).await?);
        }
        if let Some(state) = state.as_mut() {
            state.apply_part(part);
        }
        Ok(Some(part.stream.clone()))
    }

    /// Renders the stream's playlists again, if it is loaded.
    pub async fn refresh(&self, stream: &str) {
        if let Some(entry) = self.known(stream) {
            let mut state = entry.state.lock().await;
            self.render(&entry, state.as_mut());
        }
    }

    /// Renders again every stream whose playlists still depend on the time, and forgets the streams that are
    /// over and unused.
    pub async fn tick(&self) {
        let entries: Vec<(String, Arc<StreamEntry>)> = self
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(name, entry)| (name.clone(), entry.clone()))
            .collect();
        for (name, entry) in entries {
            let mut state = entry.state.lock().await;
            let now = now_ms();
            let settled = state.as_ref().is_none_or(|s| s.settled(now, &self.settings));
            if settled && now - entry.used_ms.load(Ordering::Relaxed) > EVICT_AFTER_MS {
                drop(state);
                let mut streams = self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                // Unless it was used meanwhile.
                if streams.get(&name).is_some_and(|e| now - e.used_ms.load(Ordering::Relaxed) > EVICT_AFTER_MS) {
                    streams.remove(&name);
                }
                continue;
            }
            if !settled {
                if let Some(state) = state.as_mut() {
                    state.timelines_dirty = true;
                }
                self.render(&entry, state.as_mut());
            }
        }
    }

    fn render(&self, entry: &StreamEntry, state: Option<&mut StreamState>) {
        let Some(state) = state else { return };
        let previous = entry.snapshot.borrow().clone();
        let snapshot = state.render(&self.settings, now_ms(), previous.version + 1);
        // Blocked requests wake on a change only.
        let same = snapshot.master.as_ref().map(|m| &m.etag) == previous.master.as_ref().map(|m| &m.etag)
            && snapshot.renditions.len() == previous.renditions.len()
            && snapshot.renditions.iter().all(|(name, view)| {
                previous
                    .renditions
                    .get(name)
                    .is_some_and(|old| old.live.etag == view.live.etag && old.fixed == view.fixed)
            });
        if !same || !previous.exists {
            let snapshot = Arc::new(snapshot);
            entry.snapshot.send_replace(snapshot.clone());
            let edges = entry.edges.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (name, sender) in edges.iter() {
                let Some(view) = snapshot.renditions.get(name) else { continue };
                let now = (view.edge, view.fixed);
                sender.send_if_modified(|edge| std::mem::replace(edge, now) != now);
            }
        }
    }
}

// === StreamState ===

/// A rendition of one session.
#[derive(Debug, Default)]
struct RenditionMedia {
    segments: BTreeMap<u64, Segment>,
    /// Known from the index or a `rendition.ready`: size, codecs, bitrates (as the index computes them).
    width: u32,
    height: u32,
    bitrate: u64,
    codecs: String,
    frame_duration: u64,
    peak_bps: u64,
    total_bytes: u64,
    total_ticks: u64,
    /// Parts by chunk sequence, by part index.
    parts: BTreeMap<u64, BTreeMap<u32, PartReady>>,
}

impl RenditionMedia {
    fn summary(&self, name: &str) -> Rendition {
        Rendition {
            name: name.to_string(),
            width: self.width,
            height: self.height,
            bitrate: self.bitrate,
            codecs: self.codecs.clone(),
            peak_bps: self.peak_bps,
            average_bps: self.total_bytes * 8 * 90_000 / self.total_ticks.max(1),
            last_sequence: self.segments.keys().next_back().copied().unwrap_or(0),
            frame_duration: self.frame_duration,
        }
    }

    /// The parts of chunk `sequence` that can be listed: from part 0 on, without a gap.
    fn listed_parts(&self, sequence: u64) -> Vec<&PartReady> {
        let Some(parts) = self.parts.get(&sequence) else { return Vec::new() };
        parts.iter().enumerate().take_while(|(i, (index, _))| **index == *i as u32).map(|(_, (_, p))| p).collect()
    }
}

#[derive(Debug)]
struct SessionState {
    session: Session,
    /// A `stream.started` or `stream.ended` of it was seen (the index lists only those sessions).
    known: bool,
    renditions: BTreeMap<String, RenditionMedia>,
    failed: BTreeSet<u64>,
}

#[derive(Debug)]
struct StreamState {
    stream: String,
    sessions: HashMap<String, SessionState>,
    /// The longest part target announced.
    part_target: u64,
    timelines: HashMap<String, Arc<Timeline>>,
    timelines_dirty: bool,
}

impl StreamState {
    fn new(stream: &str) -> StreamState {
        StreamState {
            stream: stream.to_string(),
            sessions: HashMap::new(),
            part_target: 0,
            timelines: HashMap::new(),
            timelines_dirty: true,
        }
    }

    async fn load(index: &dyn Index, stream: &str) -> Result<StreamState, IndexError> {
        let mut state = StreamState::new(stream);
        for session in index.sessions(stream).await? {
            let id = session.session_id.clone();
            let mut renditions = BTreeMap::new();
            for rendition in index.renditions(stream, &id).await? {
                let segments = index.segments(stream, &id, &rendition.name).await?;
                let media = RenditionMedia {
                    width: rendition.width,
                    height: rendition.height,
                    bitrate: rendition.bitrate,
                    codecs: rendition.codecs.clone(),
                    frame_duration: rendition.frame_duration,
                    peak_bps: rendition.peak_bps,
                    total_bytes: segments.iter().map(|s| s.size_bytes).sum(),
                    total_ticks: segments.iter().map(|s| s.duration).sum(),
                    segments: segments.into_iter().map(|s| (s.sequence, s)).collect(),
                    parts: BTreeMap::new(),
                };
                renditions.insert(rendition.name, media);
            }
            let failed = index.failed_chunks(stream, &id).await?.into_iter().collect();
            state.sessions.insert(id, SessionState { session, known: true, renditions, failed });
        }
        Ok(state)
    }

    fn session(&mut self, id: &str, first_seen_ms: i64) -> &mut SessionState {
        let stream = self.stream.clone();
        self.sessions.entry(id.to_string()).or_insert_with(|| SessionState {
            session: Session {
                stream,
                session_id: id.to_string(),
                started_at_ms: first_seen_ms,
                ended_at_ms: None,
                chunk_count: None,
            },
            known: false,
            renditions: BTreeMap::new(),
            failed: BTreeSet::new(),
        })
    }

    /// Folds an event in, with the index's rules (`ladder_index::SqliteIndex::apply`).
    fn apply(&mut self, event: &Event) {
        match event {
            Event::StreamStarted(e) => {
                let session = self.session(&e.session_id, e.started_at_ms);
                session.session.started_at_ms = e.started_at_ms;
                session.known = true;
            }
            Event::StreamEnded(e) => {
                let session = self.session(&e.session_id, e.ended_at_ms);
                session.session.ended_at_ms = Some(e.ended_at_ms);
                session.session.chunk_count = Some(e.chunk_count);
                session.known = true;
            }
            Event::RenditionReady(e) => {
                let session = self.session(&e.session_id, e.wall_clock_ms);
                let media = session.renditions.entry(e.rendition.clone()).or_default();
                let segment = Segment {
                    sequence: e.sequence,
                    object_key: e.object_key.clone(),
                    size_bytes: e.size_bytes,
                    first_pts: e.first_pts,
                    duration: e.duration,
                    wall_clock_ms: e.wall_clock_ms,
                    discontinuity: e.discontinuity,
                };
                match media.segments.insert(e.sequence, segment) {
                    Some(old) => {
                        media.total_bytes -= old.size_bytes;
                        media.total_ticks -= old.duration;
                    }
                    None => crate::metrics::listed(e, now_ms()),
                }
                media.total_bytes += e.size_bytes;
                media.total_ticks += e.duration;
                media.peak_bps = media.peak_bps.max(e.size_bytes * 8 * 90_000 / e.duration.max(1));
                media.width = media.width.max(e.width);
                media.height = media.height.max(e.height);
                media.bitrate = media.bitrate.max(e.bitrate);
                media.frame_duration = media.frame_duration.max(e.frame_duration);
                if e.codecs > media.codecs {
                    media.codecs = e.codecs.clone();
                }
            }
            Event::ChunkFailed(e) if e.permanent && e.has_sequence => {
                self.session(&e.session_id, 0).failed.insert(e.sequence);
            }
            _ => return,
        }
        self.timelines_dirty = true;
    }

    fn apply_part(&mut self, part: &PartReady) {
        self.part_target = self.part_target.max(part.part_target);
        let session = self.session(&part.session_id, part.wall_clock_ms);
        let media = session.renditions.entry(part.rendition.clone()).or_default();
        media.parts.entry(part.sequence).or_default().insert(part.part, part.clone());
    }

    /// The sessions the index would list, oldest first.
    fn ordered(&self) -> Vec<&SessionState> {
        let mut sessions: Vec<&SessionState> = self.sessions.values().filter(|s| s.known).collect();
        sessions.sort_by(|a, b| {
            (a.session.started_at_ms, &a.session.session_id).cmp(&(b.session.started_at_ms, &b.session.session_id))
        });
        sessions
    }

    /// Nothing about the stream will change with time alone: its newest session ended long enough ago that
    /// every wait is over.
    fn settled(&self, now_ms: i64, settings: &Settings) -> bool {
        let waits = (settings.end_grace.as_millis() as i64).max(playlist::IN_FLIGHT_WAIT_MS).max(playlist::GAP_WAIT_MS);
        self.ordered().last().is_none_or(|s| s.session.ended_at_ms.is_some_and(|at| now_ms - at > waits + 2_000))
    }

    /// Every playlist of the stream, as of now.
    fn render(&mut self, settings: &Settings, now_ms: i64, version: u64) -> Snapshot {
        let ordered: Vec<Session> = self.ordered().iter().map(|s| s.session.clone()).collect();
        // A rendition has playlists once it has a segment (the master needs one to measure it); parts of the
        // first segment of a stream are not listed before that.
        let names: BTreeSet<String> = self
            .sessions
            .values()
            .filter(|s| s.known)
            .flat_map(|s| s.renditions.iter().filter(|(_, m)| !m.segments.is_empty()).map(|(name, _)| name.clone()))
            .collect();
        if self.timelines_dirty || names.iter().any(|name| !self.timelines.contains_key(name)) {
            self.timelines.clear();
            for name in &names {
                let media: Vec<playlist::SessionMedia> = ordered
                    .iter()
                    .map(|session| {
                        let state = &self.sessions[&session.session_id];
                        playlist::SessionMedia {
                            session: session.clone(),
                            segments: state
                                .renditions
                                .get(name)
                                .map(|r| r.segments.values().cloned().collect())
                                .unwrap_or_default(),
                            failed: state.failed.iter().copied().collect(),
                        }
                    })
                    .collect();
                self.timelines.insert(name.clone(), Arc::new(playlist::timeline(&media, now_ms)));
            }
            self.timelines_dirty = false;
        }
        let grace = settings.end_grace.as_millis() as i64;
        let grace_over = |ended_at_ms: Option<i64>| ended_at_ms.is_some_and(|at| now_ms - at >= grace);

        // The ladder in force: the renditions of the newest session that has any.
        let current: Vec<Rendition> = ordered
            .iter()
            .rev()
            .map(|session| {
                let state = &self.sessions[&session.session_id];
                let mut found: Vec<Rendition> = state
                    .renditions
                    .iter()
                    .filter(|(_, media)| !media.segments.is_empty())
                    .map(|(name, media)| media.summary(name))
                    .collect();
                found.sort_by(|a, b| b.bitrate.cmp(&a.bitrate).then(a.name.cmp(&b.name)));
                found
            })
            .find(|found| !found.is_empty())
            .map(playlist::current)
            .unwrap_or_default();
        let over = grace_over(ordered.last().and_then(|s| s.ended_at_ms));
        let master = (!current.is_empty()).then(|| Rendered::new(playlist::master(&current, "")));

        // Each rendition's live edge first: the others' are in its rendition reports.
        let part_target = (self.part_target > 0).then_some(self.part_target);
        let mut edges: HashMap<String, Edge> = HashMap::new();
        let mut lows: HashMap<String, LowLatency> = HashMap::new();
        for name in &names {
            let timeline = &self.timelines[name];
            let ended = timeline.complete && grace_over(timeline.ended_at_ms);
            let (edge, low) = self.low_latency(&ordered, name, timeline);
            edges.insert(name.clone(), edge);
            if let (Some(target), false) = (part_target, ended) {
                lows.insert(name.clone(), LowLatency { part_target: target, ..low });
            }
        }
        let mut renditions = HashMap::new();
        for name in &names {
            let timeline = self.timelines[name].clone();
            let ended = timeline.complete && grace_over(timeline.ended_at_ms);
            let mut low = lows.remove(name);
            if let Some(low) = low.as_mut() {
                low.reports = current
                    .iter()
                    .filter(|r| &r.name != name)
                    .filter_map(|r| {
                        let (last_msn, last_part) = edges.get(&r.name)?.report()?;
                        Some(RenditionReport { uri: format!("{}.m3u8", r.name), last_msn, last_part })
                    })
                    .collect();
                // A part may come out a little longer than the target (the last of a chunk): the declared
                // target is never below what is listed.
                let longest = low.parts.values().flatten().chain(&low.pending).map(|p| p.duration).max().unwrap_or(0);
                low.part_target = low.part_target.max(longest);
            }
            let kind = Kind::Live { window: settings.window };
            let live = playlist::media(&timeline, kind, ended, &settings.media_base, low.as_ref(), false);
            let Some(live) = live else { continue };
            let delta = low
                .as_ref()
                .and_then(|low| playlist::media(&timeline, kind, ended, &settings.media_base, Some(low), true))
                .filter(|delta| delta.text.contains("#EXT-X-SKIP:"))
                .map(|delta| Rendered::new(delta.text));
            let view = RenditionView {
                live: Rendered::new(live.text),
                delta,
                fixed: live.fixed,
                edge: edges.get(name).copied().unwrap_or_default(),
                target_duration: timeline.target_duration,
                part_target: low.as_ref().map(|l| l.part_target),
                timeline,
                ended,
                dvr: OnceLock::new(),
            };
            renditions.insert(name.clone(), Arc::new(view));
        }
        self.prune_parts();
        Snapshot { version, exists: !ordered.is_empty(), current, master, over, renditions }
    }

    /// A rendition's live edge, and the LL-HLS part of its playlist (without the part target and reports).
    fn low_latency(&self, ordered: &[Session], name: &str, timeline: &Timeline) -> (Edge, LowLatency) {
        let media_of = |session: usize| {
            ordered.get(session).and_then(|s| self.sessions.get(&s.session_id)).and_then(|s| s.renditions.get(name))
        };
        let line =
            |p: &PartReady| PartLine { duration: p.duration, key: p.object_key.clone(), independent: p.independent };
        let mut low = LowLatency::default();
        for entry in timeline.entries.iter().rev().take(playlist::PARTS_LISTED) {
            let parts: Vec<PartLine> = media_of(entry.session)
                .map(|m| m.listed_parts(entry.segment.sequence).into_iter().map(line).collect())
                .unwrap_or_default();
            if !parts.is_empty() {
                low.parts.insert(entry.msn, parts);
            }
        }
        let last = timeline.entries.last();
        let mut edge = Edge {
            last_msn: last.map(|e| e.msn),
            last_parts: last.and_then(|e| low.parts.get(&e.msn)).map(|p| p.len() as u32),
            pending: None,
        };
        let Some(next) = timeline.next else { return (edge, low) };
        let Some(session) = ordered.get(next.session) else { return (edge, low) };
        let pending: Vec<&PartReady> =
            media_of(next.session).map(|m| m.listed_parts(next.sequence)).unwrap_or_default();
        let key = |sequence: u64, part: u32| {
            ladder_storage::keys::rendition_part(&self.stream, &session.session_id, name, sequence, part)
        };
        low.hint = Some(match pending.last() {
            Some(p) if p.last => key(next.sequence + 1, 0),
            Some(p) => key(next.sequence, p.part + 1),
            None => key(next.sequence, 0),
        });
        if let Some(first) = pending.first() {
            low.pending_date_ms = match last {
                Some(last) if last.session == next.session && last.msn + 1 == next.msn && !next.discontinuity => {
                    last.program_date_ms + (last.segment.duration / 90) as i64
                }
                _ => first.wall_clock_ms,
            };
            edge.pending = Some((next.msn, pending.len() as u32));
            low.pending = pending.into_iter().map(line).collect();
        }
        (edge, low)
    }

    /// Parts are worth keeping for the last few segments only.
    fn prune_parts(&mut self) {
        for session in self.sessions.values_mut() {
            for media in session.renditions.values_mut() {
                let Some(newest) = media.segments.keys().next_back().copied() else { continue };
                let keep_from = newest.saturating_sub(playlist::PARTS_LISTED as u64 + 2);
                media.parts.retain(|sequence, _| *sequence >= keep_from);
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_has_what_a_blocking_reload_waits_for() {
        let edge = Edge { last_msn: Some(10), last_parts: Some(4), pending: Some((11, 2)) };
        assert!(edge.has(9, None) && edge.has(10, None) && edge.has(10, Some(3)));
        assert!(edge.has(10, Some(4)), "past segment 10's last part: part 0 of 11");
        assert!(edge.has(11, Some(0)) && edge.has(11, Some(1)));
        assert!(!edge.has(11, Some(2)) && !edge.has(11, None), "11 is not complete");
        assert!(!edge.has(12, Some(0)));
        let no_parts = Edge { last_msn: Some(10), last_parts: None, pending: None };
        assert!(no_parts.has(10, Some(7)), "parts unknown: a complete segment has them all");
        assert!(!no_parts.has(11, None));
        assert_eq!(edge.report(), Some((11, Some(1))));
        assert_eq!(no_parts.report(), Some((10, None)));
    }
}
