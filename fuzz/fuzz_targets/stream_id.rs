//! `parse_stream_id` on arbitrary strings. Checked, besides "no panic": an accepted name is 1 to 64 bytes of
//! `A-Z a-z 0-9 _ -` (so it can never put a dot, a wildcard or a slash into a NATS subject or an object key);
//! it is accepted again both plain and as `#!::r=<name>,m=publish`; a plain streamid is accepted as itself; and
//! every refusal has a message.
#![no_main]

use ladder_ingest::stream_id::{validate_name, MAX_NAME_LEN};
use ladder_ingest::{parse_stream_id, StreamIdError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(stream_id) = std::str::from_utf8(data) else { return };
    match parse_stream_id(Some(stream_id)) {
        Ok(name) => {
            assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN, "{name:?}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{name:?}");
            assert_eq!(validate_name(&name), Ok(()));
            if !stream_id.starts_with("#!::") {
                assert_eq!(name, stream_id);
            }
            assert_eq!(parse_stream_id(Some(&name)).as_ref(), Ok(&name));
            assert_eq!(parse_stream_id(Some(&format!("#!::r={name},m=publish"))).as_ref(), Ok(&name));
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            assert_ne!(error, StreamIdError::Missing, "a streamid was given");
        }
    }
});
