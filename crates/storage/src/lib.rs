//! # Layout
//! Object storage for media, selected by URL. [`Storage`] wraps an [`object_store::ObjectStore`] and adds
//! what ladder needs on top: keys laid out in one place ([`keys`]), retries with backoff on transient errors,
//! content types, and errors with a kind callers map to a decision (retry the message, or give up on it).
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
    Attribute, Attributes, BackoffConfig, ClientConfigKey, GetOptions, ObjectStore, ObjectStoreExt, PutOptions,
    PutPayload, RetryConfig,
};

/// Where each object lives. Keys are deterministic, so a retried upload overwrites the same object.
pub mod keys {
    /// `live/<stream>/<session>/source/<seq>.ts`
    pub fn source_chunk(stream: &str, session: &str, sequence: u64) -> String {
        format!("live/{stream}/{session}/source/{sequence:08}.ts")
    }

    /// `live/<stream>/<session>/<rendition>/<seq>.ts`
    pub fn rendition_chunk(stream: &str, session: &str, rendition: &str, sequence: u64) -> String {
        format!("live/{stream}/{session}/{rendition}/{sequence:08}.ts")
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
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

const LOCAL_ATTEMPTS: u32 = 5;

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
        let store = builder.with_retry(retry).build().map_err(|e| error(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
            "" => Arc::new(store),
            prefix => Arc::new(PrefixStore::new(store, prefix)),
        };
        Ok(Storage { store, description: url.to_string(), attributes: true, attempts: 1 })
    }

    /// Objects as files under `dir`, which is created if needed.
    pub fn local(dir: &std::path::Path) -> Result<Storage, ConfigError> {
        let directory = |e: &dyn std::fmt::Display| ConfigError::Directory {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| directory(&e))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| directory(&e))?;
        Ok(Storage {
            store: Arc::new(store),
            description: format!("file://{}", dir.display()),
            attributes: false,
            attempts: LOCAL_ATTEMPTS,
        })
    }

    /// Stores an object, retrying transient failures with exponential backoff.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let path = self.path(key, "put")?;
        let mut options = PutOptions::default();
        if self.attributes {
            options.attributes = Attributes::from_iter([
                (Attribute::ContentType, content_type(key)),
                // Keys are never reused for other content, so caches and CDNs may keep objects for good.
                (Attribute::CacheControl, "public, max-age=31536000, immutable"),
            ]);
        }
        self.retry("put", key, || self.store.put_opts(&path, PutPayload::from(data.clone()), options.clone()))
            .await
            .map(|_| ())
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
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let kind = classify(&error);
            if kind != ErrorKind::Transient || tries >= self.attempts {
                return Err(StorageError { kind, operation, key: key.to_string(), message: error.to_string() });
            }
            tracing::warn!(operation, key, tries, error = %error, "storage operation failed, retrying");
            tokio::time::sleep(Duration::from_millis(100 << tries)).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_directory_conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::from_url(&format!("file://{}", dir.path().display())).expect("local storage");
        conformance::run(&storage).await;
    }

    #[test]
    fn refuses_unknown_schemes() {
        assert!(matches!(Storage::from_url("ftp://x"), Err(ConfigError::UnsupportedUrl(_))));
    }
}
