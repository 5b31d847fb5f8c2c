//! `srt_send`: many SRT publishers from one small process, for `make bench`'s ingest capacity step.
//!
//! ```text
//! cargo build --release -p ladder-srt --example srt_send
//! target/release/examples/srt_send stream.ts srt://127.0.0.1:9000 --count 256 --prefix s --duration 20
//! ```
//!
//! The TS file is read once and cut into 1316-byte payloads (7 TS packets, as ffmpeg sends them). Every
//! connection (streamid `<prefix>-<i>`) sends those payloads at the file's real-time rate: a payload is due
//! when the file's PCR says its first byte is (or at a constant `--bitrate` when given), and the payloads
//! due within one `--burst-ms` (40 ms, a frame at 25 fps) leave together at its end, as an encoder sends one
//! frame at a time. The pattern matters to the receiver, which wakes once per burst: a payload at a time
//! (`--burst-ms 0`) costs it several times more, and `ffmpeg -re -c copy` sends about 8 bursts a second
//! (`--burst-ms 120` is close to it). Connections start `--spread` seconds apart in all (one GOP by default),
//! so that their bursts and keyframes do not fall on the same instants, as with independent encoders.
//!
//! A file shorter than `--duration` is looped, and its timestamps then jump back at each loop (the
//! receiver sees a discontinuity): give it a file at least as long as the duration.
//!
//! Output, one line per connection on stdout (`<streamid> sent <bytes> bytes in <payloads> payloads`,
//! `<streamid> refused: <reason>` or `<streamid> failed after <bytes> bytes: <error>`), then a summary
//! line. Exits 1 if any connection was refused or failed, 2 on bad arguments or an unreadable file.
//!
//! Why not one ffmpeg per publisher: ffmpeg demuxes and remuxes every packet and costs a few percent of a
//! core per stream, so a few dozen of them saturate a small machine before the server under test does.
//! Here a few threads pace every connection from one copy of the file in memory.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    process::ExitCode,
    sync::{Barrier, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use ladder_srt::{Caller, CallerConfig, SrtError};

const TS_PACKET: usize = 188;
const PAYLOAD: usize = 1316;
/// PCR ticks per second.
const PCR_HZ: f64 = 27_000_000.0;
/// A PCR step larger than this (or backwards) is a discontinuity, not elapsed time.
const MAX_PCR_STEP_S: f64 = 1.0;

const USAGE: &str = "usage: srt_send <file.ts> <srt://host:port> [--count N] [--prefix NAME] [--duration SECONDS]
                [--bitrate BITS_PER_S] [--spread SECONDS] [--threads N] [--latency-ms MS]
                [--passphrase KEY] [--burst-ms MS] [--tick-ms MS]

  --count N           connections, streamids <prefix>-0 .. <prefix>-(N-1) (default 1)
  --prefix NAME       streamid prefix (default srt-send)
  --duration SECONDS  how long each connection sends (default: the file's duration)
  --bitrate RATE      pace by bytes at this rate (2000000, 2000k, 2M) instead of by the file's PCR
  --spread SECONDS    connection i starts i/N of this after the first (default 2, one GOP at 2 s)
  --threads N         sending threads, each pacing its share of the connections (default: cores, at most N)
  --latency-ms MS     SRT latency asked for (default 120)
  --passphrase KEY    SRT passphrase of every connection (default none)
  --burst-ms MS       payloads due within this interval leave together (default 40; 0: each at its time)
  --tick-ms MS        a sending thread wakes at most once per tick (default 1)";

#[derive(Debug)]
struct Args {
    file: String,
    addr: SocketAddr,
    count: usize,
    prefix: String,
    duration: Option<Duration>,
    bitrate: Option<f64>,
    spread: Duration,
    threads: usize,
    latency: Duration,
    passphrase: Option<String>,
    burst: Duration,
    tick: Duration,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("srt_send: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let media = match Media::read(&args.file, args.bitrate) {
        Ok(media) => media,
        Err(e) => {
            eprintln!("srt_send: {}: {e:#}", args.file);
            return ExitCode::from(2);
        }
    };
    let duration = args.duration.unwrap_or(Duration::from_secs_f64(media.period_s));
    let schedule = media.schedule(duration.as_secs_f64(), args.burst.as_secs_f64());
    eprintln!(
        "srt_send: {} connections to {} for {:.1} s: {} ({:.1} s, {:.3} Mb/s){}",
        args.count,
        args.addr,
        duration.as_secs_f64(),
        args.file,
        media.period_s,
        media.rate_bps / 1e6,
        match args.bitrate {
            Some(rate) => format!(", paced by bytes at {:.3} Mb/s", rate / 1e6),
            None => ", paced by its PCR".to_string(),
        }
    );
    if duration.as_secs_f64() > media.period_s + 0.001 {
        eprintln!(
            "srt_send: warning: the file is shorter than the duration; it is looped and its timestamps jump back \
             at every loop"
        );
    }
    let outcomes = run(&args, &media, &schedule);
    report(&args, &outcomes)
}

// === arguments ===

fn parse_args(raw: Vec<String>) -> Result<Args> {
    let mut positional = Vec::new();
    let mut args = Args {
        file: String::new(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        count: 1,
        prefix: "srt-send".to_string(),
        duration: None,
        bitrate: None,
        spread: Duration::from_secs(2),
        threads: 0,
        latency: Duration::from_millis(120),
        passphrase: None,
        burst: Duration::from_millis(40),
        tick: Duration::from_millis(1),
    };
    let mut raw = raw.into_iter();
    while let Some(arg) = raw.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if !arg.starts_with("--") {
            positional.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        let value = match inline {
            Some(value) => value,
            None => raw.next().with_context(|| format!("{flag} needs a value"))?,
        };
        let bad = |what: &str| format!("{flag} {value:?}: {what}");
        match flag.as_str() {
            "--count" => args.count = value.parse().ok().filter(|n| *n > 0).with_context(|| bad("a count > 0"))?,
            "--prefix" => args.prefix = value,
            "--duration" => args.duration = Some(seconds(&value).with_context(|| bad("seconds > 0"))?),
            "--bitrate" => args.bitrate = Some(bitrate(&value).with_context(|| bad("a rate such as 2M"))?),
            "--spread" => args.spread = seconds_or_zero(&value).with_context(|| bad("seconds"))?,
            "--threads" => args.threads = value.parse().ok().filter(|n| *n > 0).with_context(|| bad("a count > 0"))?,
            "--latency-ms" => args.latency = Duration::from_millis(value.parse().with_context(|| bad("milliseconds"))?),
            "--passphrase" => args.passphrase = Some(value),
            "--burst-ms" => args.burst = Duration::from_millis(value.parse().with_context(|| bad("milliseconds"))?),
            "--tick-ms" => {
                args.tick = Duration::from_millis(value.parse().ok().filter(|n| *n > 0).with_context(|| bad("ms > 0"))?)
            }
            _ => bail!("unknown option {flag}"),
        }
    }
    let [file, url] =
        <[String; 2]>::try_from(positional).map_err(|_| anyhow::anyhow!("expected <file.ts> <srt://host:port>"))?;
    args.file = file;
    args.addr = srt_addr(&url)?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if args.threads == 0 {
        args.threads = cores;
    }
    args.threads = args.threads.min(args.count);
    Ok(args)
}

fn seconds_or_zero(value: &str) -> Option<Duration> {
    let s: f64 = value.parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s))
}

fn seconds(value: &str) -> Option<Duration> {
    seconds_or_zero(value).filter(|d| !d.is_zero())
}

/// `2000000`, `2000k`, `2M`, `2.5M`: bits per second.
fn bitrate(value: &str) -> Option<f64> {
    let (number, scale) = match value.char_indices().last()? {
        (i, 'k' | 'K') => (&value[..i], 1e3),
        (i, 'm' | 'M') => (&value[..i], 1e6),
        _ => (value, 1.0),
    };
    let rate = number.parse::<f64>().ok()? * scale;
    (rate.is_finite() && rate >= 8.0 * PAYLOAD as f64).then_some(rate)
}

/// `srt://host:port`, with no query: the streamid comes from `--prefix`.
fn srt_addr(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("srt://").with_context(|| format!("{url:?} is not an srt://host:port URL"))?;
    ensure!(!rest.contains(['?', '/']), "{url:?}: no path or query, the streamids come from --prefix");
    rest.to_socket_addrs()
        .with_context(|| format!("{url:?}: cannot resolve"))?
        .next()
        .with_context(|| format!("{url:?}: no address"))
}

// === the file ===

/// The file in memory, cut into payloads, each with the time it is due (seconds from the first PCR).
struct Media {
    data: Vec<u8>,
    /// Due time of each payload, seconds, non-decreasing.
    due: Vec<f64>,
    /// The file's length in time: where a second loop would start.
    period_s: f64,
    /// The file's average rate, bits per second.
    rate_bps: f64,
}

impl Media {
    fn read(path: &str, bitrate: Option<f64>) -> Result<Media> {
        let data = std::fs::read(path).context("cannot read")?;
        ensure!(data.len() >= TS_PACKET, "empty");
        ensure!(data.len() % TS_PACKET == 0, "{} bytes is not a whole number of TS packets", data.len());
        if let Some(bad) = data.chunks(TS_PACKET).position(|packet| packet[0] != 0x47) {
            bail!("no TS sync byte at packet {bad}: not a transport stream of 188-byte packets");
        }
        let packets = data.len() / TS_PACKET;
        let packet_times = match bitrate {
            Some(rate) => {
                let step = (TS_PACKET * 8) as f64 / rate;
                (0..packets).map(|p| p as f64 * step).collect()
            }
            None => pcr_times(&data).context("cannot pace by PCR (give --bitrate)")?,
        };
        let step = average_step(&packet_times);
        let period_s = packet_times.last().copied().unwrap_or(0.0) + step;
        let due = packet_times.iter().step_by(PAYLOAD / TS_PACKET).copied().collect();
        let rate_bps = data.len() as f64 * 8.0 / period_s;
        Ok(Media { data, due, period_s, rate_bps })
    }

    fn payload(&self, index: usize) -> &[u8] {
        let start = index * PAYLOAD;
        &self.data[start..(start + PAYLOAD).min(self.data.len())]
    }

    /// Every payload to send within `duration` s, looping the file if needed: (due seconds, payload index).
    /// With a `burst` (seconds), a payload is due at the end of the burst interval it falls in.
    fn schedule(&self, duration: f64, burst: f64) -> Vec<(f64, usize)> {
        let mut schedule = Vec::new();
        let mut offset = 0.0;
        loop {
            for (index, due) in self.due.iter().enumerate() {
                let at = offset + due;
                if at >= duration {
                    return schedule;
                }
                let at = if burst > 0.0 { ((at - 1e-9) / burst).ceil().max(0.0) * burst } else { at };
                schedule.push((at, index));
            }
            offset += self.period_s;
        }
    }
}

/// Seconds per TS packet on average.
fn average_step(times: &[f64]) -> f64 {
    match times {
        [first, .., last] if last > first => (last - first) / (times.len() - 1) as f64,
        _ => 0.0,
    }
}

/// The PCR of a TS packet, in 27 MHz ticks, if it carries one.
fn pcr(packet: &[u8]) -> Option<u64> {
    let adaptation = (packet[3] >> 4) & 0b10 != 0;
    if !adaptation || packet[4] < 7 || packet[5] & 0x10 == 0 {
        return None;
    }
    let b = |i: usize| u64::from(packet[i]);
    let base = (b(6) << 25) | (b(7) << 17) | (b(8) << 9) | (b(9) << 1) | (b(10) >> 7);
    let extension = ((b(10) & 1) << 8) | b(11);
    Some(base * 300 + extension)
}

fn pid(packet: &[u8]) -> u16 {
    (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2])
}

/// The time each TS packet is due, in seconds from the first PCR: interpolated between the PCRs of the
/// first PID that carries them, extrapolated at the average rate before the first and after the last; a
/// PCR that goes back or jumps (a concatenated or looped file) continues at the average rate.
fn pcr_times(data: &[u8]) -> Result<Vec<f64>> {
    let packets: Vec<&[u8]> = data.chunks(TS_PACKET).collect();
    let pcr_pid = packets.iter().find(|p| pcr(p).is_some()).map(|p| pid(p)).context("no PCR in the file")?;
    let marks: Vec<(usize, u64)> = packets
        .iter()
        .enumerate()
        .filter(|(_, p)| pid(p) == pcr_pid)
        .filter_map(|(i, p)| pcr(p).map(|pcr| (i, pcr)))
        .collect();
    ensure!(marks.len() >= 2, "fewer than two PCRs in the file");
    // Seconds per packet over the regular steps, for the gaps that are not.
    let regular =
        |a: &(usize, u64), b: &(usize, u64)| b.1 > a.1 && ((b.1 - a.1) as f64 / PCR_HZ) <= MAX_PCR_STEP_S && b.0 > a.0;
    let (mut seconds, mut count) = (0.0, 0usize);
    for pair in marks.windows(2) {
        if regular(&pair[0], &pair[1]) {
            seconds += (pair[1].1 - pair[0].1) as f64 / PCR_HZ;
            count += pair[1].0 - pair[0].0;
        }
    }
    ensure!(count > 0 && seconds > 0.0, "the PCRs never advance");
    let step = seconds / count as f64;
    // The time of each PCR packet, continuous across discontinuities.
    let mut mark_times = vec![(marks[0].0, 0.0)];
    for pair in marks.windows(2) {
        let last = mark_times.last().map_or(0.0, |m| m.1);
        let elapsed = if regular(&pair[0], &pair[1]) {
            (pair[1].1 - pair[0].1) as f64 / PCR_HZ
        } else {
            (pair[1].0 - pair[0].0) as f64 * step
        };
        mark_times.push((pair[1].0, last + elapsed));
    }
    let mut times = Vec::with_capacity(packets.len());
    let mut next = 0; // the first mark at or after the current packet
    for p in 0..packets.len() {
        while next < mark_times.len() && mark_times[next].0 < p {
            next += 1;
        }
        let time = match (next.checked_sub(1).map(|i| mark_times[i]), mark_times.get(next)) {
            (_, Some(&(at, t))) if at == p => t,
            (Some((a, ta)), Some(&(b, tb))) => ta + (tb - ta) * (p - a) as f64 / (b - a) as f64,
            (None, Some(&(b, tb))) => (tb - (b - p) as f64 * step).max(0.0),
            (Some((a, ta)), None) => ta + (p - a) as f64 * step,
            (None, None) => 0.0,
        };
        times.push(time);
    }
    Ok(times)
}

// === sending ===

#[derive(Debug)]
enum Outcome {
    Sent { bytes: u64, payloads: u64 },
    Refused(String),
    Failed { bytes: u64, error: String },
}

struct Connection {
    index: usize,
    caller: Caller,
    /// When this connection's first payload is due, from the common start.
    offset: Duration,
    next: usize,
    bytes: u64,
}

fn stream_id(args: &Args, index: usize) -> String {
    format!("{}-{index}", args.prefix)
}

/// Connects every connection, then paces all of them from `args.threads` threads; one outcome per connection.
fn run(args: &Args, media: &Media, schedule: &[(f64, usize)]) -> Vec<Outcome> {
    let barrier = Barrier::new(args.threads);
    let start: OnceLock<Instant> = OnceLock::new();
    let connect_started = Instant::now();
    let mut outcomes: Vec<Option<Outcome>> = (0..args.count).map(|_| None).collect();
    let per_thread: Vec<Vec<(usize, Outcome)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads)
            .map(|thread| {
                let (barrier, start) = (&barrier, &start);
                scope.spawn(move || {
                    let mine: Vec<usize> = (thread..args.count).step_by(args.threads).collect();
                    let mut done = Vec::new();
                    let mut live = Vec::new();
                    for index in mine {
                        let mut config = CallerConfig::new(args.addr, &stream_id(args, index));
                        config.latency = args.latency;
                        config.passphrase.clone_from(&args.passphrase);
                        match Caller::connect(&config) {
                            Ok(caller) => {
                                let offset = args.spread.mul_f64(index as f64 / args.count as f64);
                                live.push(Connection { index, caller, offset, next: 0, bytes: 0 });
                            }
                            Err(SrtError::Rejected(reason)) => done.push((index, Outcome::Refused(reason.to_string()))),
                            Err(e) => done.push((index, Outcome::Failed { bytes: 0, error: e.to_string() })),
                        }
                    }
                    // Every thread starts the clock together, once all connections are up.
                    barrier.wait();
                    let start = *start.get_or_init(Instant::now);
                    done.extend(pace(live, media, schedule, start, args.tick));
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    if let Some(start) = start.get() {
        eprintln!("srt_send: connected in {:.2} s", start.duration_since(connect_started).as_secs_f64());
    }
    for (index, outcome) in per_thread.into_iter().flatten() {
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Failed { bytes: 0, error: "sending thread panicked".into() }))
        .collect()
}

/// Sends every due payload of every connection, then sleeps until the next one is due, or for `tick` if
/// that is sooner: a thread with many connections wakes at most once per tick.
fn pace(
    mut live: Vec<Connection>,
    media: &Media,
    schedule: &[(f64, usize)],
    start: Instant,
    tick: Duration,
) -> Vec<(usize, Outcome)> {
    let mut done = Vec::new();
    while !live.is_empty() {
        let now = Instant::now();
        let mut wake = None::<Instant>;
        let mut i = 0;
        while i < live.len() {
            let connection = &mut live[i];
            let mut failed = None;
            while let Some(&(due, payload)) = schedule.get(connection.next) {
                let at = start + connection.offset + Duration::from_secs_f64(due);
                if at > now {
                    wake = Some(wake.map_or(at, |wake| wake.min(at)));
                    break;
                }
                let bytes = media.payload(payload);
                if let Err(e) = connection.caller.send(bytes) {
                    failed = Some(e.to_string());
                    break;
                }
                connection.next += 1;
                connection.bytes += bytes.len() as u64;
            }
            let finished = connection.next >= schedule.len();
            if failed.is_some() || finished {
                let connection = live.swap_remove(i);
                let outcome = match failed {
                    Some(error) => Outcome::Failed { bytes: connection.bytes, error },
                    None => Outcome::Sent { bytes: connection.bytes, payloads: connection.next as u64 },
                };
                done.push((connection.index, outcome));
                // Closed here, when its last payload has been handed to libsrt.
                drop(connection.caller);
                continue;
            }
            i += 1;
        }
        let Some(wake) = wake else { continue };
        let wake = wake.max(now + tick);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
    }
    done
}

fn report(args: &Args, outcomes: &[Outcome]) -> ExitCode {
    let (mut sent, mut refused, mut failed, mut bytes) = (0, 0, 0, 0u64);
    for (index, outcome) in outcomes.iter().enumerate() {
        let name = stream_id(args, index);
        match outcome {
            Outcome::Sent { bytes: b, payloads } => {
                sent += 1;
                bytes += b;
                println!("{name} sent {b} bytes in {payloads} payloads");
            }
            Outcome::Refused(reason) => {
                refused += 1;
                println!("{name} refused: {reason}");
            }
            Outcome::Failed { bytes: b, error } => {
                failed += 1;
                bytes += b;
                println!("{name} failed after {b} bytes: {error}");
            }
        }
    }
    println!("summary: {} connections: {sent} sent, {refused} refused, {failed} failed; {bytes} bytes", outcomes.len());
    if refused + failed > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_read_with_suffixes() {
        assert_eq!(bitrate("2M"), Some(2e6));
        assert_eq!(bitrate("2000k"), Some(2e6));
        assert_eq!(bitrate("2000000"), Some(2e6));
        assert_eq!(bitrate("1"), None, "less than one payload per second");
        assert_eq!(bitrate("x"), None);
    }

    #[test]
    fn srt_urls_name_a_host_and_port_only() {
        assert_eq!(srt_addr("srt://127.0.0.1:9000").ok(), Some(SocketAddr::from(([127, 0, 0, 1], 9000))));
        assert!(srt_addr("srt://127.0.0.1:9000?streamid=a").is_err());
        assert!(srt_addr("udp://127.0.0.1:9000").is_err());
    }

    /// A TS packet on `pid`, with a PCR if given.
    fn packet(pid: u16, pcr: Option<u64>) -> Vec<u8> {
        let mut p = vec![0xff; TS_PACKET];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        match pcr {
            Some(pcr) => {
                let (base, extension) = (pcr / 300, pcr % 300);
                p[3] = 0x30;
                p[4] = 7;
                p[5] = 0x10;
                p[6] = (base >> 25) as u8;
                p[7] = (base >> 17) as u8;
                p[8] = (base >> 9) as u8;
                p[9] = (base >> 1) as u8;
                p[10] = (((base & 1) << 7) as u8) | 0x7e | ((extension >> 8) as u8);
                p[11] = extension as u8;
            }
            None => p[3] = 0x10,
        }
        p
    }

    #[test]
    fn packets_are_due_at_their_interpolated_pcr() -> Result<()> {
        // PCR every 4 packets, 10 ms apart; the first one at 1.4 s.
        let mut data = vec![];
        for i in 0..12u64 {
            let pcr = (i % 4 == 0).then(|| 27_000_000 * 14 / 10 + 270_000 * i / 4);
            data.extend(packet(if pcr.is_some() { 256 } else { 257 }, pcr));
        }
        let times = pcr_times(&data)?;
        assert_eq!(times.len(), 12);
        assert!((times[0] - 0.0).abs() < 1e-9);
        assert!((times[2] - 0.005).abs() < 1e-9, "{times:?}");
        assert!((times[8] - 0.020).abs() < 1e-9, "{times:?}");
        assert!((times[11] - 0.0275).abs() < 1e-9, "after the last PCR at the average rate: {times:?}");
        Ok(())
    }

    #[test]
    fn a_pcr_that_goes_back_continues_at_the_average_rate() -> Result<()> {
        let pcrs = [0u64, 270_000, 540_000, 0, 270_000];
        let data: Vec<u8> = pcrs.iter().flat_map(|pcr| packet(256, Some(*pcr))).collect();
        let times = pcr_times(&data)?;
        let expected = [0.0, 0.01, 0.02, 0.03, 0.04];
        for (t, e) in times.iter().zip(expected) {
            assert!((t - e).abs() < 1e-9, "{times:?}");
        }
        Ok(())
    }

    #[test]
    fn a_short_file_is_looped_to_fill_the_duration() {
        let media = Media { data: vec![0; PAYLOAD * 2], due: vec![0.0, 0.5], period_s: 1.0, rate_bps: 0.0 };
        let schedule = media.schedule(2.2, 0.0);
        assert_eq!(schedule, vec![(0.0, 0), (0.5, 1), (1.0, 0), (1.5, 1), (2.0, 0)]);
    }

    #[test]
    fn payloads_due_within_a_burst_leave_at_its_end() {
        let media =
            Media { data: vec![0; PAYLOAD * 4], due: vec![0.0, 0.010, 0.040, 0.041], period_s: 0.08, rate_bps: 0.0 };
        let schedule = media.schedule(0.08, 0.04);
        let due: Vec<f64> = schedule.iter().map(|(at, _)| (at * 1000.0).round()).collect();
        assert_eq!(due, vec![0.0, 40.0, 40.0, 80.0]);
    }
}
