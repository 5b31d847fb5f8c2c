//! A real Prometheus (Debian's `prometheus`, installed by `make test`) for the tests: started on a free
//! loopback port with a throw-away data directory, scraping the given targets every second and loading the
//! alert rules of `deploy/prometheus/alerts.yml`. Dropping it kills the server.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ladder_bus::server::free_port;

/// The alert rules shipped in `deploy/`.
pub fn alert_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml")
}

pub struct Prometheus {
    pub dir: tempfile::TempDir,
    pub port: u16,
    server: Child,
}

/// A scrape target: its job (the service), its instance name and port.
pub struct Target {
    pub job: String,
    pub name: String,
    pub port: u16,
}

impl Prometheus {
    pub fn start(targets: &[Target]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port().expect("free port");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n",
        );
        config.push_str(&format!("  - {}\nscrape_configs:\n", alert_rules().display()));
        let jobs: std::collections::BTreeSet<&str> = targets.iter().map(|t| t.job.as_str()).collect();
        for job in jobs {
            config.push_str(&format!("  - job_name: ladder-{job}\n    static_configs:\n"));
            for target in targets.iter().filter(|t| t.job == job) {
                config.push_str(&format!(
                    "      - targets: ['127.0.0.1:{}']\n        labels: {{ ladder_instance: '{}' }}\n",
                    target.port, target.name
                ));
            }
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let server = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("prometheus runs (make test installs it: scripts/install-prometheus.sh)");
        let prometheus = Prometheus { dir, port, server };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if listening && super::get_url(&prometheus.url("/-/ready")).0 == 200 {
                return prometheus;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus was not ready within 30 s:\n{}", prometheus.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path with query parameters; the `data` of a successful answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = agent.get(self.url(path));
        for (key, value) in params {
            request = request.query(*key, *value);
        }
        let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let text = response.body_mut().read_to_string().expect("prometheus answers");
        let body: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} {params:?}: not JSON ({e}): {text}"));
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// An instant query: each series's labels and value.
    pub fn query(&self, expr: &str) -> Vec<(serde_json::Value, f64)> {
        let data = self.api("/api/v1/query", &[("query", expr)]);
        data["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{expr}: not a vector: {data}"))
            .iter()
            .map(|series| {
                let value = series["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// The value of a query that gives one series (an aggregation); `None` if it gives none.
    pub fn value(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr);
        assert!(result.len() <= 1, "{expr} gives {} series: {result:?}", result.len());
        result.first().map(|(_, value)| *value)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
