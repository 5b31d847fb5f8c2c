//! # Layout
//! Object storage for media, selected by URL. [`Storage`] wraps an [`object_store::ObjectStore`] and adds
//! what ladder needs on top: keys laid out in one place ([`keys`]), retries with backoff on transient errors,
//! and errors with a kind callers map to a decision (retry the message, or give up on it).
//!
//! Supported now: `file:///absolute/path` or a plain directory path (the embedded default).
#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use object_store::{local::LocalFileSystem, path::Path, ObjectStore, ObjectStoreExt, PutPayload};

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
    #[error("unsupported storage URL {0:?}: use file:///path or a directory path")]
    UnsupportedUrl(String),
    #[error("cannot use {path} for storage: {message}")]
    Directory { path: String, message: String },
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    description: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

const ATTEMPTS: u32 = 5;

impl Storage {
    pub fn from_url(url: &str) -> Result<Storage, ConfigError> {
        let dir = match url.strip_prefix("file://") {
            Some(path) => path,
            None if !url.contains("://") => url,
            None => return Err(ConfigError::UnsupportedUrl(url.to_string())),
        };
        Storage::local(std::path::Path::new(dir))
    }

    /// Objects as files under `dir`, which is created if needed.
    pub fn local(dir: &std::path::Path) -> Result<Storage, ConfigError> {
        let directory = |e: &dyn std::fmt::Display| ConfigError::Directory {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| directory(&e))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| directory(&e))?;
        Ok(Storage { store: Arc::new(store), description: format!("file://{}", dir.display()) })
    }

    /// Stores an object, retrying transient failures with exponential backoff.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let path = self.path(key, "put")?;
        self.retry("put", key, || self.store.put(&path, PutPayload::from(data.clone()))).await.map(|_| ())
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
            if kind != ErrorKind::Transient || tries >= ATTEMPTS {
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
