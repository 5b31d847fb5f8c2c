//! Per-stream publish keys: the SRT passphrase a publisher of a stream must encrypt with, kept in the
//! key-value bucket [`kv::STREAM_KEYS`] (key = stream name, value = the passphrase as UTF-8, never expires,
//! one revision per key).
//!
//! An operator sets, rotates and removes keys with [`StreamKeys`] (`ladder stream set-key`, `remove-key`).
//! Ingest decides at every SRT handshake, so it reads them from memory: [`StreamKeys::watch`] loads the
//! bucket once and keeps a [`KeyView`] up to date from a key-value watch. The view is only readable once it
//! holds the whole bucket, so ingest never admits a publisher before it knows the keys; after a NATS outage
//! the watch is made again and the whole bucket read again, so a key removed during the outage is not kept.
//!
//! Keys are secrets: nothing here logs or formats one (`Debug` of a [`KeyView`] shows the count only).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, PoisonError, RwLock, Weak},
    time::Duration,
};

use async_nats::{
    connection::State,
    jetstream::kv::{self as nats_kv, Entry, Operation},
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{kv, Bus, BusError};

/// Shortest key, in bytes: SRT refuses a shorter passphrase.
pub const MIN_KEY_LEN: usize = 10;
/// Longest key, in bytes: SRT refuses a longer passphrase.
pub const MAX_KEY_LEN: usize = 79;
/// Length of a key made by [`generate_key`]: 32 characters of 62 kinds, about 190 bits.
pub const GENERATED_KEY_LEN: usize = 32;

/// How long one load of the whole bucket may take before it counts as failed (and is tried again).
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`StreamKeys::watch`] keeps trying to load the bucket before it gives up.
const FIRST_LOAD_DEADLINE: Duration = Duration::from_secs(30);
/// How long [`StreamKeys::names`] may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often the watch task looks at the connection (and whether any view is left).
const CONNECTION_CHECK: Duration = Duration::from_millis(250);

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a stream key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes long (SRT's passphrase rule), got {0}")]
    Length(usize),
    /// The key itself is never part of the message.
    #[error("character {position} of the stream key is not printable ASCII or is a space")]
    Character { position: usize },
    #[error("{0:?} cannot name a key in the key-value bucket")]
    InvalidName(String),
    #[error("stream keys in nats: {0}")]
    Unavailable(String),
}

impl KeyError {
    /// The input was refused (a bad key or name), as opposed to NATS failing: retrying cannot help.
    pub fn is_invalid(&self) -> bool {
        !matches!(self, KeyError::Unavailable(_))
    }
}

/// Checks a key before it is stored: 10 to 79 bytes (what SRT accepts as a passphrase) of printable ASCII
/// without spaces (`!` to `~`). SRT itself takes any bytes; the narrower rule is because a key travels in
/// places that mangle the rest: an `srt://` URL query (`passphrase=`), a shell command, an environment
/// variable, a copy from a terminal (a trailing space or newline would be a different key). Characters with
/// a meaning in URLs (`&`, `#`, `%`, `+`) are allowed, and must be percent-encoded in an `srt://` URL.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        return Err(KeyError::Length(key.len()));
    }
    match key.bytes().position(|b| !b.is_ascii_graphic()) {
        Some(position) => Err(KeyError::Character { position }),
        None => Ok(()),
    }
}

/// A new random key of [`GENERATED_KEY_LEN`] characters from `[A-Za-z0-9]`, safe in a URL as it is.
///
/// The randomness is the operating system's CSPRNG, through version 4 UUIDs (`getrandom`): ladder depends on
/// `uuid` already and on no random number crate of its own. Of each UUID's 16 bytes, the two that carry
/// version and variant bits are skipped; a byte is used only below 248 (4 × 62), so every character is
/// equally likely.
pub fn generate_key() -> String {
    let mut key = String::with_capacity(GENERATED_KEY_LEN);
    while key.len() < GENERATED_KEY_LEN {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        for (i, byte) in bytes.into_iter().enumerate() {
            if i == 6 || i == 8 || byte >= 248 || key.len() == GENERATED_KEY_LEN {
                continue;
            }
            key.push(char::from(ALPHABET[usize::from(byte % 62)]));
        }
    }
    debug_assert!(validate_key(&key).is_ok());
    key
}

// === impl StreamKeys ===

/// The stream keys bucket, to change keys and to watch them.
#[derive(Clone)]
pub struct StreamKeys {
    kv: nats_kv::Store,
    client: async_nats::Client,
}

impl fmt::Debug for StreamKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamKeys").field("bucket", &self.kv.name).finish()
    }
}

impl StreamKeys {
    /// Opens the bucket ([`Bus::connect`] has created it).
    pub async fn open(bus: &Bus) -> Result<StreamKeys, BusError> {
        let kv = kv::bucket(bus.jetstream(), kv::STREAM_KEYS, bus.replicas()).await?;
        Ok(StreamKeys { kv, client: bus.jetstream().client() })
    }

    /// Sets the key of `stream`, replacing the one it had: every [`KeyView`] has it within a second. A
    /// publisher already connected keeps its connection; the key is checked at the handshake only.
    pub async fn set(&self, stream: &str, key: &str) -> Result<(), KeyError> {
        validate_key(key)?;
        match self.kv.put(stream, Bytes::copy_from_slice(key.as_bytes())).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == nats_kv::PutErrorKind::InvalidKey => Err(KeyError::InvalidName(stream.into())),
            Err(e) => Err(KeyError::Unavailable(format!("setting the key of {stream}: {e}"))),
        }
    }

    /// Removes the key of `stream`; returns whether it had one. A purge, so the old value is not kept in the
    /// bucket's stream either.
    pub async fn remove(&self, stream: &str) -> Result<bool, KeyError> {
        let had = self.get(stream).await?.is_some();
        match self.kv.purge(stream).await {
            Ok(()) => Ok(had),
            Err(e) if e.kind() == nats_kv::PurgeErrorKind::InvalidKey => Err(KeyError::InvalidName(stream.into())),
            Err(e) => Err(KeyError::Unavailable(format!("removing the key of {stream}: {e}"))),
        }
    }

    /// The key of `stream`, read from NATS.
    pub async fn get(&self, stream: &str) -> Result<Option<String>, KeyError> {
        match self.kv.get(stream).await {
            Ok(value) => Ok(value.map(|value| decode(stream, &value).to_string())),
            Err(e) if e.kind() == nats_kv::EntryErrorKind::InvalidKey => Err(KeyError::InvalidName(stream.into())),
            Err(e) => Err(KeyError::Unavailable(format!("reading the key of {stream}: {e}"))),
        }
    }

    /// The streams that have a key, sorted. Only names: listing never reads a key.
    pub async fn names(&self) -> Result<Vec<String>, KeyError> {
        let list = async {
            let keys = self.kv.keys().await.map_err(|e| e.to_string())?;
            keys.try_collect::<Vec<String>>().await.map_err(|e| e.to_string())
        };
        let mut names = match tokio::time::timeout(LIST_TIMEOUT, list).await {
            Ok(Ok(names)) => names,
            Ok(Err(e)) => return Err(KeyError::Unavailable(format!("listing the streams with a key: {e}"))),
            Err(_) => return Err(KeyError::Unavailable(format!("listing took more than {LIST_TIMEOUT:?}"))),
        };
        names.sort();
        Ok(names)
    }

    /// Loads every key and returns a view of them that a task keeps up to date until `shutdown` is cancelled
    /// or the last clone of the view is dropped. Returns only once the whole bucket is loaded (retrying for
    /// up to 30 s, as [`Bus::connect`] does); an error means ingest must not start.
    ///
    /// The task applies every change as the watch delivers it (within milliseconds). When the watch fails or
    /// ends, or the connection to NATS drops, it warns once, then makes a new watch and loads the whole
    /// bucket again (retrying every 250 ms to 2 s) and replaces the view's contents in one step. Until then
    /// the view keeps answering with what it had.
    pub async fn watch(&self, shutdown: CancellationToken) -> Result<KeyView, BusError> {
        let deadline = Instant::now() + FIRST_LOAD_DEADLINE;
        let mut pause = RETRY_FIRST;
        let (watch, keys) = loop {
            match load(&self.kv).await {
                Ok(loaded) => break loaded,
                Err(e) if Instant::now() + pause < deadline => {
                    tracing::warn!(error = %e, "loading stream keys failed, retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                Err(message) => {
                    return Err(BusError::Topology { what: format!("watch of bucket {}", kv::STREAM_KEYS), message })
                }
            }
        };
        tracing::info!(streams = keys.len(), "stream keys loaded");
        let view = KeyView { keys: Arc::new(RwLock::new(keys)) };
        let follower =
            Follower { kv: self.kv.clone(), client: self.client.clone(), keys: Arc::downgrade(&view.keys), shutdown };
        tokio::spawn(follower.run(watch));
        Ok(view)
    }
}

/// A new watch over every key and the bucket's contents up to the moment it started.
///
/// The watch delivers the last entry of every key (put, delete or purge marker) in revision order, then
/// every change. The bucket is loaded once an entry at or past the stream's last sequence, read before the
/// watch was made, has arrived: that message is the last of its key (one revision per key), so it is
/// delivered, and all entries before it have been. An entry with nothing pending after it means the same.
async fn load(kv: &nats_kv::Store) -> Result<(nats_kv::Watch, HashMap<String, Arc<str>>), String> {
    let info = tokio::time::timeout(LOAD_TIMEOUT, kv.stream.get_info())
        .await
        .map_err(|_| format!("no bucket information within {LOAD_TIMEOUT:?}"))?
        .map_err(|e| format!("reading the bucket's information: {e}"))?;
    let last = if info.state.messages == 0 { 0 } else { info.state.last_sequence };
    let mut watch = tokio::time::timeout(LOAD_TIMEOUT, kv.watch_with_history(">"))
        .await
        .map_err(|_| format!("no watch within {LOAD_TIMEOUT:?}"))?
        .map_err(|e| format!("watching the bucket: {e}"))?;
    let mut keys = HashMap::new();
    if last == 0 {
        return Ok((watch, keys));
    }
    let deadline = Instant::now() + LOAD_TIMEOUT;
    loop {
        let entry = match tokio::time::timeout_at(deadline, watch.next()).await {
            Err(_) => return Err(format!("the bucket was not read within {LOAD_TIMEOUT:?}")),
            Ok(None) => return Err("the watch ended while loading".into()),
            Ok(Some(Err(e))) => return Err(format!("loading: {e}")),
            Ok(Some(Ok(entry))) => entry,
        };
        apply(&mut keys, &entry);
        if entry.revision >= last || entry.delta == 0 {
            return Ok((watch, keys));
        }
    }
}

fn apply(keys: &mut HashMap<String, Arc<str>>, entry: &Entry) {
    match entry.operation {
        Operation::Put => {
            keys.insert(entry.key.clone(), decode(&entry.key, &entry.value));
        }
        Operation::Delete | Operation::Purge => {
            keys.remove(&entry.key);
        }
    }
}

/// A stored value as a key. [`StreamKeys::set`] stores only valid keys; a value written some other way is
/// kept as it is (with a warning) so that the stream stays locked, and one that is not UTF-8 becomes the
/// empty key, which no publisher can match.
fn decode(stream: &str, value: &[u8]) -> Arc<str> {
    match std::str::from_utf8(value) {
        Ok(key) => {
            if let Err(e) = validate_key(key) {
                tracing::warn!(stream, error = %e, "stored stream key is not a valid key, no publisher can use it");
            }
            Arc::from(key)
        }
        Err(_) => {
            tracing::warn!(stream, "stored stream key is not UTF-8, no publisher can use it");
            Arc::from("")
        }
    }
}

// === impl Follower ===

/// The task behind a [`KeyView`].
struct Follower {
    kv: nats_kv::Store,
    client: async_nats::Client,
    keys: Weak<RwLock<HashMap<String, Arc<str>>>>,
    shutdown: CancellationToken,
}

impl Follower {
    async fn run(self, watch: nats_kv::Watch) {
        let mut watch = Some(watch);
        // Whether an outage was reported and not yet followed by a reload.
        let mut outage = false;
        let mut check = tokio::time::interval(CONNECTION_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let Some(current) = watch.as_mut() else {
                let Some((new, keys)) = self.reload().await else { return };
                let Some(view) = self.keys.upgrade() else { return };
                let streams = keys.len();
                *view.write().unwrap_or_else(PoisonError::into_inner) = keys;
                if outage {
                    tracing::info!(streams, "stream keys watched again and reloaded");
                    outage = false;
                }
                watch = Some(new);
                continue;
            };
            let lost = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                entry = current.next() => match entry {
                    Some(Ok(entry)) => {
                        let Some(view) = self.keys.upgrade() else { return };
                        apply(&mut view.write().unwrap_or_else(PoisonError::into_inner), &entry);
                        None
                    }
                    Some(Err(e)) => Some(e.to_string()),
                    None => Some("the watch ended".to_string()),
                },
                _ = check.tick() => {
                    if self.keys.strong_count() == 0 {
                        return;
                    }
                    // The watch would resume by itself after a reconnect; it is made anew and the bucket read
                    // again instead, so nothing depends on what the server kept of it.
                    (self.client.connection_state() != State::Connected).then(|| "nats connection lost".to_string())
                }
            };
            if let Some(reason) = lost {
                if !outage {
                    tracing::warn!(
                        reason,
                        "stream keys watch lost, keeping the keys known until it is back and the bucket is reloaded"
                    );
                    outage = true;
                }
                watch = None;
            }
        }
    }

    /// A new watch and the whole bucket, tried until it works; `None` on shutdown or once no view is left.
    async fn reload(&self) -> Option<(nats_kv::Watch, HashMap<String, Arc<str>>)> {
        let mut pause = RETRY_FIRST;
        loop {
            if self.keys.strong_count() == 0 {
                return None;
            }
            if self.client.connection_state() == State::Connected {
                match load(&self.kv).await {
                    Ok(loaded) => return Some(loaded),
                    Err(e) => tracing::debug!(error = %e, "reloading stream keys failed, retrying"),
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RETRY_MAX);
        }
    }
}

// === impl KeyView ===

/// The stream keys as last loaded, kept up to date by the task of [`StreamKeys::watch`]. Cheap to clone;
/// reading takes a short read lock and never waits on NATS, so it may be called from any thread.
#[derive(Clone, Default)]
pub struct KeyView {
    keys: Arc<RwLock<HashMap<String, Arc<str>>>>,
}

impl KeyView {
    /// The key publishers of `stream` must use; `None` when the stream has none. A key written to the
    /// bucket by hand may not pass [`validate_key`]: a publisher must then be refused, never let in.
    pub fn get(&self, stream: &str) -> Option<Arc<str>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).get(stream).cloned()
    }

    /// How many streams have a key.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A fixed view, followed by no task: for tests, or a deployment whose keys come from elsewhere.
impl<S: Into<String>, K: Into<Arc<str>>> FromIterator<(S, K)> for KeyView {
    fn from_iter<I: IntoIterator<Item = (S, K)>>(iter: I) -> Self {
        let keys = iter.into_iter().map(|(stream, key)| (stream.into(), key.into())).collect();
        KeyView { keys: Arc::new(RwLock::new(keys)) }
    }
}

impl fmt::Debug for KeyView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyView").field("streams", &self.len()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_lengths_are_accepted_and_others_refused() {
        assert!(validate_key(&"k".repeat(MIN_KEY_LEN)).is_ok());
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(matches!(validate_key(&"k".repeat(MIN_KEY_LEN - 1)), Err(KeyError::Length(9))));
        assert!(matches!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)), Err(KeyError::Length(80))));
        assert!(matches!(validate_key(""), Err(KeyError::Length(0))));
    }

    #[test]
    fn only_printable_ascii_without_spaces_is_accepted() {
        assert!(validate_key("!#$%&'()*+,-./0123456789:;<=>?@AZaz[]^_`{|}~").is_ok());
        for (bad, position) in [
            ("a passphrase", 1),
            ("passphrase ", 10),
            ("passphrase\n", 10),
            ("\tpassphrase", 0),
            ("pässphrase1", 1),
            ("passphrase\u{7f}", 10),
        ] {
            match validate_key(bad) {
                Err(KeyError::Character { position: at }) => assert_eq!(at, position, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_refused_key_is_not_in_the_message() {
        let error = validate_key("secret passphrase").expect_err("refused");
        assert!(!error.to_string().contains("secret"), "{error}");
        assert!(error.is_invalid());
        assert!(!KeyError::Unavailable("x".into()).is_invalid());
    }

    #[test]
    fn generated_keys_are_valid_alphanumeric_and_differ() {
        let keys: Vec<String> = (0..200).map(|_| generate_key()).collect();
        for key in &keys {
            assert_eq!(key.len(), GENERATED_KEY_LEN);
            assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
            validate_key(key).expect("valid");
        }
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        // 6400 characters: every one of the 62 shows up (a bias to a subset would not).
        let used: std::collections::HashSet<u8> = keys.iter().flat_map(|key| key.bytes()).collect();
        assert_eq!(used.len(), 62);
    }

    #[test]
    fn a_value_that_is_not_utf8_locks_the_stream() {
        assert_eq!(&*decode("cam", b"\xff\xfe0123456789"), "");
        assert_eq!(&*decode("cam", b"0123456789"), "0123456789");
        assert_eq!(&*decode("cam", b"short"), "short", "kept as it is: it matches nothing SRT accepts");
    }

    #[test]
    fn a_fixed_view_answers_without_a_task() {
        let view: KeyView = [("cam", "0123456789")].into_iter().collect();
        assert_eq!(view.get("cam").as_deref(), Some("0123456789"));
        assert_eq!(view.get("other"), None);
        assert_eq!(view.len(), 1);
        assert!(!format!("{view:?}").contains("0123"));
    }
}
