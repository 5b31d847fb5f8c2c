//! `ladder token`: mints playback tokens for signed streams ([`ladder_manifest::signing`]), with the keys the
//! manifest is given, or makes a new key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use ladder_manifest::signing::{self, Grant, KeySet};

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The stream the token opens.
    #[arg(required_unless_present = "new_key")]
    pub stream: Option<String>,
    /// The manifest's keys (`id:secret,...`); the first signs unless --key-id says otherwise.
    #[arg(long, env = "LADDER_PLAYBACK_KEYS", hide_env_values = true, required_unless_present = "new_key")]
    pub playback_keys: Option<String>,
    /// Sign with this key instead of the first.
    #[arg(long)]
    pub key_id: Option<String>,
    /// How long the token opens the stream, e.g. 3600s, 90m, 12h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Only the playlists under this path, e.g. `live/<stream>/` (live, not DVR or clips).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Print the master playlist URL under this base (e.g. https://cdn.example.com) rather than the token.
    #[arg(long)]
    pub base: Option<String>,
    /// Print a new random secret for --playback-keys instead (give it an id: `k2:<secret>`).
    #[arg(long)]
    pub new_key: bool,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 90m or 12h"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    if args.new_key {
        println!("{}", signing::new_secret());
        return Ok(());
    }
    let (Some(stream), Some(keys)) = (args.stream, args.playback_keys) else {
        anyhow::bail!("a stream and --playback-keys (LADDER_PLAYBACK_KEYS) are needed");
    };
    ladder_ingest::stream_id::validate_name(&stream).with_context(|| format!("stream {stream:?}"))?;
    let keys = KeySet::parse(&keys).context("--playback-keys (LADDER_PLAYBACK_KEYS)")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("the clock is before 1970")?;
    let expires_at = i64::try_from((now + args.ttl).as_secs()).context("--ttl is out of range")?;
    let token =
        keys.mint(args.key_id.as_deref(), &Grant { stream: stream.clone(), expires_at, prefix: args.prefix })?;
    match args.base {
        Some(base) => println!("{}/t/{token}/live/{stream}/master.m3u8", base.trim_end_matches('/')),
        None => println!("{token}"),
    }
    Ok(())
}
