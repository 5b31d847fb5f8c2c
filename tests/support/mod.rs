//! A real ladder deployment for the integration tests: nats-server (one, or a cluster on loopback) and the
//! services as separate `ladder` processes, talking only through NATS, sharing one data directory (its
//! `media/` and one `index.db`). A service may run as several instances, each named (`segmenter-1`), with its
//! own log file (`<data>/<name>.log`), and each can be killed, terminated and restarted with the same command
//! line. Everything is killed when the [`Stack`] is dropped.
#![allow(dead_code)]

pub mod checks;
pub mod compose;
pub mod garage;
pub mod otlp;
pub mod prometheus;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::{BufRead, BufReader, Write},
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use ladder_bus::server::{free_port, NatsCluster, NatsServer};

pub const LADDER: &str = env!("CARGO_BIN_EXE_ladder");

/// The five services, in the order a stack starts them.
pub const SERVICES: [&str; 5] = ["indexer", "segmenter", "transcoder", "manifest", "ingest"];

/// How a [`Stack`] is deployed: where media goes, the NATS topology and how many instances of each service.
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
    /// Nodes of a NATS cluster on loopback; 0 or 1: a single nats-server.
    pub nats_nodes: usize,
    /// Instances to start, per service, in this order; each is named `<service>-<n>`. Empty: one instance of
    /// each of the five services, named after the service.
    pub instances: Vec<(&'static str, usize)>,
    /// The transcoders' default ladder, as the text of a ladder file; `None`: the built-in ladder.
    pub ladder: Option<String>,
    /// Ingest without `--open-publish`: only streams with a key may be published.
    pub keys_required: bool,
    /// `--max-publishers` of every ingest; `None`: the default.
    pub max_publishers: Option<usize>,
    /// `--window` of the manifest; `None`: 6 segments, which the playlist tests count on.
    pub window: Option<usize>,
    /// Every instance serves its Prometheus metrics (`--metrics-listen`) on a free port of its own.
    pub metrics: bool,
    /// Every instance exports its spans to this OTLP/HTTP collector (`--otlp-endpoint`).
    pub otlp_endpoint: Option<String>,
    /// Also start the control API (`ladder api`, token [`API_TOKEN`]) after the five services.
    pub api: bool,
    /// More environment of the manifest (signed playback, request limits).
    pub manifest_env: Vec<(&'static str, String)>,
    /// A single nats-server with the users and permissions of deploy/nats/ladder.conf: every service connects
    /// as its own user, the topology is made first by `ladder setup` as the operator's user `ladder`, and
    /// [`Stack::nats_url`] (operator commands) is that user's.
    pub nats_users: bool,
}

/// The users of deploy/nats/ladder.conf.
pub const NATS_USERS: [&str; 7] = ["ladder", "ingest", "segmenter", "transcoder", "indexer", "manifest", "api"];

/// The password a stack with [`StackOptions::nats_users`] gives `user`.
pub fn nats_password(user: &str) -> String {
    format!("{user}-password-0123")
}

/// A ladder of two renditions that the small test source ([`publish_small`], 320x180) fits, as the text of a
/// ladder file for [`StackOptions::ladder`].
pub const SMALL_LADDER: &str = r#"
[[rendition]]
name = "180p"
height = 180
bitrate = 300000

[[rendition]]
name = "120p"
height = 120
bitrate = 150000
"#;

/// The bearer token of a stack's control API.
pub const API_TOKEN: &str = "test-token-0123456789";

/// The NATS side of a stack.
enum Nats {
    Single(Box<NatsServer>),
    Cluster(NatsCluster),
}

/// One process of a service, with the command line it was started with, so that it can start again.
struct Instance {
    name: String,
    service: String,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    /// The manifest's HTTP port or the ingest's SRT port.
    port: Option<u16>,
    /// Where it serves its metrics, with [`StackOptions::metrics`].
    metrics_port: Option<u16>,
    /// `None` once the test killed or terminated it.
    child: Option<Child>,
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    options: StackOptions,
    /// Every NATS client URL, comma-separated (one for a single server).
    pub nats_url: String,
    /// The SRT port of the first ingest.
    pub srt_port: u16,
    /// The HTTP port of the first manifest.
    pub http_port: u16,
    services: Vec<Instance>,
    /// Instances started so far, per service, to number the next one.
    counts: BTreeMap<String, usize>,
    nats: Option<Nats>,
    runtime: tokio::runtime::Runtime,
}

impl Stack {
    /// Starts nats-server and the five services.
    pub fn start() -> Stack {
        Stack::start_with(StackOptions::default())
    }

    /// Starts NATS and the services as `options` say.
    pub fn start_with(options: StackOptions) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let nats = if options.nats_nodes > 1 {
            let cluster = runtime
                .block_on(NatsCluster::start(&dir.path().join("nats"), options.nats_nodes))
                .expect("nats-server cluster starts (make test installs nats-server)");
            Nats::Cluster(cluster)
        } else if options.nats_users {
            let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/ladder.conf");
            let env = NATS_USERS
                .iter()
                .map(|user| (format!("LADDER_NATS_{}_PASSWORD", user.to_uppercase()), nats_password(user)))
                .collect();
            let mut server = runtime
                .block_on(NatsServer::start_configured(&dir.path().join("nats"), None, Some(&config), env))
                .expect("nats-server starts with deploy/nats/ladder.conf");
            server.check_as(with_user(&server.url(), "ladder"));
            Nats::Single(Box::new(server))
        } else {
            let server = runtime
                .block_on(NatsServer::start(&dir.path().join("nats"), None))
                .expect("nats-server starts (make test installs it)");
            Nats::Single(Box::new(server))
        };
        let nats_url = match &nats {
            Nats::Single(server) if options.nats_users => with_user(&server.url(), "ladder"),
            Nats::Single(server) => server.url(),
            Nats::Cluster(cluster) => cluster.url(),
        };
        if let Some(ladder) = &options.ladder {
            std::fs::write(dir.path().join("default-ladder.toml"), ladder).expect("write the ladder file");
        }
        let instances = options.instances.clone();
        let mut stack = Stack {
            nats_url,
            srt_port: free_udp_port(),
            http_port: free_port().expect("free port"),
            dir,
            options,
            services: Vec::new(),
            counts: BTreeMap::new(),
            nats: Some(nats),
            runtime,
        };
        if stack.options.nats_users {
            let (code, out, err) = stack.ladder(&["setup"]);
            assert_eq!(code, 0, "ladder setup as the operator's user: {out}{err}");
        }
        // One after another, each once it says it serves: the first creates the JetStream streams, consumers and
        // buckets, and the tests are about what happens after start-up. (All at once on a fresh cluster, some
        // instances have exited on a timed-out creation request.)
        if instances.is_empty() {
            for service in SERVICES {
                let name = stack.start_service(service);
                stack.wait_ready(&name);
            }
        } else {
            for (service, count) in instances {
                for _ in 0..count {
                    let name = stack.start_instance(service);
                    stack.wait_ready(&name);
                }
            }
        }
        if stack.options.api {
            let name = stack.start_service("api");
            stack.wait_ready(&name);
        }
        stack.wait_for_http();
        stack
    }

    /// The URL of the first control API.
    pub fn api_url(&self) -> String {
        let port = self.services.iter().find(|i| i.service == "api").and_then(|i| i.port).expect("a stack with an api");
        format!("http://127.0.0.1:{port}")
    }

    /// Waits (up to 60 s) until an instance's log since it last started says it is serving; panics if it exits
    /// first.
    pub fn wait_ready(&self, name: &str) {
        let instance = self.services.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no instance {name}"));
        let marker = match instance.service.as_str() {
            "ingest" => "srt listener started",
            "manifest" => "manifest serving http",
            "api" => "api serving grpc",
            other => &format!("{other} started"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log(name);
            let current = log.rsplit(&format!("{name} started again")).next().unwrap_or_default();
            if current.contains(marker) {
                return;
            }
            if instance.child.as_ref().is_some_and(has_exited) {
                panic!("{name} exited during start-up:\n{log}\n{}", self.logs());
            }
            if Instant::now() > deadline {
                panic!("{name} did not log {marker:?} within 60 s\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Instances that exited by themselves (the test did not kill or stop them).
    pub fn crashed(&self) -> Vec<String> {
        self.services.iter().filter(|i| i.child.as_ref().is_some_and(has_exited)).map(|i| i.name.clone()).collect()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Starts an instance of `service` named after the service (`segmenter`, log `segmenter.log`), or
    /// `<service>-<n>` if that name is taken. Returns its name.
    pub fn start_service(&mut self, service: &str) -> String {
        let name = if self.services.iter().any(|i| i.name == service) {
            self.next_name(service)
        } else {
            *self.counts.entry(service.to_string()).or_default() += 1;
            service.to_string()
        };
        self.launch(service, name)
    }

    /// Starts one more instance of `service`, named `<service>-<n>`, with its own log file (`<name>.log`) and,
    /// for a manifest or an ingest, its own port. Returns its name.
    pub fn start_instance(&mut self, service: &str) -> String {
        let name = self.next_name(service);
        self.launch(service, name)
    }

    fn next_name(&mut self, service: &str) -> String {
        let count = self.counts.entry(service.to_string()).or_default();
        *count += 1;
        let mut n = *count;
        while self.services.iter().any(|i| i.name == format!("{service}-{n}")) {
            n += 1;
        }
        format!("{service}-{n}")
    }

    fn launch(&mut self, service: &str, name: String) -> String {
        let data = self.data();
        let storage = self.options.storage.clone().unwrap_or_else(|| data.join("media").display().to_string());
        let nats = match self.options.nats_users {
            true => self.nats_url_of(service),
            false => self.nats_url.clone(),
        };
        // The first manifest (ingest) gets the stack's port; the others a free one each.
        let port_taken = |port: u16| self.services.iter().any(|i| i.service == service && i.port == Some(port));
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        let mut port = None;
        match service {
            "ingest" => {
                let srt = if port_taken(self.srt_port) { free_udp_port() } else { self.srt_port };
                port = Some(srt);
                push(&["--nats", &nats, "--srt-listen", &format!("127.0.0.1:{srt}")]);
                push(&["--srt-stats-interval-ms", "1000"]);
                if !self.options.keys_required {
                    push(&["--open-publish"]);
                }
                if let Some(max) = self.options.max_publishers {
                    push(&["--max-publishers", &max.to_string()]);
                }
            }
            "segmenter" => push(&["--nats", &nats, "--storage", &storage]),
            "transcoder" => {
                push(&["--nats", &nats, "--workers", "4", "--preset", "ultrafast", "--storage", &storage]);
                if self.options.ladder.is_some() {
                    push(&["--ladder", &data.join("default-ladder.toml").display().to_string()]);
                }
            }
            "indexer" => push(&["--nats", &nats, "--index", &data.join("index.db").display().to_string()]),
            "manifest" => {
                let http = if port_taken(self.http_port) { free_port().expect("free port") } else { self.http_port };
                port = Some(http);
                push(&["--nats", &nats, "--http-listen", &format!("127.0.0.1:{http}")]);
                push(&["--index", &data.join("index.db").display().to_string(), "--storage", &storage]);
                push(&["--end-grace", &self.options.end_grace.unwrap_or(1).to_string()]);
                push(&["--window", &self.options.window.unwrap_or(6).to_string()]);
                if let Some(base) = &self.options.media_base_url {
                    push(&["--media-base-url", base]);
                }
            }
            "api" => {
                let api = free_port().expect("free port");
                port = Some(api);
                push(&["--nats", &nats, "--api-listen", &format!("127.0.0.1:{api}"), "--api-token", API_TOKEN]);
            }
            other => panic!("unknown service {other}"),
        }
        let mut metrics_port = None;
        if self.options.metrics {
            let port = free_port().expect("free port");
            metrics_port = Some(port);
            args.extend(["--metrics-listen".into(), format!("127.0.0.1:{port}").into()]);
        }
        let mut env: Vec<(String, String)> = vec![
            ("LADDER_LOG".into(), "info".into()),
            ("NO_COLOR".into(), "1".into()),
            // How an instance may name itself (in leases and logs); ignored by a service that does not read it.
            ("LADDER_INSTANCE".into(), name.clone()),
        ];
        if let Some(endpoint) = &self.options.otlp_endpoint {
            env.push(("LADDER_OTLP_ENDPOINT".into(), endpoint.clone()));
        }
        if matches!(service, "segmenter" | "transcoder" | "manifest") {
            env.extend(self.options.storage_env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        }
        if service == "manifest" {
            env.extend(self.options.manifest_env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        }
        let mut instance =
            Instance { name: name.clone(), service: service.to_string(), args, env, port, metrics_port, child: None };
        self.spawn(&mut instance, false);
        self.services.push(instance);
        name
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.data().join(format!("{name}.log"))
    }

    /// Starts the process of `instance`; its log is appended to, so a restarted instance keeps its history.
    fn spawn(&self, instance: &mut Instance, again: bool) {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(&instance.name))
            .expect("log file");
        if again {
            let _ = writeln!(log, "{} === test harness: {} started again", utc_now(), instance.name);
        }
        let child = Command::new(LADDER)
            .arg(&instance.service)
            .args(&instance.args)
            .envs(instance.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("ladder binary runs");
        instance.child = Some(child);
    }

    fn instance_mut(&mut self, name: &str) -> &mut Instance {
        let names: Vec<String> = self.services.iter().map(|i| i.name.clone()).collect();
        self.services.iter_mut().find(|i| i.name == name).unwrap_or_else(|| panic!("no instance {name} in {names:?}"))
    }

    fn note(&self, name: &str, what: &str) {
        if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(self.log_path(name)) {
            let _ = writeln!(log, "{} === test harness: {what}", utc_now());
        }
        eprintln!("[stack] {what}");
    }

    /// Names of the instances of `service` that run (were not killed or terminated by the test).
    pub fn running(&self, service: &str) -> Vec<String> {
        self.services.iter().filter(|i| i.service == service && i.child.is_some()).map(|i| i.name.clone()).collect()
    }

    /// Every instance name, in start order.
    /// The SRT URL of ingest instance `name` (its own port), for a publisher that fails over to it.
    pub fn srt_url_of(&self, name: &str, stream_id: &str) -> String {
        let port = self.services.iter().find(|i| i.name == name).and_then(|i| i.port).expect("an ingest with a port");
        format!("srt://127.0.0.1:{port}?streamid={stream_id}&pkt_size=1316")
    }

    /// Every instance's metrics endpoint as (service, instance name, port), with [`StackOptions::metrics`].
    pub fn metrics_targets(&self) -> Vec<(String, String, u16)> {
        self.services.iter().filter_map(|i| Some((i.service.clone(), i.name.clone(), i.metrics_port?))).collect()
    }

    pub fn instances(&self) -> Vec<String> {
        self.services.iter().map(|i| i.name.clone()).collect()
    }

    /// The process id of a running instance.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.services.iter().find(|i| i.name == name).and_then(|i| i.child.as_ref()).map(Child::id)
    }

    /// Kills an instance with SIGKILL and waits for it to exit.
    pub fn kill(&mut self, name: &str) {
        self.note(name, &format!("SIGKILL {name}"));
        let instance = self.instance_mut(name);
        let mut child = instance.child.take().unwrap_or_else(|| panic!("{name} is not running"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops an instance with SIGTERM and waits up to 30 s for it to exit; returns how it exited. Panics (after
    /// a SIGKILL) if it is still running then: shutdown is bounded by a grace period.
    pub fn terminate(&mut self, name: &str) -> ExitStatus {
        self.note(name, &format!("SIGTERM {name}"));
        let instance = self.instance_mut(name);
        let mut child = instance.child.take().unwrap_or_else(|| panic!("{name} is not running"));
        let (ok, _, stderr) = run("kill", &["-TERM", &child.id().to_string()]);
        assert!(ok, "kill -TERM {name}: {stderr}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not exit within 30 s of SIGTERM\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a killed or terminated instance again with the same command line (and port); returns once it
    /// says it is serving (and, for a manifest, accepts connections).
    pub fn restart(&mut self, name: &str) {
        self.note(name, &format!("restart {name}"));
        let index = self.services.iter().position(|i| i.name == name).unwrap_or_else(|| panic!("no instance {name}"));
        let mut instance = self.services.remove(index);
        assert!(instance.child.is_none(), "{name} is still running");
        self.spawn(&mut instance, true);
        let http = (instance.service == "manifest").then_some(instance.port).flatten();
        self.services.insert(index, instance);
        self.wait_ready(name);
        if let Some(port) = http {
            self.wait_listening(port);
        }
    }

    /// Kills every instance of a service with SIGKILL, waits for them to exit and forgets them.
    pub fn stop_service(&mut self, service: &str) {
        for instance in self.services.iter_mut().filter(|i| i.service == service) {
            if let Some(mut child) = instance.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.services.retain(|i| i.service != service);
    }

    /// Waits for every running manifest to accept connections.
    pub fn wait_for_http(&self) {
        let ports: Vec<u16> = self
            .services
            .iter()
            .filter(|i| i.service == "manifest" && i.child.is_some())
            .filter_map(|i| i.port)
            .collect();
        for port in ports {
            self.wait_listening(port);
        }
    }

    fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("manifest did not listen on {port} within 20 s:\n{}", self.logs());
    }

    /// The HTTP port requests go to: the first manifest's while it runs, else another running manifest's.
    fn serving_port(&self) -> u16 {
        let manifests: Vec<&Instance> =
            self.services.iter().filter(|i| i.service == "manifest" && i.child.is_some()).collect();
        if manifests.is_empty() || manifests.iter().any(|i| i.port == Some(self.http_port)) {
            return self.http_port;
        }
        manifests[0].port.unwrap_or(self.http_port)
    }

    /// A URL on a running manifest (the first one while it runs).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.serving_port())
    }

    /// A URL on one manifest instance.
    pub fn instance_url(&self, name: &str, path: &str) -> String {
        let port = self.services.iter().find(|i| i.name == name).and_then(|i| i.port).expect("a manifest instance");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// The SRT port of ingest instance `name`.
    pub fn srt_port_of(&self, name: &str) -> u16 {
        self.services.iter().find(|i| i.name == name).and_then(|i| i.port).expect("an ingest with a port")
    }

    /// The streamid goes in verbatim: ffmpeg 5.1 does not percent-decode it.
    pub fn srt_url(&self, stream_id: &str) -> String {
        format!("srt://127.0.0.1:{}?streamid={stream_id}&pkt_size=1316", self.srt_port)
    }

    /// GET: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let (status, body) = get_url(&self.url(path));
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A request with headers: (status, response headers with lowercased names, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, BTreeMap<String, String>, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = self.url(path);
        let mut response = match method {
            "GET" => {
                let mut request = agent.get(&url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            "OPTIONS" => {
                let mut request = agent.options(&url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            other => panic!("{other}"),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let names: BTreeMap<String, String> = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_ascii_lowercase(), value.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (response.status().as_u16(), names, body)
    }

    /// Every instance's log and the NATS servers' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut logs: Vec<(String, PathBuf)> =
            self.services.iter().map(|i| (i.name.clone(), self.log_path(&i.name))).collect();
        let nodes = match &self.nats {
            Some(Nats::Cluster(cluster)) => cluster.size(),
            _ => 0,
        };
        if nodes == 0 {
            logs.push(("nats-server".into(), self.data().join("nats/nats-server.log")));
        }
        for i in 0..nodes {
            logs.push((format!("nats-server n{i}"), self.data().join(format!("nats/n{i}/nats-server.log"))));
        }
        let mut out = String::new();
        let crashed = self.crashed();
        for (name, path) in logs {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let exited = if crashed.contains(&name) { ", EXITED by itself" } else { "" };
            out.push_str(&format!("--- {name} (last lines{exited})\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The URL a service connects to NATS with: with [`StackOptions::nats_users`], as its own user.
    pub fn nats_url_of(&self, user: &str) -> String {
        match self.options.nats_users {
            true => with_user(without_user(&self.nats_url), user),
            false => self.nats_url.clone(),
        }
    }

    /// The log of nats-server (a single server).
    pub fn nats_log(&self) -> String {
        std::fs::read_to_string(self.data().join("nats/nats-server.log")).unwrap_or_default()
    }

    /// The whole log of an instance.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Runs `ladder <args> --nats <stack>` (an operator command) to the end: (exit code, stdout, stderr).
    pub fn ladder(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(LADDER)
            .args(args)
            .args(["--nats", &self.nats_url])
            .env("NO_COLOR", "1")
            .env_remove("LADDER_STREAM_KEY")
            .output()
            .expect("ladder runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
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

    /// Records every `part.ready.<stream>` message as it is published (a core subscription, in its own thread),
    /// with the time it arrived here: what a blocking playlist request is measured against.
    pub fn watch_parts(&self, stream: &str) -> PartWatch {
        let servers: Vec<String> = self.nats_url.split(',').map(str::to_string).collect();
        let subject = ladder_proto::parts::subject(stream);
        let parts = Arc::new(Mutex::new(Vec::new()));
        let sink = parts.clone();
        let (subscribed, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let client = async_nats::connect(servers).await.expect("NATS for the part watch");
                let mut messages = client.subscribe(subject).await.expect("subscribe to parts");
                client.flush().await.expect("flush");
                let _ = subscribed.send(());
                while let Some(message) = messages.next().await {
                    let at = Instant::now();
                    let part = <ladder_proto::PartReady as prost::Message>::decode(message.payload.as_ref())
                        .expect("a PartReady");
                    sink.lock().expect("parts").push((at, part));
                }
            });
        });
        ready.recv_timeout(Duration::from_secs(10)).expect("the part watch subscribes");
        PartWatch { parts }
    }

    // --- NATS

    /// Kills node `i` of the NATS cluster with SIGKILL.
    pub fn kill_nats_node(&mut self, i: usize) {
        eprintln!("[stack] SIGKILL nats node n{i}");
        match self.nats.as_mut() {
            Some(Nats::Cluster(cluster)) => self.runtime.block_on(cluster.kill(i)),
            _ => panic!("the stack has no NATS cluster"),
        }
    }

    /// Starts node `i` of the NATS cluster again, on the same ports and store; returns once JetStream answers.
    pub fn restart_nats_node(&mut self, i: usize) {
        eprintln!("[stack] restart nats node n{i}");
        let result = match self.nats.as_mut() {
            Some(Nats::Cluster(cluster)) => self.runtime.block_on(cluster.restart(i)),
            _ => panic!("the stack has no NATS cluster"),
        };
        if let Err(e) = result {
            panic!("nats node n{i} restarts: {e}\n{}", self.logs());
        }
    }

    /// Kills the single nats-server with SIGKILL and starts it again on the same port and file store.
    pub fn restart_nats(&mut self) {
        eprintln!("[stack] restart nats-server");
        let result = match self.nats.as_mut() {
            Some(Nats::Single(server)) => self.runtime.block_on(server.restart()),
            _ => panic!("the stack has no single nats-server"),
        };
        if let Err(e) = result {
            panic!("nats-server restarts: {e}\n{}", self.logs());
        }
    }

    /// Runs `f` with a JetStream context on the stack's NATS, within `timeout`.
    fn with_jetstream<T, F>(&self, timeout: Duration, f: impl FnOnce(async_nats::jetstream::Context) -> F) -> Option<T>
    where
        F: std::future::Future<Output = Option<T>>,
    {
        let servers: Vec<String> = self.nats_url.split(',').map(str::to_string).collect();
        let options = nats_options(&self.runtime, &self.nats_url);
        on_jetstream(&self.runtime, options, servers, timeout, f)
    }

    /// The value of a key in a JetStream key-value bucket, if both exist.
    pub fn kv_get(&self, bucket: &str, key: &str) -> Option<String> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.with_jetstream(Duration::from_secs(5), |js| kv_value(js, bucket, key))
    }

    /// What the segmenter lease of `stream` says (the holder), if there is one.
    pub fn segmenter_lease(&self, stream: &str) -> Option<String> {
        self.kv_get(ladder_bus::kv::SEGMENTER_LEASES, stream)
    }

    /// The segmenter instance holding the lease of `stream`: the one the lease names (the segmenter names itself
    /// `<host>-<pid>-<random>`; `LADDER_INSTANCE` is the test's name for it), or whose log names the holder.
    pub fn segmenter_owner(&self, stream: &str) -> Option<String> {
        let lease = self.segmenter_lease(stream)?;
        let holder = lease.trim();
        let tokens: Vec<&str> = holder.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        let segmenters: Vec<&Instance> =
            self.services.iter().filter(|i| i.service == "segmenter" && i.child.is_some()).collect();
        let named = |i: &&&Instance| {
            holder == i.name
                || holder.match_indices(&i.name).any(|(at, _)| {
                    !holder[at + i.name.len()..].starts_with(|c: char| c.is_ascii_digit())
                        && !holder[..at].ends_with(|c: char| c.is_ascii_alphanumeric())
                })
        };
        let by_pid = |i: &&&Instance| {
            let pid = i.child.as_ref().map(|c| c.id().to_string()).unwrap_or_default();
            tokens.contains(&pid.as_str())
        };
        let in_log = |i: &&&Instance| !holder.is_empty() && self.log(&i.name).contains(holder);
        segmenters
            .iter()
            .find(named)
            .or_else(|| segmenters.iter().find(by_pid))
            .or_else(|| segmenters.iter().find(in_log))
            .map(|i| i.name.clone())
    }

    /// Every event retained in the event log, in order.
    pub fn events(&self) -> Vec<ladder_proto::Event> {
        let events = self.with_jetstream(Duration::from_secs(60), read_events);
        events.unwrap_or_else(|| panic!("cannot read the event log within 60 s\n{}", self.logs()))
    }
}

/// Runs `f` with a JetStream context of a client connected to `servers` with `options` (2 s to connect), on
/// `runtime`, for at most `timeout`: `None` if it cannot connect or `f` gives up or takes longer.
pub fn on_jetstream<T, F>(
    runtime: &tokio::runtime::Runtime,
    options: async_nats::ConnectOptions,
    servers: Vec<String>,
    timeout: Duration,
    f: impl FnOnce(async_nats::jetstream::Context) -> F,
) -> Option<T>
where
    F: std::future::Future<Output = Option<T>>,
{
    runtime.block_on(async {
        tokio::time::timeout(timeout, async {
            let client = options.connection_timeout(Duration::from_secs(2)).connect(servers).await.ok()?;
            f(async_nats::jetstream::new(client)).await
        })
        .await
        .ok()
        .flatten()
    })
}

/// The value of `key` in the JetStream key-value bucket `bucket`, if both exist.
pub async fn kv_value(js: async_nats::jetstream::Context, bucket: String, key: String) -> Option<String> {
    let store = js.get_key_value(bucket).await.ok()?;
    let value = store.get(key).await.ok()??;
    Some(String::from_utf8_lossy(&value).into_owned())
}

/// Every event retained in the event log of `js`, in order; `None` if it cannot be read to its end.
pub async fn read_events(js: async_nats::jetstream::Context) -> Option<Vec<ladder_proto::Event>> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    let mut stream = js.get_stream(ladder_bus::topology::EVENTS_STREAM).await.ok()?;
    let last = stream.info().await.ok()?.state.last_sequence;
    let mut events = Vec::new();
    if last == 0 {
        return Some(events);
    }
    let consumer = stream
        .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .ok()?;
    let mut messages = consumer.messages().await.ok()?;
    while let Some(Ok(message)) = messages.next().await {
        let sequence = message.info().ok()?.stream_sequence;
        let event = ladder_proto::Event::decode(&message.subject, &message.payload)
            .unwrap_or_else(|e| panic!("undecodable event on {}: {e}", message.subject));
        events.push(event);
        if sequence >= last {
            return Some(events);
        }
    }
    None
}

/// What the shared checks ([`checks::check_stream`], [`eventually`]) need of a running deployment: a [`Stack`] of
/// processes here, or a compose project ([`compose::Compose`]).
pub trait Deployment {
    /// A URL on the manifest.
    fn url(&self, path: &str) -> String;
    /// GET on the manifest: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let (status, body) = get_url(&self.url(path));
        (status, String::from_utf8_lossy(&body).into_owned())
    }
    /// Every event retained in the event log, in order.
    fn events(&self) -> Vec<ladder_proto::Event>;
    /// The recent logs of every part, for failure messages.
    fn logs(&self) -> String;
    /// A directory of the test's own, for the files the checks write.
    fn data(&self) -> PathBuf;
    /// The parts that exited (or restarted) by themselves.
    fn crashed(&self) -> Vec<String>;
    /// Where objects are stored as files, when they are (then the checks also list them).
    fn local_media(&self) -> Option<PathBuf>;
}

impl Deployment for Stack {
    fn url(&self, path: &str) -> String {
        Stack::url(self, path)
    }
    fn get(&self, path: &str) -> (u16, String) {
        Stack::get(self, path)
    }
    fn events(&self) -> Vec<ladder_proto::Event> {
        Stack::events(self)
    }
    fn logs(&self) -> String {
        Stack::logs(self)
    }
    fn data(&self) -> PathBuf {
        Stack::data(self)
    }
    fn crashed(&self) -> Vec<String> {
        Stack::crashed(self)
    }
    fn local_media(&self) -> Option<PathBuf> {
        self.options.storage.is_none().then(|| self.data().join("media"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // LADDER_TEST_KEEP=1 keeps the data directory (logs, media, index) of a failed test to look into.
        if std::thread::panicking() && std::env::var_os("LADDER_TEST_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("[stack] kept {}", self.dir.path().display());
        }
        for instance in &mut self.services {
            if let Some(mut child) = instance.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        match self.nats.take() {
            Some(Nats::Single(server)) => self.runtime.block_on((*server).stop()),
            Some(Nats::Cluster(mut cluster)) => self.runtime.block_on(async {
                for i in 0..cluster.size() {
                    cluster.kill(i).await;
                }
            }),
            None => {}
        }
    }
}

/// Whether a child process has exited (a zombie not reaped yet, or gone), read from /proc so that `&self` will do.
fn has_exited(child: &Child) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .map_or(true, |stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])))
}

/// Now as the services' logs write it (`2026-11-25T06:46:04.525171Z`), so harness notes sort among their lines.
pub fn utc_now() -> String {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (days, seconds) = ((since.as_secs() / 86_400) as i64, since.as_secs() % 86_400);
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        since.subsec_micros()
    )
}

/// GET a URL: (status, body).
pub fn get_url(url: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_vec().unwrap_or_default())
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

/// `part.ready` messages as they were seen: see [`Stack::watch_parts`].
pub struct PartWatch {
    parts: Arc<Mutex<Vec<(Instant, ladder_proto::PartReady)>>>,
}

impl PartWatch {
    /// When the part a playlist lists at `uri` (which ends with its object key) was first announced (a redo
    /// announces it again). Waits a little for it: the manifest may hear of a part before this subscription
    /// does (NATS orders messages per subscription, not across them).
    pub fn announced(&self, uri: &str) -> Option<Instant> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let parts = self.parts.lock().expect("parts");
            let found = parts.iter().find(|(_, p)| !p.object_key.is_empty() && uri.ends_with(&p.object_key));
            if let Some((at, _)) = found {
                return Some(*at);
            }
            drop(parts);
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
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
    publish_at(url, size, rate, "2500k", seconds, tone_hz)
}

/// A small, cheap publisher for the tests that run many processes at once: 320x180 at 25 fps and 400 kb/s,
/// an IDR every 2 s.
pub fn publish_small(url: &str, seconds: u32, tone_hz: u32) -> Publisher {
    publish_at(url, "320x180", 25, "400k", seconds, tone_hz)
}

/// [`publish`] at a video bitrate of `bitrate` (ffmpeg syntax, `400k`).
pub fn publish_at(url: &str, size: &str, rate: u32, bitrate: &str, seconds: u32, tone_hz: u32) -> Publisher {
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate={rate}")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency={tone_hz}:sample_rate=48000")])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-bf", "2"])
        .args(["-g", &(rate * 2).to_string(), "-keyint_min", &(rate * 2).to_string(), "-sc_threshold", "0"])
        .args(["-b:v", bitrate, "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", url])
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
    retry_refused(|| publish(url, size, rate, seconds, tone_hz))
}

/// [`republish`] with [`publish_small`]'s settings.
pub fn republish_small(url: &str, seconds: u32, tone_hz: u32) -> Publisher {
    retry_refused(|| publish_small(url, seconds, tone_hz))
}

fn retry_refused(start: impl Fn() -> Publisher) -> Publisher {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut publisher = start();
        std::thread::sleep(Duration::from_secs(1));
        let refused = publisher.child.try_wait().ok().flatten().is_some_and(|status| !status.success());
        if !refused || Instant::now() > deadline {
            return publisher;
        }
    }
}

impl Publisher {
    /// Waits up to `timeout` for ffmpeg to exit by itself (say, once ingest went away), then kills it.
    pub fn stop(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !self.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the publisher has stopped (its input is over).
    pub fn is_finished(&mut self) -> bool {
        self.child.try_wait().map_or(true, |status| status.is_some())
    }

    /// A publisher started some other way (a pipeline through srt-live-transmit, say), whose stderr is piped.
    pub fn from_child(child: Child) -> Publisher {
        Publisher { child, started: Instant::now() }
    }

    /// Waits for ffmpeg to finish: whether it succeeded, and what it printed.
    pub fn outcome(mut self) -> (bool, String) {
        let status = self.child.wait().expect("ffmpeg waits");
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        (status.success(), stderr)
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

impl Drop for Publisher {
    /// A test that fails midway leaves no ffmpeg behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 500 ms until it returns Some, or panics after `timeout` with `what`.
pub fn eventually<T>(
    timeout: Duration,
    what: &str,
    stack: &impl Deployment,
    mut check: impl FnMut() -> Option<T>,
) -> T {
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
pub fn parse_playlist(stack: &impl Deployment, text: &str) -> serde_json::Value {
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

/// A script of tests/browser (playwright-core driving Debian's chromium) started with `args`; wait for its
/// report with [`browser_report`].
pub fn browser_script(script: &str, args: &[&str]) -> Child {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "playwright-core and chromium are missing: make test installs them (scripts/install-browser-deps.sh)"
    );
    Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs")
}

/// The one JSON line a browser script prints; panics with it, the script's stderr and the stack's logs if the
/// script failed.
pub fn browser_report(script: Child, stack: &impl Deployment) -> serde_json::Value {
    let output = script.wait_with_output().expect("the browser script finishes");
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("player: {report}");
    assert!(
        output.status.success(),
        "the player failed: {report}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        stack.logs()
    );
    serde_json::from_str(report.trim()).expect("one JSON report")
}

/// Connect options with the credentials `url` carries (see ladder_bus::auth), as a service would use them.
pub fn nats_options(runtime: &tokio::runtime::Runtime, url: &str) -> async_nats::ConnectOptions {
    let (_, credentials) = ladder_bus::auth::parse(url, None).expect("a NATS URL");
    runtime.block_on(credentials.apply(async_nats::ConnectOptions::new())).expect("credentials")
}

/// A NATS server URL without its user information.
fn without_user(url: &str) -> &str {
    &url[url.find('@').map_or(0, |at| at + 1)..]
}

/// `url` (`nats://host:port`, or just `host:port`) with `user` and its [`nats_password`].
fn with_user(url: &str, user: &str) -> String {
    let address = url.trim_start_matches("nats://");
    format!("nats://{user}:{}@{address}", nats_password(user))
}
