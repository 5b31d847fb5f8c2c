//! # Layout
//! Object storage for media, selected by URL. [`Storage`] wraps an [`object_store::ObjectStore`] and adds
//! what ladder needs on top: keys laid out in one place ([`keys`]), write-once puts ([`Storage::put`]), retries
//! with backoff on transient errors, content types, and errors with a kind callers map to a decision (retry the
//! message, or give up on it).
//!
//! Backends:
//! - `file:///absolute/path` or a plain directory path: the embedded default.
//! - `s3://bucket` or `s3://bucket/prefix`: any S3-compatible store (AWS S3, Garage, MinIO), configured by
//!   [`S3Options`] and the usual `AWS_*` environment variables.
#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use object_store::{
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    local::LocalFileSystem,
    path::Path,
    prefix::PrefixStore,
    Attribute, Attributes, BackoffConfig, ClientConfigKey, GetOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, PutResult, RetryConfig,
};

/// Where each object lives. Keys are deterministic and objects write-once: a retried upload of the same bytes
/// finds them already stored ([`PutOutcome::Unchanged`]), and other bytes under a key already used are refused
/// ([`ErrorKind::Conflict`]), so an object a player may have fetched never changes.
pub mod keys {
    /// `live/<stream>/<session>/source/<seq>.ts`
    pub fn source_chunk(stream: &str, session: &str, sequence: u64) -> String {
        format!("live/{stream}/{session}/source/{sequence:08}.ts")
    }

    /// `live/<stream>/<session>/<rendition>/<seq>.ts`
    pub fn rendition_chunk(stream: &str, session: &str, rendition: &str, sequence: u64) -> String {
        format!("live/{stream}/{session}/{rendition}/{sequence:08}.ts")
    }

    /// `parts/<stream>/<session>/<rendition>/<seq>.<part>.ts`: an LL-HLS partial segment. Under a prefix of
    /// its own, so that a bucket lifecycle rule can expire parts (worth keeping for minutes) and keep segments.
    pub fn rendition_part(stream: &str, session: &str, rendition: &str, sequence: u64, part: u32) -> String {
        format!("parts/{stream}/{session}/{rendition}/{sequence:08}.{part}.ts")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// Worth retrying later: the store was unreachable or overloaded.
    Transient,
    /// Retrying will not help: bad configuration, permissions, invalid key.
    Permanent,
    /// A put found the key already holding different bytes. Objects are write-once, so the put was refused and
    /// the stored object left as it was; retrying will not help. It means two writers disagree about one key
    /// (for example a chunk cut twice, differently): report it, never paper over it.
    Conflict,
}

/// What a successful [`Storage::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The key was free and now holds the bytes.
    Created,
    /// The key already held exactly these bytes (a retried upload); nothing was written.
    Unchanged,
}

/// How a backend keeps a put from replacing an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Create {
    /// The backend itself refuses, atomically, to create a key that exists: `link(2)` in a local directory.
    Atomic,
    /// Look first, create, then look again; see [`Storage::put`] for the race this leaves. `conditional` sends
    /// the create with `If-None-Match: *`, which makes it atomic on servers that honour it.
    Checked { conditional: bool },
}

#[derive(Debug, thiserror::Error)]
#[error("{operation} {key}: {message}")]
pub struct StorageError {
    pub kind: ErrorKind,
    pub operation: &'static str,
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unsupported storage URL {0:?}: use file:///path, a directory path or s3://bucket[/prefix]")]
    UnsupportedUrl(String),
    #[error("cannot use {path} for storage: {message}")]
    Directory { path: String, message: String },
    #[error("cannot use {url} for storage: {message}")]
    S3 { url: String, message: String },
}

/// S3 settings that are not in the URL. Unset fields fall back to the usual `AWS_*` environment variables
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// An S3-compatible endpoint such as `http://127.0.0.1:3900`; requests are then path-style. Unset: AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    description: String,
    /// Whether the backend keeps per-object attributes (content type, cache control); a local directory does not.
    attributes: bool,
    /// Attempts of our own per operation. The S3 client retries transient HTTP failures itself, with backoff.
    attempts: u32,
    create: Create,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

const LOCAL_ATTEMPTS: u32 = 5;

/// How often a put starts over when the object it was refused by is gone by the time it is read (deleted in
/// between, or an S3 409 for a create still in flight).
const CREATE_ROUNDS: u32 = 3;

/// The content type of an object, from its key.
pub fn content_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, extension)| extension) {
        Some("ts") => "video/mp2t",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

impl Storage {
    /// A local directory (`file:///path` or a path); S3 URLs use the `AWS_*` environment only.
    pub fn from_url(url: &str) -> Result<Storage, ConfigError> {
        Storage::open(url, &S3Options::default())
    }

    /// Opens the backend `url` names: `file:///path`, a directory path, or `s3://bucket[/prefix]`.
    pub fn open(url: &str, s3: &S3Options) -> Result<Storage, ConfigError> {
        if url.starts_with("s3://") {
            return Storage::s3(url, s3);
        }
        let dir = match url.strip_prefix("file://") {
            Some(path) => path,
            None if !url.contains("://") => url,
            None => return Err(ConfigError::UnsupportedUrl(url.to_string())),
        };
        Storage::local(std::path::Path::new(dir))
    }

    /// An S3 bucket, optionally under a key prefix: `s3://bucket` or `s3://bucket/prefix`.
    pub fn s3(url: &str, options: &S3Options) -> Result<Storage, ConfigError> {
        let error = |message: String| ConfigError::S3 { url: url.to_string(), message };
        let rest = url.strip_prefix("s3://").ok_or_else(|| ConfigError::UnsupportedUrl(url.to_string()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(error("no bucket name".into()));
        }
        // reqwest is built without a TLS crypto provider of its own; use ring, which async-nats already uses.
        // Installing fails harmlessly when a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = |key| AmazonS3ConfigKey::Client(key);
        // Environment first (AWS_*), then what was given explicitly.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_config(client(ClientConfigKey::ConnectTimeout), "5s")
            .with_config(client(ClientConfigKey::Timeout), "60s");
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &options.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 6,
            retry_timeout: Duration::from_secs(60),
        };
        // `If-None-Match: *` on every create (object_store's default, `etag`), unless the operator switched it
        // off with `AWS_CONDITIONAL_PUT=disabled` for a server that rejects the header instead of ignoring it.
        let conditional =
            builder.get_config_value(&AmazonS3ConfigKey::ConditionalPut).is_none_or(|value| value.trim() != "disabled");
        let store = builder.with_retry(retry).build().map_err(|e| error(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
            "" => Arc::new(store),
            prefix => Arc::new(PrefixStore::new(store, prefix)),
        };
        Ok(Storage {
            store,
            description: url.to_string(),
            attributes: true,
            attempts: 1,
            create: Create::Checked { conditional },
        })
    }

    /// Objects as files under `dir`, which is created if needed.
    pub fn local(dir: &std::path::Path) -> Result<Storage, ConfigError> {
        let directory = |e: &dyn std::fmt::Display| ConfigError::Directory {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| directory(&e))?;
        // A create writes a staging file `<key>#<n>` of its own (opened with O_EXCL), closes it and hard-links it
        // to the key: link(2) fails if the key exists, so a concurrent writer is refused rather than clobbered,
        // and the key never names a partly written file. A process killed mid-write leaves only the staging
        // file, which listings skip and the next put of that key steps around. With fsync on, the file and the
        // directory entry are on disk before a put returns, so a power cut cannot leave an empty or torn file
        // at a key either; a chunk every two seconds per rendition makes that cost small.
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| directory(&e))?.with_fsync(true);
        Ok(Storage {
            store: Arc::new(store),
            description: format!("file://{}", dir.display()),
            attributes: false,
            attempts: LOCAL_ATTEMPTS,
            create: Create::Atomic,
        })
    }

    /// Stores an object write-once, retrying transient failures with exponential backoff.
    ///
    /// A free key is created ([`PutOutcome::Created`]). A key that already holds these very bytes is left alone
    /// ([`PutOutcome::Unchanged`]): that is a retried upload. A key that holds other bytes is refused with
    /// [`ErrorKind::Conflict`], and the stored object stays as it was.
    ///
    /// A local directory refuses an existing key atomically (see [`Storage::local`]), so of two concurrent puts
    /// of one key exactly one creates it.
    ///
    /// On S3 the put reads the key first, creates it with `If-None-Match: *`, then compares the object's ETag
    /// with the one its create was answered with. Where the server honours the header (AWS S3 since 2024,
    /// MinIO, R2) the create itself is atomic and a loser gets 412, then reads and compares. Garage 2.5 ignores
    /// the header and answers 200, overwriting (last writer wins), so there the reads around the create are all
    /// the protection there is: a put that finds the key taken, before or after its create, never reports
    /// success for bytes that are not stored. What remains is a race between writers of different bytes whose
    /// creates overlap: a writer that created, read its own ETag back and reported `Created` can still be
    /// overwritten by another one that had looked before the first create landed and whose create lands after
    /// that read-back (the other one then reports `Created` too). The window is about one upload long. ladder
    /// keeps it shut by having one writer per key at a time (a stream has one segmenter owner) and by keys whose
    /// bytes are deterministic (a re-cut chunk is byte for byte the same), so writers that overlap agree.
    #[tracing::instrument(name = "storage.put", level = "info", skip_all, fields(key = %key, bytes = data.len()))]
    pub async fn put(&self, key: &str, data: Bytes) -> Result<PutOutcome, StorageError> {
        let path = self.path(key, "put")?;
        let mut options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        if let Create::Checked { conditional: false } = self.create {
            // Plain PUT: the checks before and after are the only guard.
            options.mode = PutMode::Overwrite;
        }
        if self.attributes {
            options.attributes = Attributes::from_iter([
                (Attribute::ContentType, content_type(key)),
                // Keys are never reused for other content, so caches and CDNs may keep objects for good.
                (Attribute::CacheControl, "public, max-age=31536000, immutable"),
            ]);
        }
        for _ in 0..CREATE_ROUNDS {
            if let Create::Checked { .. } = self.create {
                if let Some(stored) = self.stored(key).await? {
                    return compare(key, &stored, &data);
                }
            }
            let created = self
                .retry("put", key, || async {
                    match self.store.put_opts(&path, PutPayload::from(data.clone()), options.clone()).await {
                        Ok(result) => Ok(Some(result)),
                        // The key exists: local link(2) said EEXIST, or S3 answered 412 (or 409, a create of it
                        // still in flight).
                        Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            match created {
                Some(result) => return self.confirm(key, &path, &result, &data).await,
                None => match self.stored(key).await? {
                    Some(stored) => return compare(key, &stored, &data),
                    // Gone again before it could be read: start over.
                    None => continue,
                },
            }
        }
        Err(StorageError {
            kind: ErrorKind::Transient,
            operation: "put",
            key: key.to_string(),
            message: format!("the key existed but was gone when read, {CREATE_ROUNDS} times"),
        })
    }

    /// After a create that succeeded: on a backend whose create may not be atomic, checks that the key holds
    /// our object and not a concurrent writer's.
    async fn confirm(
        &self,
        key: &str,
        path: &Path,
        result: &PutResult,
        data: &Bytes,
    ) -> Result<PutOutcome, StorageError> {
        if self.create == Create::Atomic {
            return Ok(PutOutcome::Created);
        }
        let meta = self.retry("put", key, || self.store.head(path)).await?;
        if result.e_tag.is_some() && result.e_tag == meta.e_tag {
            return Ok(PutOutcome::Created);
        }
        // A different ETag may still be the same bytes (a server whose ETags are not content hashes, or an
        // identical upload in between): only the bytes decide.
        match self.stored(key).await? {
            Some(stored) if stored == *data => Ok(PutOutcome::Created),
            Some(stored) => Err(conflict(key, &stored, data, "another writer stored them at the same moment")),
            None => Err(StorageError {
                kind: ErrorKind::Transient,
                operation: "put",
                key: key.to_string(),
                message: "the object was gone right after it was stored".into(),
            }),
        }
    }

    /// The bytes stored at `key`, or `None` if there is no such object.
    async fn stored(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.get(key).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError { operation: "put", ..e }),
        }
    }

    /// Whether the backend itself refuses to create a key that exists, so that of two concurrent puts of one
    /// key exactly one can create it. True for a local directory; false for S3, where [`Storage::put`] checks
    /// around the create because a server may ignore `If-None-Match` (Garage does).
    pub fn atomic_create(&self) -> bool {
        self.create == Create::Atomic
    }

    /// The content type the store serves `key` with, if the backend keeps one (a local directory does not).
    pub async fn stored_content_type(&self, key: &str) -> Result<Option<String>, StorageError> {
        let path = self.path(key, "head")?;
        let result = self
            .retry("head", key, || async {
                let result = self.store.get_opts(&path, GetOptions { head: true, ..GetOptions::default() }).await?;
                Ok(result.attributes.get(&Attribute::ContentType).map(|value| value.to_string()))
            })
            .await?;
        Ok(result)
    }

    /// Whether objects keep their content type and cache control in this backend.
    pub fn keeps_attributes(&self) -> bool {
        self.attributes
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.path(key, "get")?;
        self.retry("get", key, || async { self.store.get(&path).await?.bytes().await }).await
    }

    /// Bytes `range` of an object, as HTTP range requests and resumed downloads need.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes, StorageError> {
        let path = self.path(key, "get_range")?;
        self.retry("get_range", key, || self.store.get_range(&path, range.clone())).await
    }

    /// The keys under `prefix` (a key prefix ending at a `/`), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        use futures::TryStreamExt;
        let path = self.path(prefix.trim_end_matches('/'), "list")?;
        let mut keys: Vec<String> = self
            .retry("list", prefix, || {
                self.store.list(Some(&path)).map_ok(|meta| meta.location.to_string()).try_collect()
            })
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// Whether the store answers now, for readiness checks: one listing of a prefix nothing is stored under
    /// (`ladder-readyz/`), not retried by ladder and not counted in the storage metrics (the S3 client's own
    /// retries still apply: callers bound the wait). On S3 it needs `s3:ListBucket` on the bucket.
    pub async fn reachable(&self) -> Result<(), StorageError> {
        let path = self.path("ladder-readyz", "list")?;
        self.store.list_with_delimiter(Some(&path)).await.map(|_| ()).map_err(|error| StorageError {
            kind: classify(&error),
            operation: "list",
            key: "ladder-readyz/".to_string(),
            message: error.to_string(),
        })
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key, "delete")?;
        match self.retry("delete", key, || self.store.delete(&path)).await {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn path(&self, key: &str, operation: &'static str) -> Result<Path, StorageError> {
        Path::parse(key).map_err(|e| StorageError {
            kind: ErrorKind::Permanent,
            operation,
            key: key.to_string(),
            message: e.to_string(),
        })
    }

    async fn retry<T, F, Fut>(&self, operation: &'static str, key: &str, mut attempt: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let began = std::time::Instant::now();
            let result = attempt().await;
            metrics::request(operation, began.elapsed());
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let kind = classify(&error);
            metrics::error(operation, kind);
            if kind != ErrorKind::Transient || tries >= self.attempts {
                return Err(StorageError { kind, operation, key: key.to_string(), message: error.to_string() });
            }
            tracing::warn!(operation, key, tries, error = %error, "storage operation failed, retrying");
            tokio::time::sleep(Duration::from_millis(100 << tries)).await;
        }
    }
}

/// The outcome of a put that found `stored` at `key`: the same bytes are a retry, others a conflict.
fn compare(key: &str, stored: &Bytes, data: &Bytes) -> Result<PutOutcome, StorageError> {
    if stored == data {
        return Ok(PutOutcome::Unchanged);
    }
    Err(conflict(key, stored, data, "the key was already taken"))
}

fn conflict(key: &str, stored: &Bytes, data: &Bytes, how: &str) -> StorageError {
    metrics::error("put", ErrorKind::Conflict);
    // Logged here as well as returned, so that a refused overwrite is never silent, whatever the caller does.
    tracing::error!(
        key,
        stored_bytes = stored.len(),
        new_bytes = data.len(),
        how,
        "refused to overwrite an object with different bytes"
    );
    StorageError {
        kind: ErrorKind::Conflict,
        operation: "put",
        key: key.to_string(),
        message: format!(
            "refused: {how} by {} different bytes (these are {} bytes) and objects are write-once",
            stored.len(),
            data.len()
        ),
    }
}

fn classify(error: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    match error {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    }
}

pub mod conformance;

mod metrics {
    //! Storage latency and errors, per backend call (a retried call is counted per attempt).
    use std::{sync::LazyLock, time::Duration};

    use ladder_telemetry::{
        register, seconds_histograms, Counter, Family, HistogramFamily, OperationErrorLabels, OperationLabels,
    };

    use crate::ErrorKind;

    struct Metrics {
        requests: HistogramFamily<OperationLabels>,
        errors: Family<OperationErrorLabels, Counter>,
    }

    static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
        Metrics {
        requests: register(
            "ladder_storage_request_seconds",
            "Object storage calls (put, get, head, list, ...), each attempt, with their latency",
            seconds_histograms(),
        ),
        errors: register(
            "ladder_storage_errors",
            "Object storage calls that failed, by kind: not_found (often expected), transient (retried), permanent, conflict",
            Family::default(),
        ),
    }
    });

    pub(crate) fn request(operation: &'static str, took: Duration) {
        METRICS.requests.get_or_create(&OperationLabels { operation }).observe(took.as_secs_f64());
    }

    pub(crate) fn error(operation: &'static str, kind: ErrorKind) {
        let kind = match kind {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Conflict => "conflict",
        };
        METRICS.errors.get_or_create(&OperationErrorLabels { operation, kind }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_directory_conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::from_url(&format!("file://{}", dir.path().display())).expect("local storage");
        conformance::run(&storage).await;
    }

    /// A process killed while writing leaves its staging file `<key>#<n>` behind (see [`Storage::local`]): the
    /// key itself stays free, listings do not show the leftover, and the next put creates the key in full.
    #[tokio::test]
    async fn a_write_cut_short_leaves_the_key_free() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::local(dir.path()).expect("local storage");
        std::fs::create_dir_all(dir.path().join("live/cam1")).expect("mkdir");
        std::fs::write(dir.path().join("live/cam1/00000000.ts#1"), b"half a ch").expect("leftover");

        let missing = storage.get("live/cam1/00000000.ts").await.expect_err("nothing at the key");
        assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
        assert!(storage.list("live/cam1/").await.expect("list").is_empty(), "the leftover is not listed");
        let chunk = Bytes::from(vec![0x47; 188 * 10]);
        assert_eq!(storage.put("live/cam1/00000000.ts", chunk.clone()).await.expect("put"), PutOutcome::Created);
        assert_eq!(storage.get("live/cam1/00000000.ts").await.expect("get"), chunk);
        assert_eq!(storage.list("live/cam1/").await.expect("list"), vec!["live/cam1/00000000.ts".to_string()]);
    }

    #[tokio::test]
    async fn an_s3_store_nobody_serves_is_not_reachable() {
        let options = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("test".into()),
            access_key_id: Some("GK0000".into()),
            secret_access_key: Some("secret".into()),
        };
        let storage = Storage::s3("s3://bucket", &options).expect("s3 config");
        // Refused at once, or still retrying after 10 s: either way not an answer.
        let outcome = tokio::time::timeout(Duration::from_secs(10), storage.reachable()).await;
        assert!(matches!(outcome, Err(_) | Ok(Err(_))), "nothing listens on port 1: {outcome:?}");
    }

    #[test]
    fn refuses_unknown_schemes() {
        assert!(matches!(Storage::from_url("ftp://x"), Err(ConfigError::UnsupportedUrl(_))));
    }
}
