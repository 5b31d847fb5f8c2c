//! SRT at the front door (issue 11), against a real stack of `ladder` processes and real libsrt peers: ffmpeg
//! (libsrt), srt-live-transmit, and `ladder_srt::Caller` (libsrt, which reports the reject code a publisher
//! sees). Every case runs beside a healthy publisher on another name that must end with all its chunks,
//! continuous and decoding cleanly ([`check_stream`]).

mod support;

use std::{
    net::{SocketAddr, UdpSocket},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ladder_srt::{Caller, CallerConfig, RejectReason, SrtError};
use support::{
    checks::{check_stream, Sent},
    eventually, publish_small, Publisher, Stack, StackOptions,
};

/// One small rendition: the cases are about ingest, the transcoder only has to keep up.
const LADDER_TOML: &str = r#"
[[rendition]]
name = "180p"
height = 180
bitrate = 300000
"#;
const VARIANTS: [&str; 1] = ["180p"];

/// One test at a time: each one is a whole deployment.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const MAIN_KEY: &str = "healthy-main-key-0123";
const KEYED_KEY: &str = "keyed-streams-key-4567";

fn set_key(stack: &Stack, stream: &str, key: &str) {
    let (code, _, stderr) = stack.ladder(&["stream", "set-key", stream, "--key", key]);
    assert_eq!(code, 0, "ladder stream set-key {stream}: {stderr}");
}

/// Connects a libsrt caller to `port`.
fn call(port: u16, stream_id: &str, passphrase: Option<&str>, key_length: Option<u32>) -> Result<Caller, SrtError> {
    let mut config = CallerConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), stream_id);
    config.passphrase = passphrase.map(str::to_string);
    config.key_length = key_length;
    Caller::connect(&config)
}

/// A caller that must be refused with `expected`; a [`RejectReason::CONFLICT`] while the name's previous
/// session is still ending is waited out (up to 15 s).
fn assert_refused(port: u16, stream_id: &str, passphrase: Option<&str>, expected: RejectReason) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call(port, stream_id, passphrase, None) {
            Err(SrtError::Rejected(reason)) if reason == expected => return,
            Err(SrtError::Rejected(reason)) if reason == RejectReason::CONFLICT && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(other) => panic!("{stream_id} with {passphrase:?}: expected {expected}, got {other}"),
            Ok(_) => panic!("{stream_id} with {passphrase:?}: expected {expected}, it was accepted"),
        }
    }
}

/// A caller that must be accepted; refusals as [`RejectReason::CONFLICT`] (an earlier session of the name
/// still ending) are waited out for up to 20 s: a probe that hung up in the middle of its handshake keeps
/// the name reserved until the listener gives the handshake up (ladder_srt's `PENDING_TIMEOUT`, 10 s), and
/// then the claim it may have taken runs out (`LEASE_TTL`, 3 s).
fn call_until_accepted(port: u16, stream_id: &str, passphrase: Option<&str>) -> Caller {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call(port, stream_id, passphrase, None) {
            Ok(caller) => return caller,
            Err(SrtError::Rejected(reason)) if reason == RejectReason::CONFLICT && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("{stream_id} on port {port}: expected to be accepted, got {e}"),
        }
    }
}

/// An ffmpeg publisher that must be refused: it exits with an error within a few seconds, and libsrt tells it
/// why (`expected`, as ffmpeg prints libsrt's reject reason).
fn assert_ffmpeg_refused(url: &str, expected: &str) {
    let mut publisher = publish_small(url, 4, 330);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !publisher.is_finished() {
        assert!(Instant::now() < deadline, "ffmpeg to {url} was not refused");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (success, stderr) = publisher.outcome();
    assert!(!success, "ffmpeg to {url} succeeded, it should have been refused");
    assert!(stderr.contains(expected), "ffmpeg to {url} was refused, but not for {expected:?}: {stderr}");
}

/// ffmpeg's test pattern piped into srt-live-transmit as the SRT caller. srt-live-transmit 1.5.1 does not exit
/// when its input ends, so it is stopped (SIGTERM: it closes the connection) 2 s after ffmpeg is done; the
/// script exits with ffmpeg's status.
fn srt_live_transmit(url: &str, seconds: u32) -> Publisher {
    let script = format!(
        "fifo=$(mktemp -u) && mkfifo \"$fifo\" || exit 1
         srt-live-transmit -q -a:no -chunk:1316 file://con '{url}' < \"$fifo\" & slt=$!
         ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc2=size=320x180:rate=25 \
           -f lavfi -i sine=frequency=550:sample_rate=48000 -t {seconds} -c:v libx264 -preset ultrafast \
           -pix_fmt yuv420p -g 50 -keyint_min 50 -sc_threshold 0 -b:v 400k -c:a aac -b:a 128k -f mpegts - \
           > \"$fifo\"
         status=$?
         sleep 2
         kill -0 $slt 2>/dev/null || {{ echo 'srt-live-transmit exited early' >&2; status=1; }}
         kill $slt; wait $slt; rm -f \"$fifo\"
         exit $status"
    );
    let child = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs ffmpeg | srt-live-transmit (make test installs srt-tools)");
    Publisher::from_child(child)
}

// === flood ===

/// xorshift: garbage needs no cryptographic randomness.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// An SRT handshake control packet (UDT header + 48-byte handshake) with the given fields and random
/// extension blocks after it.
fn bogus_handshake(noise: &mut Noise, version: u32, kind: u32, cookie: u32) -> Vec<u8> {
    let mut packet = Vec::with_capacity(128);
    packet.extend_from_slice(&0x8000_0000u32.to_be_bytes()); // control, type 0: handshake
    packet.extend_from_slice(&0u32.to_be_bytes());
    packet.extend_from_slice(&(noise.next() as u32).to_be_bytes()); // timestamp
    packet.extend_from_slice(&0u32.to_be_bytes()); // destination socket: the listener
    packet.extend_from_slice(&version.to_be_bytes());
    packet.extend_from_slice(&(noise.next() as u32).to_be_bytes()); // encryption + extension flags
    packet.extend_from_slice(&(noise.next() as u32 & 0x7fff_ffff).to_be_bytes()); // initial sequence
    packet.extend_from_slice(&1500u32.to_be_bytes());
    packet.extend_from_slice(&8192u32.to_be_bytes());
    packet.extend_from_slice(&kind.to_be_bytes());
    packet.extend_from_slice(&(noise.next() as u32).to_be_bytes()); // socket id
    packet.extend_from_slice(&cookie.to_be_bytes());
    packet.extend_from_slice(&[127, 0, 0, 1]);
    packet.extend_from_slice(&[0; 12]);
    // Extension blocks: a type and a length in words, then garbage, possibly lying about its length.
    for _ in 0..(noise.next() % 4) {
        let kind = (noise.next() % 8) as u16;
        let words = (noise.next() % 300) as u16;
        packet.extend_from_slice(&kind.to_be_bytes());
        packet.extend_from_slice(&words.to_be_bytes());
        let len = (noise.next() % 64) as usize * 4;
        packet.extend(noise.bytes(len));
    }
    packet
}

/// For `duration`: garbage datagrams, bogus handshakes (induction and conclusion, random cookies and
/// extensions) and real libsrt callers with invalid streamids, all at `port`. Returns what was sent.
fn flood(port: u16, duration: Duration) -> (u64, u64, u64) {
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let raw = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let (mut garbage, mut handshakes) = (0u64, 0u64);
        let end = Instant::now() + duration;
        while Instant::now() < end {
            for _ in 0..200 {
                let len = 1 + (noise.next() % 1500) as usize;
                let _ = socket.send_to(&noise.bytes(len), target);
                garbage += 1;
                let (version, kind) = if noise.next().is_multiple_of(2) { (4, 1) } else { (5, 0xffff_ffff) };
                let cookie = noise.next() as u32;
                let _ = socket.send_to(&bogus_handshake(&mut noise, version, kind, cookie), target);
                handshakes += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (garbage, handshakes)
    });
    let callers: Vec<_> = (0..8)
        .map(|thread| {
            std::thread::spawn(move || {
                let end = Instant::now() + duration;
                let mut refused = 0u64;
                let mut n: u64 = 0;
                while Instant::now() < end {
                    n += 1;
                    let stream_id =
                        if n.is_multiple_of(2) { format!("bad/name-{thread}-{n}") } else { "#!::m=request".into() };
                    match call(port, &stream_id, None, None) {
                        Err(SrtError::Rejected(_)) => refused += 1,
                        Err(e) => panic!("a bad caller should be refused at the handshake, got {e}"),
                        Ok(_) => panic!("{stream_id} was accepted"),
                    }
                }
                refused
            })
        })
        .collect();
    let (garbage, handshakes) = raw.join().expect("flood thread");
    let refused = callers.into_iter().map(|c| c.join().expect("caller thread")).sum();
    (garbage, handshakes, refused)
}

// === tests ===

/// The interoperability matrix of issue 11 beside a healthy, encrypted publisher that must come through
/// whole: keyed ffmpeg callers with every pbkeylen, refusals with their reject codes, srt-live-transmit
/// (plain and with FEC), latencies from 20 ms to 2 s, transtype=file, a key set while a publisher is live
/// and then rotated, a flood of garbage on the port, and the live statistics in `ladder events`.
#[test]
fn every_kind_of_publisher_beside_a_healthy_one() {
    let _serial = serial();
    let stack = Stack::start_with(StackOptions {
        instances: vec![("indexer", 1), ("segmenter", 1), ("transcoder", 1), ("manifest", 1), ("ingest", 1)],
        ladder: Some(LADDER_TOML.into()),
        ..StackOptions::default()
    });
    let port = stack.srt_port;
    let events = stack.watch_events(&[]);
    for stream in ["main", "keyed-default", "keyed-16", "keyed-24", "keyed-32"] {
        set_key(&stack, stream, if stream == "main" { MAIN_KEY } else { KEYED_KEY });
    }
    let (code, names, _) = stack.ladder(&["stream", "keys"]);
    assert_eq!(code, 0);
    assert!(!names.contains(MAIN_KEY) && names.contains("keyed-16"), "keys lists names, never keys: {names}");

    let healthy = publish_small(&format!("{}&passphrase={MAIN_KEY}&pbkeylen=32", stack.srt_url("main")), 50, 440);
    eventually(Duration::from_secs(20), "the healthy stream's first chunk", &stack, || {
        events.snapshot().iter().any(|(_, line)| line.starts_with("chunk.uploaded.main ")).then_some(())
    });

    // 1. Accepted: keyed ffmpeg callers with every key length, srt-live-transmit plain and with FEC, and
    //    latencies from 20 ms to 2 s.
    let mut accepted = Vec::new();
    for (stream, pbkeylen) in [("keyed-default", ""), ("keyed-16", "16"), ("keyed-24", "24"), ("keyed-32", "32")] {
        let mut url = format!("{}&passphrase={KEYED_KEY}", stack.srt_url(stream));
        if !pbkeylen.is_empty() {
            url.push_str(&format!("&pbkeylen={pbkeylen}"));
        }
        accepted.push((stream, publish_small(&url, 6, 330)));
    }
    let slt = srt_live_transmit(&format!("srt://127.0.0.1:{port}?streamid=slt&latency=200"), 6);
    let fec = srt_live_transmit(&format!("srt://127.0.0.1:{port}?streamid=fec&packetfilter=fec,cols:10,rows:5"), 6);
    accepted.push(("lat20", publish_small(&format!("{}&latency=20000", stack.srt_url("lat20")), 6, 330)));
    accepted.push(("lat2s", publish_small(&format!("{}&latency=2000000", stack.srt_url("lat2s")), 6, 330)));
    for (stream, publisher) in accepted {
        eprintln!("waiting for the publisher of {stream}");
        publisher.finish();
    }
    slt.finish();
    fec.finish();

    // 2. Refused, with the reject code the publisher sees.
    assert_refused(port, "keyed-16", Some("not-the-right-key"), RejectReason::BAD_SECRET);
    assert_refused(port, "keyed-16", None, RejectReason::UNSECURE);
    assert_refused(port, "open-stream", Some(KEYED_KEY), RejectReason::UNSECURE);
    assert_refused(port, "main", Some(MAIN_KEY), RejectReason::CONFLICT);
    assert_refused(port, "bad.name", None, RejectReason::BAD_REQUEST);
    assert_refused(port, "#!::r=main,m=request", None, RejectReason::BAD_MODE);
    // The same refusals as ffmpeg meets them, and a file-mode caller.
    let unsecure = "Password required or unexpected";
    assert_ffmpeg_refused(
        &format!("{}&passphrase=not-the-right-key", stack.srt_url("keyed-24")),
        "Incorrect passphrase",
    );
    assert_ffmpeg_refused(&stack.srt_url("keyed-24"), unsecure);
    assert_ffmpeg_refused(&format!("{}&passphrase={KEYED_KEY}", stack.srt_url("open-stream")), unsecure);
    assert_ffmpeg_refused(&format!("{}&transtype=file", stack.srt_url("filemode")), "MessageAPI/StreamAPI collision");
    let log = stack.log("ingest-1");
    for reject in ["reject=BADSECRET", "reject=UNSECURE", "reject=CONFLICT", "reject=BAD_REQUEST", "reject=BAD_MODE"] {
        assert!(log.contains(reject), "ingest logs each refusal with its code ({reject}):\n{log}");
    }
    assert!(
        log.contains("streamid=\"filemode\" code=12 reject=MESSAGEAPI") && log.contains("transtype=file"),
        "the file-mode caller is refused as such:\n{log}"
    );

    // 3. A flood of garbage and bogus handshakes while `main` is live.
    let (garbage, handshakes, refused) = flood(port, Duration::from_secs(5));
    eprintln!("flood: {garbage} garbage datagrams, {handshakes} bogus handshakes, {refused} bad callers refused");
    assert!(refused > 10, "the bad callers got answers during the flood: {refused}");

    // 4. A key set while a publisher is live, then rotated: the live one goes on, the next one needs the
    //    current key.
    let late = publish_small(&stack.srt_url("late"), 8, 660);
    eventually(Duration::from_secs(10), "the late stream to start", &stack, || {
        events.snapshot().iter().any(|(_, line)| line.starts_with("stream.started.late ")).then_some(())
    });
    set_key(&stack, "late", "late-key-number-one");
    late.finish();
    assert_refused(port, "late", None, RejectReason::UNSECURE);
    publish_small(&format!("{}&passphrase=late-key-number-one", stack.srt_url("late")), 4, 660).finish();
    set_key(&stack, "late", "late-key-number-two");
    std::thread::sleep(Duration::from_secs(1));
    assert_refused(port, "late", Some("late-key-number-one"), RejectReason::BAD_SECRET);
    publish_small(&format!("{}&passphrase=late-key-number-two", stack.srt_url("late")), 4, 660).finish();

    // 5. The live statistics of `main` in `ladder events`.
    let stats = eventually(Duration::from_secs(10), "an srt statistics line for main", &stack, || {
        events.snapshot().into_iter().map(|(_, line)| line).find(|line| line.starts_with("stats.srt.main "))
    });
    assert!(stats.contains(" rtt=") && stats.contains("ms ") && stats.contains(" lost="), "{stats}");
    assert!(stats.contains(" rate=") && stats.contains("Mb/s"), "{stats}");

    healthy.finish();
    check_stream(&stack, "main", &[Sent::Whole(50.0)], &VARIANTS);
    for stream in ["keyed-default", "keyed-16", "keyed-24", "keyed-32", "slt", "fec", "lat20", "lat2s"] {
        check_stream(&stack, stream, &[Sent::Whole(6.0)], &VARIANTS);
    }
    check_stream(&stack, "late", &[Sent::Whole(8.0), Sent::Whole(4.0), Sent::Whole(4.0)], &VARIANTS);
    let crashed = stack.crashed();
    assert!(crashed.is_empty(), "{crashed:?}");
}

/// Keys are shared by every ingest through NATS and apply within a second or two; without open publishing
/// a stream needs a key; a name live on one ingest is refused on another; `--max-publishers` holds.
#[test]
fn keys_reach_every_ingest_and_names_stay_single() {
    let _serial = serial();
    let mut stack = Stack::start_with(StackOptions {
        instances: vec![("indexer", 1), ("manifest", 1), ("ingest", 2)],
        keys_required: true,
        max_publishers: Some(2),
        ..StackOptions::default()
    });
    let first = stack.srt_port_of("ingest-1");
    let second = stack.srt_port_of("ingest-2");

    // No key, no open publishing: refused on both.
    assert_refused(first, "cam", None, RejectReason::FORBIDDEN);
    assert_refused(second, "cam", None, RejectReason::FORBIDDEN);

    // A key set through one NATS client is in force on both ingests within 2 s.
    let set_at = Instant::now();
    set_key(&stack, "cam", "camera-key-0123456");
    // The gate checks the key before the name: a CONFLICT (the other ingest's probe session still ending)
    // also means the key is known here.
    let mut waited = Duration::ZERO;
    for port in [first, second] {
        loop {
            match call(port, "cam", Some("camera-key-0123456"), None) {
                Ok(_) | Err(SrtError::Rejected(RejectReason::CONFLICT)) => break,
                Err(SrtError::Rejected(RejectReason::FORBIDDEN)) if set_at.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("the new key is not in force on port {port} after {:?}: {e}", set_at.elapsed()),
            }
        }
        waited = waited.max(set_at.elapsed());
    }
    eprintln!("a new key was in force on both ingests {waited:?} after set-key");

    // Live on ingest-1: refused on ingest-2 as a conflict, before any passphrase is checked.
    let live = call_until_accepted(first, "cam", Some("camera-key-0123456"));
    live.send(&[0x47; 188 * 7]).expect("send");
    eventually(Duration::from_secs(5), "the claim of cam", &stack, || stack.kv_get("ladder_publishers", "cam"));
    std::thread::sleep(Duration::from_millis(500));
    match call(second, "cam", Some("camera-key-0123456"), None) {
        Err(SrtError::Rejected(reason)) => assert_eq!(reason, RejectReason::CONFLICT, "{reason}"),
        // The handshake sees the claims through a view that follows the bucket, best effort (CI saw it behind
        // once); the claim taken after the handshake decides, and then closes the connection.
        Ok(caller) => {
            eventually(Duration::from_secs(10), "ingest-2 refusing cam after the handshake", &stack, || {
                stack.log("ingest-2").contains("already has a live publisher").then_some(())
            });
            drop(caller);
            assert_eq!(
                stack.kv_get("ladder_publishers", "cam").map(|holder| holder.contains(&format!(":{first}\""))),
                Some(true),
                "the claim stays with ingest-1 (listening on {first})"
            );
        }
        other => panic!("a name live on another ingest must be refused, got {other:?}"),
    }

    // --max-publishers 2 on ingest-1: `cam` and one more; the third is refused as overload.
    set_key(&stack, "cam2", "camera-key-0123456");
    set_key(&stack, "cam3", "camera-key-0123456");
    std::thread::sleep(Duration::from_secs(1));
    let second_live = call_until_accepted(first, "cam2", Some("camera-key-0123456"));
    match call(first, "cam3", Some("camera-key-0123456"), None) {
        Err(SrtError::Rejected(reason)) => assert_eq!(reason, RejectReason::OVERLOAD, "{reason}"),
        other => panic!("a third publisher must be refused, got {other:?}"),
    }
    drop(second_live);
    drop(live);

    // Removed: refused again on both within 2 s.
    let (code, _, stderr) = stack.ladder(&["stream", "remove-key", "cam3"]);
    assert_eq!(code, 0, "{stderr}");
    std::thread::sleep(Duration::from_secs(2));
    assert_refused(second, "cam3", Some("camera-key-0123456"), RejectReason::FORBIDDEN);
    let log = stack.log("ingest-1");
    assert!(log.contains("reject=OVERLOAD") && log.contains("reject=FORBIDDEN"), "{log}");
    let crashed = stack.crashed();
    assert!(crashed.is_empty(), "{crashed:?}");
    stack.stop_service("ingest");
}
