//! Signed playback: tokens that open a stream's playlists and segments until they expire.
//!
//! A token is `<key id>.<expiry>.<prefix>.<signature>`: the expiry in Unix seconds, the optional path prefix
//! in unpadded base64url (empty for none), and HMAC-SHA256 over `ladder-playback-v1`, the key id, the stream,
//! the expiry and the prefix, in unpadded base64url. The stream is not written in the token: it is the one in
//! the URL, so a token for one stream does not verify for another. Every character is one a URL path segment
//! may hold, so the token travels in the path, `/t/<token>/live/<stream>/master.m3u8`, and the relative URIs of
//! the playlists carry it to every variant, segment and part without the playlists ever containing it: their
//! bodies are the same for every viewer, and a CDN caches them.
//!
//! Keys are named, so they rotate: the manifest accepts every key it is given, [`KeySet::mint`] signs with the
//! first (or the one asked for). To rotate: add the new key after the old, then move it first (new tokens),
//! then drop the old one once its tokens have expired.
//!
//! The prefix narrows what a token opens to the playlist paths under it (`live/<stream>/` opens the live
//! playlists but not DVR or clips; `live/<stream>/360p` one rendition). Segments and parts of the stream are
//! opened by any of its tokens: they are named by unguessable session ids and cannot be listed.

use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::hmac;

/// Secrets shorter than this are refused: HMAC-SHA256 keys should carry at least 128 bits.
pub const MIN_SECRET_LEN: usize = 32;
const DOMAIN: &str = "ladder-playback-v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("playback keys are `id:secret` separated by commas, got an entry without `:`")]
    Syntax,
    #[error("a playback key id is 1 to 32 of A-Z, a-z, 0-9, `-` and `_`, got {0:?}")]
    BadId(String),
    #[error("playback key {0:?} has a secret shorter than {MIN_SECRET_LEN} characters (make one with `ladder token --new-key`)")]
    ShortSecret(String),
    #[error("playback key {0:?} is given twice")]
    Duplicate(String),
    #[error("no playback keys given")]
    Empty,
    #[error("no playback key {0:?}")]
    UnknownKey(String),
}

/// Why a request's token does not open what it asks for: the one-line reason of the 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A signed stream asked for without a token.
    Missing,
    Malformed,
    UnknownKey(String),
    Expired(i64),
    /// Forged, altered, or signed for another stream.
    BadSignature,
    OutsidePrefix(String),
    /// A token given to a manifest that has no keys.
    NotConfigured,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Missing => write!(f, "this stream needs a playback token: /t/<token>/..."),
            Denied::Malformed => write!(f, "malformed playback token"),
            Denied::UnknownKey(id) => write!(f, "playback token signed with unknown key {id:?}"),
            Denied::Expired(at) => write!(f, "playback token expired at {}", rfc3339(*at)),
            Denied::BadSignature => {
                write!(f, "playback token signature does not match (forged, or for another stream)")
            }
            Denied::OutsidePrefix(prefix) => write!(f, "playback token only opens paths under {prefix:?}"),
            Denied::NotConfigured => write!(f, "this server has no playback keys; tokens are not accepted"),
        }
    }
}

fn rfc3339(unix_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix_seconds.to_string())
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub stream: String,
    /// Unix seconds after which the token no longer opens anything.
    pub expires_at: i64,
    /// Playlist paths the token is limited to, e.g. `live/cam/`.
    pub prefix: Option<String>,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    pub expires_at: i64,
    pub prefix: Option<String>,
}

impl Verified {
    /// Whether the token opens the playlist at `path` (`live/<stream>/<file>` and the like).
    pub fn opens(&self, path: &str) -> Result<(), Denied> {
        match &self.prefix {
            Some(prefix) if !path.starts_with(prefix.as_str()) => Err(Denied::OutsidePrefix(prefix.clone())),
            _ => Ok(()),
        }
    }
}

/// The keys tokens are signed with; the first signs, all verify.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<(String, hmac::Key)>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(id, _)| id)).finish()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl KeySet {
    /// Parses `id:secret[,id:secret...]`; whitespace around entries is ignored.
    pub fn parse(text: &str) -> Result<KeySet, KeyError> {
        let mut keys: Vec<(String, hmac::Key)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, secret) = entry.split_once(':').ok_or(KeyError::Syntax)?;
            let (id, secret) = (id.trim(), secret.trim());
            if !valid_id(id) {
                return Err(KeyError::BadId(id.to_string()));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyError::ShortSecret(id.to_string()));
            }
            if keys.iter().any(|(known, _)| known == id) {
                return Err(KeyError::Duplicate(id.to_string()));
            }
            keys.push((id.to_string(), hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(KeySet { keys })
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// A token for `grant`, signed with `key_id` or the first key.
    pub fn mint(&self, key_id: Option<&str>, grant: &Grant) -> Result<String, KeyError> {
        let (id, key) = match key_id {
            None => &self.keys[0],
            Some(wanted) => {
                self.keys.iter().find(|(id, _)| id == wanted).ok_or_else(|| KeyError::UnknownKey(wanted.to_string()))?
            }
        };
        let prefix = grant.prefix.as_deref().unwrap_or("");
        let tag = hmac::sign(key, message(id, &grant.stream, grant.expires_at, prefix).as_bytes());
        Ok(format!(
            "{id}.{}.{}.{}",
            grant.expires_at,
            URL_SAFE_NO_PAD.encode(prefix),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    /// Checks `token` for `stream` at `now` (Unix seconds): signature first, so that nothing about a forged
    /// token (its expiry, its prefix) is believed.
    pub fn verify(&self, token: &str, stream: &str, now: i64) -> Result<Verified, Denied> {
        let mut fields = token.split('.');
        let (Some(id), Some(expiry), Some(prefix), Some(signature), None) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(Denied::Malformed);
        };
        if !valid_id(id) || expiry.len() > 19 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Denied::Malformed);
        }
        let expires_at: i64 = expiry.parse().map_err(|_| Denied::Malformed)?;
        let prefix = URL_SAFE_NO_PAD.decode(prefix).ok().and_then(|p| String::from_utf8(p).ok());
        let (Some(prefix), Ok(signature)) = (prefix, URL_SAFE_NO_PAD.decode(signature)) else {
            return Err(Denied::Malformed);
        };
        let Some((_, key)) = self.keys.iter().find(|(known, _)| known == id) else {
            return Err(Denied::UnknownKey(id.to_string()));
        };
        hmac::verify(key, message(id, stream, expires_at, &prefix).as_bytes(), &signature)
            .map_err(|_| Denied::BadSignature)?;
        if now >= expires_at {
            return Err(Denied::Expired(expires_at));
        }
        Ok(Verified { key_id: id.to_string(), expires_at, prefix: (!prefix.is_empty()).then_some(prefix) })
    }
}

fn message(id: &str, stream: &str, expires_at: i64, prefix: &str) -> String {
    // Stream names and key ids hold no newline, and the prefix is last: the fields cannot run into each other.
    format!("{DOMAIN}\n{id}\n{stream}\n{expires_at}\n{prefix}")
}

/// A new random secret, 32 bytes as 64 hex characters.
pub fn new_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which streams need a token: names, `prefix*` patterns, or `*` for all.
#[derive(Debug, Clone, Default)]
pub struct SignedStreams {
    patterns: Vec<String>,
}

impl SignedStreams {
    /// Comma-separated patterns; empty for none.
    pub fn parse(text: &str) -> SignedStreams {
        SignedStreams { patterns: text.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn requires(&self, stream: &str) -> bool {
        self.patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => stream.starts_with(prefix),
            None => p == stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_A: &str = "0123456789abcdef0123456789abcdef-a";
    const SECRET_B: &str = "0123456789abcdef0123456789abcdef-b";

    fn keys(text: &str) -> KeySet {
        KeySet::parse(text).expect("keys parse")
    }

    fn grant(stream: &str, expires_at: i64, prefix: Option<&str>) -> Grant {
        Grant { stream: stream.into(), expires_at, prefix: prefix.map(String::from) }
    }

    #[test]
    fn a_minted_token_verifies_for_its_stream_until_it_expires() {
        let set = keys(&format!("k1:{SECRET_A}"));
        let token = set.mint(None, &grant("cam", 1_000, None)).expect("as the test expects");
        assert!(token.starts_with("k1.1000.."), "{token}");
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "path-safe: {token}");
        let verified = set.verify(&token, "cam", 999).expect("as the test expects");
        assert_eq!(verified, Verified { key_id: "k1".into(), expires_at: 1_000, prefix: None });
        assert_eq!(set.verify(&token, "cam", 1_000), Err(Denied::Expired(1_000)));
        assert_eq!(set.verify(&token, "other", 999), Err(Denied::BadSignature));
        assert!(Denied::Expired(1_000).to_string().contains("1970-01-01T00:16:40Z"));
    }

    #[test]
    fn altered_or_foreign_tokens_are_refused() {
        let set = keys(&format!("k1:{SECRET_A}"));
        let token = set.mint(None, &grant("cam", 2_000, Some("live/cam/"))).expect("as the test expects");
        let fields: Vec<&str> = token.split('.').collect();
        // A later expiry or a wider prefix with the same signature.
        let later = format!("k1.9999.{}.{}", fields[2], fields[3]);
        assert_eq!(set.verify(&later, "cam", 0), Err(Denied::BadSignature));
        let wider = format!("k1.2000..{}", fields[3]);
        assert_eq!(set.verify(&wider, "cam", 0), Err(Denied::BadSignature));
        // The same fields signed with a key this server does not hold under that id.
        let other = keys(&format!("k1:{SECRET_B}"))
            .mint(None, &grant("cam", 2_000, Some("live/cam/")))
            .expect("as the test expects");
        assert_eq!(set.verify(&other, "cam", 0), Err(Denied::BadSignature));
        let unknown =
            keys(&format!("k9:{SECRET_A}")).mint(None, &grant("cam", 2_000, None)).expect("as the test expects");
        assert_eq!(set.verify(&unknown, "cam", 0), Err(Denied::UnknownKey("k9".into())));
        for malformed in
            ["", "k1", "k1.2000", "k1.2000..", "k1.x..AAAA", "k1.2000.!!.AAAA", "k1.2000...AAAA.x", "a b.1..A"]
        {
            let denied = set.verify(malformed, "cam", 0).expect_err("as the test expects");
            assert!(matches!(denied, Denied::Malformed | Denied::BadSignature), "{malformed:?}: {denied:?}");
        }
        assert_eq!(set.verify("k1.99999999999999999999..AAAA", "cam", 0), Err(Denied::Malformed));
    }

    #[test]
    fn keys_rotate_by_id() {
        let old = keys(&format!("old:{SECRET_A}"));
        let both = keys(&format!("new:{SECRET_B},old:{SECRET_A}"));
        let issued_before = old.mint(None, &grant("cam", 5_000, None)).expect("as the test expects");
        assert!(both.verify(&issued_before, "cam", 0).is_ok(), "a token of the old key still plays");
        let issued_after = both.mint(None, &grant("cam", 5_000, None)).expect("as the test expects");
        assert!(issued_after.starts_with("new."), "the first key signs: {issued_after}");
        assert!(both.verify(&issued_after, "cam", 0).is_ok());
        assert_eq!(old.verify(&issued_after, "cam", 0), Err(Denied::UnknownKey("new".into())));
        let retired = keys(&format!("new:{SECRET_B}"));
        assert_eq!(retired.verify(&issued_before, "cam", 0), Err(Denied::UnknownKey("old".into())));
        assert!(both.mint(Some("old"), &grant("cam", 1, None)).expect("as the test expects").starts_with("old."));
        assert_eq!(both.mint(Some("gone"), &grant("cam", 1, None)), Err(KeyError::UnknownKey("gone".into())));
    }

    #[test]
    fn a_prefix_narrows_the_playlists() {
        let set = keys(&format!("k1:{SECRET_A}"));
        let token = set.mint(None, &grant("cam", 5_000, Some("live/cam/"))).expect("as the test expects");
        let verified = set.verify(&token, "cam", 0).expect("as the test expects");
        assert_eq!(verified.opens("live/cam/720p.m3u8"), Ok(()));
        assert_eq!(verified.opens("dvr/cam/720p.m3u8"), Err(Denied::OutsidePrefix("live/cam/".into())));
    }

    #[test]
    fn key_lists_are_checked() {
        assert_eq!(KeySet::parse("").expect_err("as the test expects"), KeyError::Empty);
        assert_eq!(KeySet::parse("k1").expect_err("as the test expects"), KeyError::Syntax);
        assert_eq!(KeySet::parse("k1:short").expect_err("as the test expects"), KeyError::ShortSecret("k1".into()));
        assert_eq!(
            KeySet::parse(&format!("a.b:{SECRET_A}")).expect_err("as the test expects"),
            KeyError::BadId("a.b".into())
        );
        assert_eq!(
            KeySet::parse(&format!("k1:{SECRET_A}, k1:{SECRET_B}")).expect_err("as the test expects"),
            KeyError::Duplicate("k1".into())
        );
        assert_eq!(keys(&format!(" k1:{SECRET_A} , k2:{SECRET_B} ")).ids().collect::<Vec<_>>(), ["k1", "k2"]);
        let secret = new_secret();
        assert_eq!(secret.len(), 64);
        assert_ne!(secret, new_secret());
    }

    #[test]
    fn stream_patterns() {
        let signed = SignedStreams::parse("premium-*, news");
        assert!(signed.requires("premium-1") && signed.requires("news"));
        assert!(!signed.requires("newsroom") && !signed.requires("cam"));
        assert!(SignedStreams::parse("*").requires("anything"));
        assert!(SignedStreams::parse(" ").is_empty());
    }
}
