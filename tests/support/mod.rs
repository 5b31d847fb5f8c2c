//! A real ladder deployment for the integration tests: a `nats-server -js` on a free port and the services
//! as separate `ladder` processes, talking only through NATS, sharing one data directory. Everything is
//! killed when the [`Stack`] is dropped.
#![allow(dead_code)]

pub mod garage;

use std::{
    io::{BufRead, BufReader},
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ladder_bus::server::{free_port, NatsServer};

pub const LADDER: &str = env!("CARGO_BIN_EXE_ladder");

/// Where a [`Stack`] keeps media: its data directory by default, or an S3 bucket.
#[derive(Default)]
pub struct StackOptions {
    /// `--storage` for segmenter, transcoder and manifest; `None`: `<data>/media`.
    pub storage: Option<String>,
    /// Environment of those services (S3 endpoint and credentials).
    pub storage_env: Vec<(&'static str, String)>,
    /// `--media-base-url` of the manifest.
    pub media_base_url: Option<String>,
    /// `--end-grace` of the manifest in seconds; `None`: 1.
    pub end_grace: Option<u32>,
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    options: StackOptions,
    pub nats_url: String,
    pub srt_port: u16,
    pub http_port: u16,
    services: Vec<(String, Child)>,
    nats: Option<NatsServer>,
    runtime: tokio::runtime::Runtime,
}

impl Stack {
    /// Starts nats-server and the five services.
    pub fn start() -> Stack {
        Stack::start_with(StackOptions::default())
    }

    /// Starts nats-server and the five services, with media where `options` says.
    pub fn start_with(options: StackOptions) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let nats = runtime
            .block_on(NatsServer::start(&dir.path().join("nats"), None))
            .expect("nats-server starts (make test installs it)");
        let mut stack = Stack {
            nats_url: nats.url(),
            srt_port: free_udp_port(),
            http_port: free_port().expect("free port"),
            dir,
            options,
            services: Vec::new(),
            nats: Some(nats),
            runtime,
        };
        for service in ["indexer", "segmenter", "transcoder", "manifest", "ingest"] {
            stack.start_service(service);
        }
        stack.wait_for_http();
        stack
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn start_service(&mut self, service: &str) {
        let data = self.data();
        let storage = self.options.storage.clone().unwrap_or_else(|| data.join("media").display().to_string());
        let storage_env = self.options.storage_env.iter().map(|(k, v)| (*k, v.as_str()));
        let mut command = Command::new(LADDER);
        command.arg(service).env("LADDER_LOG", "info").env("NO_COLOR", "1");
        match service {
            "ingest" => {
                command.args(["--nats", &self.nats_url, "--srt-listen", &format!("127.0.0.1:{}", self.srt_port)])
            }
            "segmenter" => command.args(["--nats", &self.nats_url, "--storage", &storage]).envs(storage_env),
            "transcoder" => command
                .args(["--nats", &self.nats_url, "--workers", "2", "--preset", "ultrafast", "--storage", &storage])
                .envs(storage_env),
            "indexer" => command.args(["--nats", &self.nats_url, "--index"]).arg(data.join("index.db")),
            "manifest" => {
                command
                    .args(["--http-listen", &format!("127.0.0.1:{}", self.http_port), "--index"])
                    .arg(data.join("index.db"))
                    .args(["--storage", &storage])
                    .envs(storage_env);
                let grace = self.options.end_grace.unwrap_or(1).to_string();
                command.args(["--end-grace", &grace]);
                if let Some(base) = &self.options.media_base_url {
                    command.args(["--media-base-url", base]);
                }
                &mut command
            }
            other => panic!("unknown service {other}"),
        };
        let log = std::fs::File::create(data.join(format!("{service}.log"))).expect("log file");
        let child = command
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("ladder binary runs");
        self.services.push((service.to_string(), child));
    }

    /// Kills a service started by [`Stack::start_service`] and waits for it to exit.
    pub fn stop_service(&mut self, service: &str) {
        for (_, child) in self.services.iter_mut().filter(|(name, _)| name == service) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.services.retain(|(name, _)| name != service);
    }

    pub fn wait_for_http(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("manifest did not listen on {} within 20 s:\n{}", self.http_port, self.logs());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// The streamid goes in verbatim: ffmpeg 5.1 does not percent-decode it.
    pub fn srt_url(&self, stream_id: &str) -> String {
        format!("srt://127.0.0.1:{}?streamid={stream_id}&pkt_size=1316", self.srt_port)
    }

    /// GET: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&self.url(path)).call().expect("http request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap_or_default())
    }

    /// Every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (service, _) in &self.services {
            let log = std::fs::read_to_string(self.data().join(format!("{service}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out.push_str(&format!("--- {service} (last lines)\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Runs `ladder events` in the background, collecting its lines with the time each arrived.
    pub fn watch_events(&self, extra: &[&str]) -> Events {
        let mut child = Command::new(LADDER)
            .args(["events", "--nats", &self.nats_url])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ladder events runs");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push((Instant::now(), line));
            }
        });
        Events { child, lines }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.services {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(nats) = self.nats.take() {
            self.runtime.block_on(nats.stop());
        }
    }
}

pub struct Events {
    child: Child,
    pub lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Events {
    pub fn snapshot(&self) -> Vec<(Instant, String)> {
        self.lines.lock().expect("lines").clone()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").expect("udp bind").local_addr().expect("addr").port()
}

/// An ffmpeg publishing a moving test pattern with a tone over SRT, in real time.
pub struct Publisher {
    child: Child,
    pub started: Instant,
}

pub fn publish(url: &str, size: &str, rate: u32, seconds: u32, tone_hz: u32) -> Publisher {
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate={rate}")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency={tone_hz}:sample_rate=48000")])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-bf", "2"])
        .args(["-g", &(rate * 2).to_string(), "-keyint_min", &(rate * 2).to_string(), "-sc_threshold", "0"])
        .args(["-b:v", "2500k", "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs (make test installs it)");
    Publisher { child, started: Instant::now() }
}

/// Publishes as an encoder reconnecting does: if ingest refuses the connection (the name's previous
/// connection is not gone yet), tries again every second, for up to 20 s.
pub fn republish(url: &str, size: &str, rate: u32, seconds: u32, tone_hz: u32) -> Publisher {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut publisher = publish(url, size, rate, seconds, tone_hz);
        std::thread::sleep(Duration::from_secs(1));
        let refused = publisher.child.try_wait().ok().flatten().is_some_and(|status| !status.success());
        if !refused || Instant::now() > deadline {
            return publisher;
        }
    }
}

impl Publisher {
    /// Whether the publisher has stopped (its input is over).
    pub fn is_finished(&mut self) -> bool {
        self.child.try_wait().map_or(true, |status| status.is_some())
    }

    /// Waits for ffmpeg to finish; panics with its stderr if it failed.
    pub fn finish(mut self) -> Instant {
        let status = self.child.wait().expect("ffmpeg waits");
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        assert!(status.success(), "publisher ffmpeg failed: {stderr}");
        Instant::now()
    }
}

/// Polls `check` every 500 ms until it returns Some, or panics after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, stack: &Stack, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", stack.logs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Rendition names of a master playlist's variants, in order (`360p.m3u8` gives `360p`).
pub fn variant_names(master: &str) -> Vec<String> {
    master.lines().filter(|l| l.ends_with(".m3u8")).map(|l| l.trim_end_matches(".m3u8").to_string()).collect()
}

/// Runs ffmpeg/ffprobe with `args`: (success, stdout, stderr).
pub fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().expect("program runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Video packet PTS values of a TS file, in presentation order.
pub fn video_pts(path: &Path) -> Vec<i64> {
    let path = path.to_str().expect("utf-8 path");
    let (ok, out, err) = run(
        "ffprobe",
        &["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts", "-of", "csv=p=0", path],
    );
    assert!(ok, "ffprobe {path}: {err}");
    let mut pts: Vec<i64> = out.lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect();
    pts.sort_unstable();
    pts
}

/// Parses an HLS playlist with an independent parser, the Python `m3u8` package, strictly
/// (tests/hls/parse_playlist.py); panics with its complaint if it refuses the playlist or warns. Returns what
/// the parser found. The Python is `$LADDER_TEST_PYTHON`, or the virtualenv `make test` makes.
pub fn parse_playlist(stack: &Stack, text: &str) -> serde_json::Value {
    let python = std::env::var_os("LADDER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/hls-venv/bin/python"));
    let path = stack.data().join("playlist-to-parse.m3u8");
    std::fs::write(&path, text).expect("write playlist");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hls/parse_playlist.py");
    let (ok, out, err) = run(python.to_str().expect("utf-8 path"), &[script, path.to_str().expect("utf-8 path")]);
    assert!(ok, "the m3u8 parser refuses the playlist ({err}) (make test installs it):\n{text}");
    serde_json::from_str(&out).expect("parser output")
}
