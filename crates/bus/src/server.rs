//! Starts a real `nats-server` with JetStream as a child process. `ladder dev` uses it when no `--nats` URL is
//! given, and the integration tests use it for a server of their own on a free port. The server is killed when
//! the [`NatsServer`] is dropped.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start nats-server (is it installed? `make demo` and `make test` install it): {0}")]
    Spawn(std::io::Error),
    #[error("nats-server did not accept connections on {0} within 10 s")]
    NotReady(SocketAddr),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct NatsServer {
    child: Child,
    addr: SocketAddr,
}

impl NatsServer {
    /// Starts `nats-server -js` on `port` (a free port when `None`), storing JetStream data under `data_dir`.
    pub async fn start(data_dir: &Path, port: Option<u16>) -> Result<NatsServer, ServerError> {
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let store: PathBuf = data_dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        let log = std::fs::File::create(data_dir.join("nats-server.log"))?;
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(ServerError::Spawn)?;
        let server = NatsServer { child, addr };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ServerError::NotReady(addr))
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
