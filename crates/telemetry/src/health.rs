//! Health: `/healthz` (the process serves) and `/readyz` (every check of the process passes), on the metrics
//! listener, for compose healthchecks, Nomad service checks and load balancers.
//!
//! A service registers its checks once it has what they look at: NATS connected, the SRT port bound, the
//! index open. A check is a function called on every `/readyz` request, so it says how things are now (a NATS
//! connection that dropped makes the service unready until it is back), never how they were at start-up.

use std::{
    future::Future,
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
};

type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

static CHECKS: LazyLock<Mutex<Vec<(String, Check)>>> = LazyLock::new(Default::default);

/// Adds a readiness check named `name` (`ingest: nats`, `manifest: http`).
pub fn register(name: impl Into<String>, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
    CHECKS.lock().unwrap_or_else(|p| p.into_inner()).push((name.into(), Box::new(check)));
}

/// Runs every check: `Ok` with their names if all pass (and at least one is registered), else the failures.
pub fn ready() -> Result<Vec<String>, Vec<String>> {
    let checks = CHECKS.lock().unwrap_or_else(|p| p.into_inner());
    if checks.is_empty() {
        return Err(vec!["starting: no service has registered its checks yet".into()]);
    }
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for (name, check) in checks.iter() {
        match check() {
            Ok(()) => passed.push(name.clone()),
            Err(why) => failed.push(format!("{name}: {why}")),
        }
    }
    if failed.is_empty() {
        Ok(passed)
    } else {
        Err(failed)
    }
}

/// A check that NATS is connected, for a service's client.
pub fn nats(client: async_nats::Client) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
    move || match client.connection_state() {
        async_nats::connection::State::Connected => Ok(()),
        other => Err(format!("nats is {other}")),
    }
}

/// How often [`probe`] asks a backend, and how long it waits for an answer.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A check of a backend that answers asynchronously (object storage, the index): `probe` runs every
/// [`PROBE_EVERY`] in a background task (on the current tokio runtime, until `shutdown`), each time for at most
/// [`PROBE_TIMEOUT`], and the check passes while the last probe passed and is recent. Not ready until the first
/// probe has answered.
pub fn probe<F, Fut>(name: impl Into<String>, shutdown: tokio_util::sync::CancellationToken, probe: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    type Last = Arc<Mutex<Option<(Instant, Result<(), String>)>>>;
    let last: Last = Arc::default();
    let written = last.clone();
    tokio::spawn(async move {
        loop {
            let outcome = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
            };
            *written.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), outcome));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
        }
    });
    register(name, move || match &*last.lock().unwrap_or_else(|p| p.into_inner()) {
        None => Err("not probed yet".into()),
        Some((at, _)) if at.elapsed() > 2 * PROBE_EVERY + PROBE_TIMEOUT => {
            Err(format!("the last answer is {} s old", at.elapsed().as_secs()))
        }
        Some((_, outcome)) => outcome.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_check_passes() {
        assert!(ready().is_err(), "nothing registered yet");
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = flag.clone();
        register("test: flag", move || {
            if seen.load(std::sync::atomic::Ordering::Relaxed) {
                Ok(())
            } else {
                Err("not yet".into())
            }
        });
        assert_eq!(ready(), Err(vec!["test: flag: not yet".to_string()]));
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(ready(), Ok(vec!["test: flag".to_string()]));
    }
}
