//! Health: `/healthz` (the process serves) and `/readyz` (every check of the process passes), on the metrics
//! listener, for compose healthchecks, Nomad service checks and load balancers.
//!
//! A service registers its checks once it has what they look at: NATS connected, the SRT port bound, the
//! index open. A check is a function called on every `/readyz` request, so it says how things are now (a NATS
//! connection that dropped makes the service unready until it is back), never how they were at start-up.

use std::sync::{LazyLock, Mutex};

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
