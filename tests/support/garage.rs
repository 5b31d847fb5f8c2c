//! A real Garage S3 server for the tests: started on free loopback ports with a throw-away config and data
//! directory, one bucket (`ladder`) with a key allowed to read and write it, and the bucket's website endpoint
//! switched on (served for the `Host: localhost`, so `http://localhost:<web_port>/<key>` reads an object).
//! Dropping it kills the server and removes everything. `make test` installs the binary (`cargo install garage`).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ladder_bus::server::free_port;

pub const BUCKET: &str = "ladder";
pub const REGION: &str = "garage";
pub const KEY_ID: &str = "GK1adde2c0ffee0123456789ab";
pub const SECRET: &str = "1adde2c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123";

pub struct Garage {
    pub dir: tempfile::TempDir,
    pub s3_port: u16,
    pub web_port: u16,
    server: Child,
}

/// The garage binary: `$GARAGE`, else `garage` on the PATH, else cargo's bin directory.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GARAGE") {
        return path.into();
    }
    let on_path = Command::new("garage").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if on_path.is_ok_and(|s| s.success()) {
        return "garage".into();
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    cargo_home.join("bin/garage")
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc_port, s3_port, web_port) =
            (free_port().expect("port"), free_port().expect("port"), free_port().expect("port"));
        let config = format!(
            r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{SECRET}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[s3_web]
bind_addr = "127.0.0.1:{web_port}"
root_domain = ".web.garage.localhost"
index = "index.html"
"#,
            root = dir.path().display()
        );
        std::fs::write(dir.path().join("garage.toml"), config).expect("garage config");
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("log");
        let server = Command::new(binary())
            .arg("-c")
            .arg(dir.path().join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}): `make test` installs it", binary().display()));
        let garage = Garage { dir, s3_port, web_port, server };

        // The node answers its RPC once it is up; then give it a role, the bucket, the key and the website.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // `status` goes through the RPC port, so it succeeds once the server listens.
            let (ok, out) = garage.cli(&["status"]);
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "garage did not start within 30 s: {out}\n{}", garage.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        let (ok, out) = garage.cli(&["node", "id", "-q"]);
        assert!(ok, "garage node id: {out}");
        let node_id = out.trim().split('@').next().unwrap_or_default().to_string();
        for args in [
            &["layout", "assign", "-z", "dc1", "-c", "1G", &node_id][..],
            &["layout", "apply", "--version", "1"],
            &["bucket", "create", BUCKET],
            &["key", "import", "--yes", "-n", "ladder-test", KEY_ID, SECRET],
            &["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID],
            &["bucket", "website", "--allow", BUCKET],
            &["bucket", "alias", BUCKET, "localhost"],
        ] {
            let (ok, out) = garage.cli(args);
            assert!(ok, "garage {}: {out}\n{}", args.join(" "), garage.log());
        }
        garage
    }

    /// Runs the garage CLI against this server: (success, stdout + stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .expect("garage cli runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The bucket's website endpoint: a public base URL for media.
    pub fn web_url(&self) -> String {
        format!("http://localhost:{}", self.web_port)
    }

    /// The environment a ladder process needs to use the bucket, as any S3 user would set it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ]
    }

    pub fn storage_options(&self) -> ladder_storage::S3Options {
        ladder_storage::S3Options {
            endpoint: Some(self.endpoint()),
            region: Some(REGION.to_string()),
            access_key_id: Some(KEY_ID.to_string()),
            secret_access_key: Some(SECRET.to_string()),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        // A test that failed says what the server said, and whether it was still running.
        if std::thread::panicking() {
            let running = matches!(self.server.try_wait(), Ok(None));
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- garage (running: {running}, last lines)");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
