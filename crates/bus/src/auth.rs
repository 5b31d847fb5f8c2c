//! Who a ladder process is on NATS, and what NATS refused it.
//!
//! A service proves who it is in one of three ways, all optional:
//! - a user and password in the URL: `nats://ingest:secret@nats1:4222` (every server of a cluster URL takes
//!   the same; one that names none is given the others'). A name without a password is a token:
//!   `nats://s3cr3t@nats1:4222`;
//! - a credentials file, as `nsc` and Synadia write them (a user JWT and its NKey seed): [`CREDS_ENV`];
//! - nothing, for a server without authorization (`ladder dev`, the tests).
//!
//! With a user, the request inboxes of the connection are `_INBOX_<user>.>` rather than `_INBOX.>`, so that a
//! server can allow each user to subscribe to its own replies only (see `deploy/nats/ladder.conf`).
//!
//! NATS reports a refused login or a refused publish or subscription asynchronously, as an error on the
//! connection, while the request that caused it simply goes unanswered. [`Refusals`] keeps the last ones, so
//! that [`crate::Bus::connect`] fails at once with the server's reason, and a publish that can never be
//! stored fails as [`crate::BusError::Forbidden`] instead of being retried.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use async_nats::{ConnectOptions, Event, ServerAddr, ServerError};

use crate::BusError;

/// Environment variable naming a NATS credentials file (user JWT and NKey seed) to connect with.
pub const CREDS_ENV: &str = "LADDER_NATS_CREDS";

/// How many refusals [`Refusals`] remembers.
const KEPT: usize = 32;

/// How a connection authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    UserPassword { user: String, password: String },
    Token(String),
    CredsFile(PathBuf),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("none"),
            Credentials::UserPassword { user, .. } => write!(f, "user {user}"),
            Credentials::Token(_) => f.write_str("token"),
            Credentials::CredsFile(path) => write!(f, "credentials file {}", path.display()),
        }
    }
}

impl Credentials {
    /// Sets these credentials (and, with a user, its inbox prefix) on `options`.
    pub async fn apply(&self, options: ConnectOptions) -> Result<ConnectOptions, BusError> {
        Ok(match self {
            Credentials::None => options,
            Credentials::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone()).custom_inbox_prefix(format!("_INBOX_{user}"))
            }
            Credentials::Token(token) => options.token(token.clone()),
            Credentials::CredsFile(path) => options.credentials_file(path).await.map_err(|source| {
                BusError::Credentials(format!("cannot read the NATS credentials file {}: {source}", path.display()))
            })?,
        })
    }
}

/// The servers of `url` (comma-separated) and the credentials they carry, or those of `creds_file`.
pub fn parse(url: &str, creds_file: Option<PathBuf>) -> Result<(Vec<ServerAddr>, Credentials), BusError> {
    let servers = url
        .split(',')
        .map(|server| server.trim().parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| BusError::InvalidUrl { url: redact(url), source })?;
    // Percent-decoded (a password may hold `@`, `:` or `/` as `%40` ...); a `%` not followed by two hex digits
    // is refused rather than taken as it is.
    let decode = |text: &str| {
        let escapes_valid =
            text.split('%').skip(1).all(|rest| rest.get(..2).is_some_and(|hex| u8::from_str_radix(hex, 16).is_ok()));
        if !escapes_valid {
            return Err(BusError::Credentials(format!("{}: a bad %-escape in the user name or password", redact(url))));
        }
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| BusError::Credentials(format!("{}: the user name or password is not UTF-8", redact(url))))
    };
    let mut credentials = Credentials::None;
    for server in &servers {
        let given = match (server.username(), server.password()) {
            (None, _) => continue,
            (Some(user), Some(password)) => {
                Credentials::UserPassword { user: decode(user)?, password: decode(password)? }
            }
            (Some(token), None) => Credentials::Token(decode(token)?),
        };
        if credentials != Credentials::None && credentials != given {
            return Err(BusError::Credentials(format!(
                "the servers of {} name different credentials: give every server the same, or only the first",
                redact(url)
            )));
        }
        credentials = given;
    }
    if let Some(path) = creds_file {
        if credentials != Credentials::None {
            return Err(BusError::Credentials(format!(
                "{CREDS_ENV} is set and {} carries credentials too: use one of them",
                redact(url)
            )));
        }
        credentials = Credentials::CredsFile(path);
    }
    Ok((servers, credentials))
}

/// `url` with every password or token replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let (scheme, rest) = match server.find("://") {
                Some(at) => server.split_at(at + 3),
                None => ("", server),
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => {
                    let userinfo = &rest[..at];
                    let shown = match userinfo.split_once(':') {
                        Some((user, _)) => format!("{user}:***"),
                        None => "***".to_string(),
                    };
                    format!("{scheme}{shown}{}", &rest[at..])
                }
                None => server.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What the server refused this connection lately: a login (authorization violation) or a publish or
/// subscription its permissions do not allow.
#[derive(Clone, Default)]
pub struct Refusals(Arc<Mutex<VecDeque<String>>>);

impl Refusals {
    /// Logs and keeps the refusals among a connection's events.
    pub(crate) fn record(&self, event: &Event) {
        let message = match event {
            Event::ServerError(ServerError::AuthorizationViolation) => {
                "authorization violation: the server refused the user, password, token or credentials".to_string()
            }
            Event::ServerError(ServerError::Other(message)) if is_permission(message) => message.clone(),
            _ => return,
        };
        tracing::error!(refusal = %message, "nats refused this service an operation: check its NATS permissions");
        let mut kept = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(message);
    }

    /// The last refusal of a subject that starts with `prefix`.
    pub fn of_prefix(&self, prefix: &str) -> Option<String> {
        self.last_naming(&format!("\"{prefix}"))
    }

    /// The last refusal that names `subject` (a publish to it that the permissions do not allow).
    pub fn of_subject(&self, subject: &str) -> Option<String> {
        self.last_naming(&format!("\"{subject}\""))
    }

    fn last_naming(&self, quoted: &str) -> Option<String> {
        let kept = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.iter().rev().find(|m| m.contains(quoted)).cloned()
    }
}

fn is_permission(message: &str) -> bool {
    message.to_ascii_lowercase().contains("permissions violation")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_redacted() {
        assert_eq!(redact("nats://a:b@h:4222,nats://h2:4222"), "nats://a:***@h:4222,nats://h2:4222");
        assert_eq!(redact("nats://tok@h:4222"), "nats://***@h:4222");
        assert_eq!(redact("tls://u:p%40ss@h"), "tls://u:***@h");
        assert_eq!(redact("h:4222"), "h:4222");
        assert_eq!(redact("nats://h:4222/x@y"), "nats://h:4222/x@y");
    }

    #[test]
    fn credentials_come_from_the_url() {
        let (servers, credentials) = parse("nats://ingest:p%40ss@a:4222, nats://b:4222", None).expect("parses");
        assert_eq!(servers.len(), 2);
        assert_eq!(credentials, Credentials::UserPassword { user: "ingest".into(), password: "p@ss".into() });
        let (_, token) = parse("nats://s3cr3t@a", None).expect("parses");
        assert_eq!(token, Credentials::Token("s3cr3t".into()));
        let (_, none) = parse("nats://a,nats://b", None).expect("parses");
        assert_eq!(none, Credentials::None);
        let (_, file) = parse("nats://a", Some("/x.creds".into())).expect("parses");
        assert_eq!(file, Credentials::CredsFile("/x.creds".into()));
    }

    #[test]
    fn conflicting_credentials_are_refused_without_showing_them() {
        let error = parse("nats://a:one@a,nats://a:two@b", None).expect_err("refused").to_string();
        assert!(error.contains("different credentials") && !error.contains("one") && !error.contains("two"), "{error}");
        let error = parse("nats://a:one@a", Some("/x.creds".into())).expect_err("refused").to_string();
        assert!(error.contains(CREDS_ENV) && !error.contains("one@"), "{error}");
    }

    #[test]
    fn refusals_are_found_by_subject() {
        let refusals = Refusals::default();
        refusals.record(&Event::ServerError(ServerError::Other(
            "Permissions Violation for Publish to \"chunk.uploaded.cam\"".into(),
        )));
        refusals.record(&Event::ServerError(ServerError::Other("Maximum Payload Violation".into())));
        assert!(refusals.of_subject("chunk.uploaded.cam").is_some());
        assert!(refusals.of_subject("chunk.uploaded.ca").is_none());
        assert!(refusals.of_prefix("chunk.").is_some() && refusals.of_prefix("rendition.").is_none());
    }
}
