//! Starts real `nats-server` processes with JetStream as children. `ladder dev` uses [`NatsServer`] when no
//! `--nats` URL is given, and the integration tests use it for a server of their own on a free port;
//! [`NatsCluster`] starts several servers routed to each other on loopback, for the tests that kill nodes.
//! Every child is killed when its owner is dropped.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

/// How long a server (or a cluster) may take to answer JetStream requests. A cluster first has to elect a
/// meta leader, which takes a few seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start nats-server (is it installed? `make demo` and `make test` install it): {0}")]
    Spawn(std::io::Error),
    #[error("nats-server did not accept connections on {0} within 10 s")]
    NotReady(SocketAddr),
    #[error("JetStream at {url} did not answer within {timeout:?} (last error: {last_error})")]
    JetStreamNotReady { url: String, timeout: Duration, last_error: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

// === impl NatsServer ===

/// One `nats-server -js` child process. It keeps its command line, so it can be restarted on the same
/// ports with the same store directory.
pub struct NatsServer {
    child: Option<Child>,
    addr: SocketAddr,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ready_url: Option<String>,
    log: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server -js` on `port` (a free port when `None`), storing JetStream data under `data_dir`.
    pub async fn start(data_dir: &Path, port: Option<u16>) -> Result<NatsServer, ServerError> {
        NatsServer::start_configured(data_dir, port, None, Vec::new()).await
    }

    /// [`NatsServer::start`] with a configuration file too (`-c config`: users and permissions, as
    /// deploy/nats/ladder.conf), and `env` added to the server's environment (the passwords it refers to).
    /// The command line's settings (port, JetStream, store) win over the file's.
    pub async fn start_configured(
        data_dir: &Path,
        port: Option<u16>,
        config: Option<&Path>,
        env: Vec<(String, String)>,
    ) -> Result<NatsServer, ServerError> {
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let store: PathBuf = data_dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        let mut args = vec![
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            path_arg(&store),
        ];
        if let Some(config) = config {
            args.extend(["-c".to_string(), path_arg(config)]);
        }
        let mut server = NatsServer::spawn(port, args, data_dir.join("nats-server.log"))?;
        server.env = env;
        server.launch()?;
        server.wait_listening().await?;
        Ok(server)
    }

    /// A server not started yet: [`NatsServer::launch`] starts it.
    fn spawn(port: u16, args: Vec<String>, log: PathBuf) -> Result<NatsServer, ServerError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Ok(NatsServer { child: None, addr, args, env: Vec::new(), ready_url: None, log })
    }

    fn launch(&mut self) -> Result<(), ServerError> {
        // Appended, so the log of a restarted server still shows what happened before the kill.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new("nats-server")
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(ServerError::Spawn)?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_listening(&mut self) -> Result<(), ServerError> {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ServerError::NotReady(self.addr))
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills the server with SIGKILL (no lame-duck mode, no flush) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Kills the server with SIGKILL and starts it again on the same port with the same store directory;
    /// returns once JetStream answers on it.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.kill().await;
        self.launch()?;
        self.wait_listening().await?;
        wait_jetstream(self.ready_url.as_deref().unwrap_or(&self.url())).await
    }

    /// The URL (with a user, for a server that has users) that [`NatsServer::restart`] asks whether JetStream
    /// is up again.
    pub fn check_as(&mut self, url: String) {
        self.ready_url = Some(url);
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) {
        self.kill().await;
    }
}

// === impl NatsCluster ===

/// `size` nats-server processes with JetStream, one cluster name, each node routed to all others on
/// loopback, each with its own store directory. Nodes are named `n0`, `n1`, ...
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the nodes under `data_dir/n<i>/` and returns once JetStream has a meta leader (an account info
    /// request succeeds).
    pub async fn start(data_dir: &Path, size: usize) -> Result<NatsCluster, ServerError> {
        let size = size.max(1);
        let ports = free_ports(2 * size)?;
        let (client_ports, route_ports) = ports.split_at(size);
        let cluster_name = format!("ladder-test-{}", route_ports[0]);
        let mut nodes = Vec::with_capacity(size);
        for i in 0..size {
            let dir = data_dir.join(format!("n{i}"));
            let store = dir.join("jetstream");
            std::fs::create_dir_all(&store)?;
            let routes = (0..size)
                .filter(|&j| j != i)
                .map(|j| format!("nats://127.0.0.1:{}", route_ports[j]))
                .collect::<Vec<_>>()
                .join(",");
            let mut args = vec![
                "-js".to_string(),
                "-n".into(),
                format!("n{i}"),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                client_ports[i].to_string(),
                "-sd".into(),
                path_arg(&store),
                "--cluster_name".into(),
                cluster_name.clone(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", route_ports[i]),
            ];
            if !routes.is_empty() {
                args.extend(["--routes".into(), routes]);
            }
            let mut node = NatsServer::spawn(client_ports[i], args, dir.join("nats-server.log"))?;
            node.launch()?;
            nodes.push(node);
        }
        let mut cluster = NatsCluster { nodes };
        for node in &mut cluster.nodes {
            node.wait_listening().await?;
        }
        wait_jetstream(&cluster.url()).await?;
        // A meta leader needs only a majority: wait for the full mesh too, so a client that counts the nodes
        // (`Bus::connect`) sees all of them.
        for node in &cluster.nodes {
            wait_routed(&node.url(), size).await?;
        }
        Ok(cluster)
    }

    /// The client URLs of all nodes, comma-separated, as `Bus::connect` takes them.
    pub fn url(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// The client URL of node `i`.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Kills node `i` with SIGKILL and waits for it to exit.
    pub async fn kill(&mut self, i: usize) {
        self.nodes[i].kill().await;
    }

    /// Starts node `i` again (killing it first if it runs) on the same ports with the same store directory;
    /// returns once JetStream answers through it.
    pub async fn restart(&mut self, i: usize) -> Result<(), ServerError> {
        self.nodes[i].restart().await
    }
}

/// Polls until a JetStream account info request through `url` succeeds: the server is up and, in a cluster,
/// JetStream has a meta leader.
async fn wait_jetstream(url: &str) -> Result<(), ServerError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let not_ready = |last_error: String| ServerError::JetStreamNotReady {
        url: url.to_string(),
        timeout: READY_TIMEOUT,
        last_error,
    };
    // A server with users is asked as the user `url` names (see crate::auth).
    let (servers, credentials) = crate::auth::parse(url, None).map_err(|e| not_ready(e.to_string()))?;
    let mut last_error = String::from("none");
    while tokio::time::Instant::now() < deadline {
        let options =
            credentials.apply(async_nats::ConnectOptions::new()).await.map_err(|e| not_ready(e.to_string()))?;
        let connect = options.connection_timeout(Duration::from_secs(2)).connect(servers.clone());
        match tokio::time::timeout(Duration::from_secs(3), connect).await {
            Ok(Ok(client)) => loop {
                match account_info(&client).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last_error = e,
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(not_ready(last_error));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            },
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "connection timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(not_ready(last_error))
}

/// Polls until the server at `url` lists the client URLs of `nodes` servers (itself included) in its INFO.
async fn wait_routed(url: &str, nodes: usize) -> Result<(), ServerError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let not_ready = |last_error: String| ServerError::JetStreamNotReady {
        url: url.to_string(),
        timeout: READY_TIMEOUT,
        last_error,
    };
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|e| not_ready(e.to_string()))?;
    loop {
        // The server sends a new INFO to its clients whenever a route comes or goes.
        let known = client.server_info().connect_urls.len();
        if known >= nodes {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(not_ready(format!("routed to {} of {nodes} nodes", known.max(1))));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One JetStream account info request. Read as plain JSON: async-nats' `query_account` expects fields that
/// nats-server 2.9 does not send (`reserved_memory`).
async fn account_info(client: &async_nats::Client) -> Result<(), String> {
    let request = client.request("$JS.API.INFO", bytes::Bytes::new());
    let reply = match tokio::time::timeout(Duration::from_secs(2), request).await {
        Ok(reply) => reply.map_err(|e| e.to_string())?,
        Err(_) => return Err("account info timed out".into()),
    };
    let info: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
    match info.get("error") {
        Some(error) => Err(error.to_string()),
        None => Ok(()),
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// `n` distinct TCP ports that were free a moment ago: all are held open until the last is found, so the
/// kernel cannot hand out the same port twice.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).collect::<Result<Vec<_>, _>>()?;
    listeners.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}
