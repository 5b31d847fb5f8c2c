//! `ladder stream`: per-stream settings. The ladder is carried as events like everything else; the publish
//! key is a secret, so it is kept in a key-value bucket (`ladder_bus::keys`) rather than in the event log.

use anyhow::Context;
use clap::Subcommand;
use ladder_bus::{keys, Bus, KeyError, StreamKeys};
use ladder_transcoder::{ladder, RenditionSpec};

use super::NatsArgs;

#[derive(Subcommand, Debug)]
pub enum StreamCommand {
    /// Set a stream's ABR ladder from a TOML file (one [[rendition]] table each); it applies from the next chunk.
    SetLadder {
        #[command(flatten)]
        nats: NatsArgs,
        stream: String,
        file: std::path::PathBuf,
    },
    /// Show the ladder a stream is transcoded with.
    Show {
        #[command(flatten)]
        nats: NatsArgs,
        stream: String,
    },
    /// Set the SRT passphrase publishers of a stream must use; setting it again rotates it. Publishers already
    /// connected keep their connection, the next connection needs the new key. Without a key, a random one is
    /// generated and printed once, alone on stdout.
    SetKey {
        #[command(flatten)]
        nats: NatsArgs,
        stream: String,
        /// The key: 10 to 79 printable ASCII characters, no spaces. Prefer the environment variable (set from
        /// where the secret is kept): a flag shows in shell history and in the process list.
        #[arg(long, env = "LADDER_STREAM_KEY", hide_env_values = true)]
        key: Option<String>,
    },
    /// Remove a stream's publish key.
    RemoveKey {
        #[command(flatten)]
        nats: NatsArgs,
        stream: String,
    },
    /// List the streams that have a publish key (never the keys).
    Keys {
        #[command(flatten)]
        nats: NatsArgs,
    },
}

pub async fn run(command: StreamCommand) -> Result<(), super::Failure> {
    match command {
        StreamCommand::SetLadder { nats, stream, file } => {
            check_name(&stream).map_err(super::Failure::Config)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(super::Failure::Config)?;
            let renditions = ladder::parse(&text)
                .with_context(|| format!("{} is not a valid ladder", file.display()))
                .map_err(super::Failure::Config)?;
            let bus = Bus::connect(&nats.nats_url).await?;
            ladder_transcoder::set_ladder(&bus, &stream, &renditions).await?;
            bus.drain().await;
            println!("ladder of {stream} set: {} renditions, from the next chunk on", renditions.len());
        }
        StreamCommand::Show { nats, stream } => {
            check_name(&stream).map_err(super::Failure::Config)?;
            let bus = Bus::connect(&nats.nats_url).await?;
            match ladder_transcoder::current_ladder(&bus, &stream).await? {
                Some(renditions) => {
                    println!("# ladder of {stream}, set with `ladder stream set-ladder`");
                    print!("{}", ladder::to_toml(&renditions));
                }
                None => {
                    println!("# {stream} has no ladder of its own: the transcoders' default applies");
                    print!("{}", ladder::to_toml(&ladder_transcoder::default_ladder()));
                }
            }
        }
        StreamCommand::SetKey { nats, stream, key } => {
            check_name(&stream).map_err(super::Failure::Config)?;
            let (key, generated) = match key {
                Some(key) => {
                    keys::validate_key(&key).context("--key (LADDER_STREAM_KEY)").map_err(super::Failure::Config)?;
                    (key, false)
                }
                None => (keys::generate_key(), true),
            };
            let stream_keys = StreamKeys::open(&Bus::connect(&nats.nats_url).await?).await?;
            let had = stream_keys.get(&stream).await.map_err(key_failure)?.is_some();
            stream_keys.set(&stream, &key).await.map_err(key_failure)?;
            if generated {
                println!("{key}");
            }
            eprintln!("{}", set_key_note(&stream, &key, generated, had));
        }
        StreamCommand::RemoveKey { nats, stream } => {
            check_name(&stream).map_err(super::Failure::Config)?;
            let stream_keys = StreamKeys::open(&Bus::connect(&nats.nats_url).await?).await?;
            if stream_keys.remove(&stream).await.map_err(key_failure)? {
                eprintln!("key of {stream} removed; publishers already connected keep their connection");
            } else {
                eprintln!("{stream} had no key");
            }
        }
        StreamCommand::Keys { nats } => {
            let stream_keys = StreamKeys::open(&Bus::connect(&nats.nats_url).await?).await?;
            let names = stream_keys.names().await.map_err(key_failure)?;
            if names.is_empty() {
                eprintln!("no stream has a key");
            }
            for name in names {
                println!("{name}");
            }
        }
    }
    Ok(())
}

/// A refused key or name is a usage error (exit 64), NATS failing is not.
fn key_failure(error: KeyError) -> super::Failure {
    if error.is_invalid() {
        super::Failure::Config(error.into())
    } else {
        super::Failure::Runtime(error.into())
    }
}

/// What `set-key` tells the operator on stderr. The key itself is never repeated: a generated one is printed
/// once on stdout, a given one the operator has.
fn set_key_note(stream: &str, key: &str, generated: bool, rotated: bool) -> String {
    let done = if rotated { "rotated" } else { "set" };
    let which = if generated { "the key above" } else { "the key" };
    // Unreserved URL characters need no encoding; the others a key may have (&, #, %, +, ...) do.
    let encoding =
        if key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) { "" } else { ", percent-encoded" };
    format!(
        "key of {stream} {done}: publishers already connected keep their connection, the next connection needs \
         the new key\npublish with srt://HOST:9000?streamid={stream}&passphrase=KEY (KEY: {which}{encoding})"
    )
}

/// The name itself (not an SRT stream id that holds one, `#!::r=NAME`).
fn check_name(stream: &str) -> anyhow::Result<()> {
    ladder_ingest::stream_id::validate_name(stream).with_context(|| format!("stream name {stream:?}"))
}

/// Reads a default ladder file for `--ladder`.
pub fn read_ladder(path: Option<&std::path::Path>) -> anyhow::Result<Vec<RenditionSpec>> {
    let Some(path) = path else {
        return Ok(ladder_transcoder::default_ladder());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("--ladder {}", path.display()))?;
    ladder::parse(&text).with_context(|| format!("--ladder {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_key_note_never_repeats_the_key() {
        let note = set_key_note("cam-1", "Zx81generated0000", true, false);
        assert!(!note.contains("Zx81"), "{note}");
        assert!(note.contains("key of cam-1 set"), "{note}");
        assert!(note.contains("srt://HOST:9000?streamid=cam-1&passphrase=KEY (KEY: the key above)"), "{note}");
        let note = set_key_note("cam-1", "secret&key#1", false, true);
        assert!(!note.contains("secret"), "{note}");
        assert!(note.contains("key of cam-1 rotated"), "{note}");
        assert!(note.contains("(KEY: the key, percent-encoded)"), "{note}");
    }
}
