//! Parsing of the SRT `streamid` a publisher sends in its handshake. Two syntaxes are accepted:
//! - the SRT access control syntax `#!::r=<name>,m=publish` (keys in any order, `m` optional, other keys
//!   such as `u=` ignored, any mode other than `publish` refused);
//! - a plain `<name>`.
//!
//! The name becomes part of NATS subjects (`ingest.ts.<name>`) and object keys, so it is restricted to
//! `[A-Za-z0-9_-]{1,64}`: no dots, wildcards or slashes can reach a subject.

/// Longest accepted stream name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

const ACCESS_CONTROL_PREFIX: &str = "#!::";

/// Why a streamid was refused. The publisher's connection is rejected at the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("no streamid given; set streamid to the stream name or to #!::r=<name>,m=publish")]
    Missing,
    #[error("empty stream name")]
    EmptyName,
    #[error("stream name is {0} bytes long, the limit is {MAX_NAME_LEN}")]
    NameTooLong(usize),
    #[error("stream name {0:?} may only contain A-Z, a-z, 0-9, '_' and '-'")]
    InvalidName(String),
    #[error("streamid entry {0:?} is not of the form key=value")]
    MalformedEntry(String),
    #[error("streamid has no r=<name> entry")]
    MissingResource,
    #[error("streamid repeats the key {0:?}")]
    DuplicateKey(String),
    #[error("mode m={0} is refused: ingest only accepts m=publish")]
    NotPublish(String),
}

/// Extracts the stream name from a publisher's SRT streamid.
pub fn parse_stream_id(stream_id: Option<&str>) -> Result<String, StreamIdError> {
    let stream_id = stream_id.ok_or(StreamIdError::Missing)?;
    let name = match stream_id.strip_prefix(ACCESS_CONTROL_PREFIX) {
        Some(entries) => parse_access_control(entries)?,
        None => stream_id,
    };
    validate_name(name)?;
    Ok(name.to_string())
}

fn parse_access_control(entries: &str) -> Result<&str, StreamIdError> {
    let mut resource = None;
    let mut mode = None;
    for entry in entries.split(',') {
        let (key, value) = entry.split_once('=').ok_or_else(|| StreamIdError::MalformedEntry(entry.to_string()))?;
        let slot = match key {
            "r" => &mut resource,
            "m" => &mut mode,
            // u= (user), h= (host), s= (session), t= (type) and custom keys do not matter to ingest.
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(StreamIdError::DuplicateKey(key.to_string()));
        }
    }
    if let Some(mode) = mode {
        if mode != "publish" {
            return Err(StreamIdError::NotPublish(mode.to_string()));
        }
    }
    resource.ok_or(StreamIdError::MissingResource)
}

pub fn validate_name(name: &str) -> Result<(), StreamIdError> {
    if name.is_empty() {
        return Err(StreamIdError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StreamIdError::NameTooLong(name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(StreamIdError::InvalidName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, StreamIdError> {
        parse_stream_id(Some(s))
    }

    #[test]
    fn accepts_a_plain_name() {
        assert_eq!(parse("cam-1").as_deref(), Ok("cam-1"));
        assert_eq!(parse("Studio_B-02").as_deref(), Ok("Studio_B-02"));
    }

    #[test]
    fn accepts_the_access_control_syntax() {
        assert_eq!(parse("#!::r=cam-1,m=publish").as_deref(), Ok("cam-1"));
        assert_eq!(parse("#!::r=cam-1").as_deref(), Ok("cam-1"));
    }

    #[test]
    fn access_control_keys_may_come_in_any_order_and_unknown_keys_are_ignored() {
        assert_eq!(parse("#!::m=publish,r=cam-1").as_deref(), Ok("cam-1"));
        assert_eq!(parse("#!::u=alice,m=publish,r=cam-1").as_deref(), Ok("cam-1"));
        assert_eq!(parse("#!::u=alice,r=cam-1,h=example.org,s=abc,t=stream").as_deref(), Ok("cam-1"));
    }

    #[test]
    fn refuses_modes_other_than_publish() {
        assert_eq!(parse("#!::r=cam-1,m=request"), Err(StreamIdError::NotPublish("request".into())));
        assert_eq!(parse("#!::m=bidirectional,r=cam-1"), Err(StreamIdError::NotPublish("bidirectional".into())));
        assert_eq!(parse("#!::r=cam-1,m="), Err(StreamIdError::NotPublish(String::new())));
    }

    #[test]
    fn refuses_missing_or_empty_stream_ids() {
        assert_eq!(parse_stream_id(None), Err(StreamIdError::Missing));
        assert_eq!(parse(""), Err(StreamIdError::EmptyName));
        assert_eq!(parse("#!::r="), Err(StreamIdError::EmptyName));
        assert_eq!(parse("#!::m=publish"), Err(StreamIdError::MissingResource));
        assert_eq!(parse("#!::u=alice"), Err(StreamIdError::MissingResource));
    }

    #[test]
    fn refuses_malformed_access_control_lists() {
        assert_eq!(parse("#!::"), Err(StreamIdError::MalformedEntry(String::new())));
        assert_eq!(parse("#!::r=cam-1,publish"), Err(StreamIdError::MalformedEntry("publish".into())));
        assert_eq!(parse("#!::r=a,r=b"), Err(StreamIdError::DuplicateKey("r".into())));
        assert_eq!(parse("#!::r=a,m=publish,m=publish"), Err(StreamIdError::DuplicateKey("m".into())));
    }

    #[test]
    fn refuses_names_with_characters_outside_the_allowed_set() {
        for bad in ["bad/name", "a.b", "a b", "ingest.>", "*", "caf\u{e9}", "#!:r=x", "name,m=publish"] {
            assert_eq!(parse(bad), Err(StreamIdError::InvalidName(bad.into())), "{bad:?}");
        }
        assert_eq!(parse("#!::r=bad/name,m=publish"), Err(StreamIdError::InvalidName("bad/name".into())));
    }

    #[test]
    fn accepts_64_characters_and_refuses_65() {
        let longest = "a".repeat(64);
        assert_eq!(parse(&longest), Ok(longest.clone()));
        assert_eq!(parse(&format!("#!::r={longest},m=publish")), Ok(longest.clone()));
        assert_eq!(parse(&"a".repeat(65)), Err(StreamIdError::NameTooLong(65)));
        assert_eq!(parse(&format!("#!::r={},m=publish", "a".repeat(65))), Err(StreamIdError::NameTooLong(65)));
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            StreamIdError::NotPublish("request".into()).to_string(),
            "mode m=request is refused: ingest only accepts m=publish"
        );
        assert_eq!(StreamIdError::NameTooLong(65).to_string(), "stream name is 65 bytes long, the limit is 64");
    }
}
