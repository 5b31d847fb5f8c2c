//! deploy/compose for real, for tests/deploy.rs: the Docker engine (started if none answers), the offline images
//! (deploy/docker/prepare.sh with this build's `ladder`, then `up --build`), the SQLite index, and the project
//! as one of its own (`laddertest<pid>`) on free host ports. Dropped: `down -v`, and the engine stopped if this
//! started it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use ladder_bus::server::free_port as try_free_port;

fn free_port() -> u16 {
    try_free_port().expect("a free port")
}

use super::{free_udp_port, kv_value, on_jetstream, read_events, run, Deployment, LADDER, SMALL_LADDER};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The compose files, in order: the deployment, the offline images, the SQLite index.
const FILES: [&str; 3] = [
    "deploy/compose/docker-compose.yml",
    "deploy/compose/docker-compose.offline.yml",
    "deploy/compose/docker-compose.sqlite.yml",
];
/// The token of the deployment's control API.
const API_TOKEN: &str = "compose-test-token-0123456789";

pub struct Compose {
    pub project: String,
    /// `docker compose` where the v2 plugin is there, else `docker-compose`.
    program: Vec<String>,
    /// `-f` arguments: [`FILES`] and the test's own override (the small ladder, NATS on the host's loopback).
    files: Vec<String>,
    env: Vec<(String, String)>,
    pub srt_port: u16,
    pub http_port: u16,
    pub prometheus_port: u16,
    nats_port: u16,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    /// Restart counts once everything was healthy, and the containers the test killed since.
    baseline: BTreeMap<String, u64>,
    killed: Mutex<BTreeSet<String>>,
    /// The engine, if this started it (stopped when dropped, after the project is down).
    dockerd: Option<Engine>,
    down: bool,
    /// How long each step took, for the test's report.
    pub timings: Vec<(String, Duration)>,
}

impl Compose {
    /// Starts the engine if needed, builds the images and brings the project up; returns once every ladder
    /// service and every NATS node is healthy.
    pub fn up() -> Compose {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut timings = Vec::new();
        let started = Instant::now();
        let dockerd = start_engine(dir.path());
        timings.push(("engine".to_string(), started.elapsed()));

        let started = Instant::now();
        let (ok, out, err) = run(&format!("{ROOT}/deploy/docker/prepare.sh"), &[LADDER]);
        assert!(ok, "deploy/docker/prepare.sh:\n{out}{err}");
        timings.push(("base image and build contexts".to_string(), started.elapsed()));

        let program = if run("docker", &["compose", "version"]).0 {
            vec!["docker".to_string(), "compose".to_string()]
        } else {
            vec!["docker-compose".to_string()]
        };
        let ladder_file = dir.path().join("ladder.toml");
        std::fs::write(&ladder_file, SMALL_LADDER).expect("ladder file");
        let nats_port = free_port();
        let own = dir.path().join("test.yml");
        std::fs::write(
            &own,
            format!(
                "services:\n  transcoder:\n    environment:\n      LADDER_LADDER: /etc/ladder/ladder.toml\n    \
                 volumes: [\"{}:/etc/ladder/ladder.toml:ro\"]\n  nats1:\n    ports: [\"127.0.0.1:{nats_port}:4222\"]\n",
                ladder_file.display()
            ),
        )
        .expect("override");
        let mut files: Vec<String> = Vec::new();
        for file in FILES.iter().map(|f| format!("{ROOT}/{f}")).chain([own.display().to_string()]) {
            files.extend(["-f".to_string(), file]);
        }
        let (srt_port, http_port, prometheus_port) = (free_udp_port(), free_port(), free_port());
        let env = vec![
            ("LADDER_SRT_PORT".to_string(), srt_port.to_string()),
            ("LADDER_HTTP_PORT".to_string(), http_port.to_string()),
            ("LADDER_PROMETHEUS_PORT".to_string(), prometheus_port.to_string()),
            ("LADDER_API_PORT".to_string(), free_port().to_string()),
            ("LADDER_S3_PORT".to_string(), free_port().to_string()),
            ("LADDER_SCYLLA_PORT".to_string(), free_port().to_string()),
            ("LADDER_API_TOKEN".to_string(), API_TOKEN.to_string()),
        ];
        let mut compose = Compose {
            project: format!("laddertest{}", std::process::id()),
            program,
            files,
            env,
            srt_port,
            http_port,
            prometheus_port,
            nats_port,
            dir,
            runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
            baseline: BTreeMap::new(),
            killed: Mutex::new(BTreeSet::new()),
            dockerd,
            down: false,
            timings,
        };

        let started = Instant::now();
        let (ok, log) = compose.compose(&["up", "-d", "--build"], Duration::from_secs(900));
        assert!(ok, "{} up:\n{}\n{}", compose.program.join(" "), tail(&log, 60), compose.logs());
        compose.timings.push(("build and up".to_string(), started.elapsed()));
        let started = Instant::now();
        compose.wait_healthy(&[], Duration::from_secs(240));
        compose.timings.push(("healthy".to_string(), started.elapsed()));
        compose.baseline = compose.restart_counts();
        compose
    }

    /// Runs the compose program on the project with `args`, for at most `timeout`: (success, its output).
    pub fn compose(&self, args: &[&str], timeout: Duration) -> (bool, String) {
        let log = self.dir.path().join("compose.log");
        let file = std::fs::File::create(&log).expect("compose log");
        let mut child = Command::new(&self.program[0])
            .args(&self.program[1..])
            .args(["-p", &self.project])
            .args(&self.files)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("docker compose runs (make test installs docker-compose)");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(status) => (status.success(), out),
            None => (false, format!("{out}\n(still running after {timeout:?}: killed)")),
        }
    }

    /// The project's containers (all, running or not) of `service`, or of every service with `None`.
    pub fn containers(&self, service: Option<&str>) -> Vec<String> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let mut args = vec!["ps", "-a", "--filter", project.as_str(), "--format", "{{.Names}}"];
        let service = service.map(|s| format!("label=com.docker.compose.service={s}"));
        if let Some(service) = &service {
            args.extend(["--filter", service.as_str()]);
        }
        let (_, out, _) = run("docker", &args);
        let mut names: Vec<String> = out.lines().map(str::to_string).collect();
        names.sort();
        names
    }

    fn inspect(&self, container: &str, format: &str) -> String {
        run("docker", &["inspect", "-f", format, container]).1.trim().to_string()
    }

    fn restart_counts(&self) -> BTreeMap<String, u64> {
        let containers = self.containers(None);
        containers
            .into_iter()
            .map(|c| {
                let count = self.inspect(&c, "{{.RestartCount}}").parse().unwrap_or(0);
                (c, count)
            })
            .collect()
    }

    /// Waits until every container with a healthcheck is healthy, and every other long-running one is running
    /// (the one-shot garage-init and setup have exited 0), `except` those named.
    pub fn wait_healthy(&self, except: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for container in self.containers(None).iter().filter(|c| !except.contains(&c.as_str())) {
                let state =
                    self.inspect(container, "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}");
                let ready = if container.contains("garage-init") || container.contains("setup") {
                    state.starts_with("exited/") && self.inspect(container, "{{.State.ExitCode}}") == "0"
                } else {
                    state == "running/healthy" || state == "running/"
                };
                if !ready {
                    waiting.push(format!("{container}: {state}"));
                }
            }
            if waiting.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("not healthy after {timeout:?}: {waiting:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Kills the process of `container` with SIGKILL, as a crash would (`docker kill` would count as a stop,
    /// after which the restart policy does not apply). Its restart policy brings it back.
    pub fn crash(&self, container: &str) {
        let pid = self.inspect(container, "{{.State.Pid}}");
        assert!(pid.parse::<u32>().is_ok_and(|p| p > 0), "{container} runs (pid {pid:?})");
        self.killed.lock().expect("killed").insert(container.to_string());
        let (ok, _, err) = run("kill", &["-9", &pid]);
        assert!(ok, "kill -9 {pid} ({container}): {err}");
    }

    /// How many times `container` was restarted since it started.
    pub fn restarts(&self, container: &str) -> u64 {
        self.inspect(container, "{{.RestartCount}}").parse().unwrap_or(0)
    }

    /// What the segmenter lease of `stream` says: the holder, `<host>-<pid>-<random>`.
    pub fn segmenter_lease(&self, stream: &str) -> Option<String> {
        self.kv_get(ladder_bus::kv::SEGMENTER_LEASES, stream)
    }

    /// The segmenter container holding the lease of `stream`: the one whose host name (the container id) the
    /// holder starts with.
    pub fn segmenter_owner(&self, stream: &str) -> Option<String> {
        let holder = self.segmenter_lease(stream)?;
        self.containers(Some("segmenter")).into_iter().find(|c| {
            let host = self.inspect(c, "{{.Config.Hostname}}");
            !host.is_empty() && holder.contains(&host)
        })
    }

    fn with_jetstream<T, F>(&self, timeout: Duration, f: impl FnOnce(async_nats::jetstream::Context) -> F) -> Option<T>
    where
        F: std::future::Future<Output = Option<T>>,
    {
        // Only the published node: the others' addresses are inside the Docker network.
        // As the operator's user of deploy/nats/ladder.conf, with the trial password the compose file defaults to.
        let options =
            async_nats::ConnectOptions::with_user_and_password("ladder".into(), "ladder-trial-password".into())
                .ignore_discovered_servers();
        on_jetstream(&self.runtime, options, vec![format!("nats://127.0.0.1:{}", self.nats_port)], timeout, f)
    }

    /// The replicas of JetStream stream `name` (a KV bucket is stream `KV_<bucket>`).
    pub fn stream_replicas(&self, name: &str) -> Option<usize> {
        let name = name.to_string();
        self.with_jetstream(Duration::from_secs(10), |js| async move {
            Some(js.get_stream(name).await.ok()?.info().await.ok()?.config.num_replicas)
        })
    }

    /// The restart count of `container` when the project was first healthy.
    pub fn baseline_restarts(&self, container: &str) -> u64 {
        self.baseline.get(container).copied().unwrap_or(0)
    }

    fn kv_get(&self, bucket: &str, key: &str) -> Option<String> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.with_jetstream(Duration::from_secs(10), |js| kv_value(js, bucket, key))
    }

    /// Prometheus's scrape targets: (job, health) of each.
    pub fn prometheus_targets(&self) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}/api/v1/targets", self.prometheus_port);
        let (status, body) = super::get_url(&url);
        if status != 200 {
            return Vec::new();
        }
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut targets: Vec<(String, String)> = body["data"]["activeTargets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .map(|t| {
                        (
                            t["labels"]["job"].as_str().unwrap_or("").to_string(),
                            t["health"].as_str().unwrap_or("").into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        targets.sort();
        targets
    }

    pub fn srt_url(&self, stream_id: &str) -> String {
        format!("srt://127.0.0.1:{}?streamid={stream_id}&pkt_size=1316", self.srt_port)
    }

    /// `down -v`; then what is left of the project: containers, networks and volumes (none, unless it failed).
    pub fn down(&mut self) -> Vec<String> {
        self.down = true;
        let (ok, log) = self.compose(&["down", "-v", "--remove-orphans", "-t", "10"], Duration::from_secs(180));
        let project = format!("label=com.docker.compose.project={}", self.project);
        let mut left = Vec::new();
        for kind in [&["ps", "-a"][..], &["network", "ls"], &["volume", "ls"]] {
            let args = [kind, &["-q", "--filter", project.as_str()][..]].concat();
            let (_, out, _) = run("docker", &args);
            left.extend(out.lines().map(|id| format!("{} {id}", kind[0])));
        }
        if !ok {
            left.push(format!("down failed: {}", tail(&log, 20)));
        }
        left
    }
}

impl Deployment for Compose {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn events(&self) -> Vec<ladder_proto::Event> {
        self.with_jetstream(Duration::from_secs(60), read_events)
            .unwrap_or_else(|| panic!("cannot read the event log within 60 s\n{}", self.logs()))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for container in self.containers(None) {
            let (_, stdout, stderr) = run("docker", &["logs", "--tail", "30", &container]);
            let state = self.inspect(&container, "{{.State.Status}} restarts={{.RestartCount}}");
            out.push_str(&format!("--- {container} ({state})\n{stdout}{stderr}"));
        }
        out
    }

    fn data(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Containers restarted since the project was healthy that the test did not kill, and any that exited
    /// with an error.
    fn crashed(&self) -> Vec<String> {
        let killed = self.killed.lock().expect("killed").clone();
        let now = self.restart_counts();
        let mut crashed: Vec<String> = now
            .iter()
            .filter(|(c, count)| !killed.contains(*c) && **count > self.baseline.get(*c).copied().unwrap_or(0))
            .map(|(c, count)| format!("{c} (restarted {count} times)"))
            .collect();
        for container in now.keys() {
            let state = self.inspect(container, "{{.State.Status}} {{.State.ExitCode}}");
            if state.starts_with("exited") && !state.ends_with(" 0") {
                crashed.push(format!("{container} ({state})"));
            }
        }
        crashed
    }

    fn local_media(&self) -> Option<PathBuf> {
        None
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !self.down {
            if std::thread::panicking() {
                eprintln!("{}", self.logs());
            }
            let left = self.down();
            if !left.is_empty() {
                // `down` failed: remove by label what is left, so that nothing restarts with the next engine.
                let project = format!("label=com.docker.compose.project={}", self.project);
                for (list, remove) in [
                    (&["ps", "-aq"][..], &["rm", "-f", "-v"][..]),
                    (&["network", "ls", "-q"], &["network", "rm"]),
                    (&["volume", "ls", "-q"], &["volume", "rm", "-f"]),
                ] {
                    let (_, ids, _) = run("docker", &[list, &["--filter", project.as_str()][..]].concat());
                    for id in ids.lines() {
                        let _ = run("docker", &[remove, &[id][..]].concat());
                    }
                }
            }
        }
        // The engine (if this started it) stops after the project is down.
        self.dockerd.take();
    }
}

/// A `dockerd` this started: stopped (SIGTERM, then SIGKILL after 30 s) when dropped, so that no engine is left
/// behind even when setting up fails.
pub struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `dockerd` if no engine answers; the engine if this started it.
fn start_engine(dir: &Path) -> Option<Engine> {
    if run("docker", &["info"]).0 {
        return None;
    }
    let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd log");
    let engine = Engine(
        Command::new("dockerd")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd runs (make test installs docker.io; it needs root)"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run("docker", &["info"]).0 {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
            panic!("dockerd did not answer within 60 s:\n{}", tail(&log, 40));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Some(engine)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
