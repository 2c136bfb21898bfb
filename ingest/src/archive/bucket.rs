//! The archive's S3-compatible destination (AWS S3, MinIO, Ceph RGW, …) through `object_store`:
//! the same layout as a directory, below the configured prefix. A sealed file is uploaded in
//! parts, then the stream's manifest is replaced by one with the new file's line: S3 has no
//! append, and one archiver per deployment writes it.
//!
//! The archive's API is blocking (a rebuild reads it on blocking threads), so requests run on
//! one small runtime of their own and the caller's thread waits for them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, RetryConfig, WriteMultipart};
use tokio::io::AsyncReadExt;

use nerve_platform::config::S3Config;

use super::ArchiveError;

/// Bytes per uploaded part (S3's least is 5 MiB, but for the last).
const PART_BYTES: usize = 8 << 20;

/// A bucket (and prefix) holding an archive.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    store: Arc<AmazonS3>,
    name: String,
    prefix: String,
}

impl Bucket {
    /// The bucket `config` names, with its credentials.
    pub(super) fn open(config: &S3Config) -> Result<Self, ArchiveError> {
        let invalid = |e: &dyn std::fmt::Display| ArchiveError::Format {
            path: PathBuf::from(format!("s3://{}", config.bucket)),
            message: e.to_string(),
        };
        // A few quick retries: the archiver retries a failed file every second anyway, and a
        // replay should say soon that the bucket cannot be reached.
        let retry = RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_retry(retry);
        if !config.region.is_empty() {
            builder = builder.with_region(&config.region);
        }
        if !config.endpoint.is_empty() {
            builder = builder
                .with_endpoint(&config.endpoint)
                .with_allow_http(config.endpoint.starts_with("http://"));
        }
        if let Some(key) = config.credentials().map_err(|e| invalid(&e))? {
            builder = builder
                .with_access_key_id(key.access_key_id)
                .with_secret_access_key(key.secret_access_key);
            if let Some(token) = key.session_token {
                builder = builder.with_token(token);
            }
        }
        let store = builder.build().map_err(|e| invalid(&e))?;
        Ok(Self {
            store: Arc::new(store),
            name: config.bucket.clone(),
            prefix: config.prefix.trim_matches('/').to_owned(),
        })
    }

    /// `rel` (a path below the archive's root) as a key.
    fn key(&self, rel: &Path) -> Key {
        let rel = rel.to_string_lossy();
        match self.prefix.as_str() {
            "" => Key::from(rel.as_ref()),
            prefix => Key::from(format!("{prefix}/{rel}")),
        }
    }

    /// Where `rel` is, for messages: `s3://bucket/prefix/rel`.
    pub(super) fn url(&self, rel: &Path) -> PathBuf {
        PathBuf::from(format!("s3://{}/{}", self.name, self.key(rel)))
    }

    fn failed(&self, rel: &Path) -> impl FnOnce(object_store::Error) -> ArchiveError + use<> {
        let path = self.url(rel);
        move |e| ArchiveError::Format {
            path,
            message: e.to_string(),
        }
    }

    /// The object at `rel`; None when there is none.
    pub(super) fn get(&self, rel: &Path) -> Result<Option<Vec<u8>>, ArchiveError> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let got = block(async move {
            match store.get(&key).await {
                Ok(object) => object.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        Ok(got.map_err(self.failed(rel))?.map(|b| b.to_vec()))
    }

    /// Replaces the object at `rel` with `bytes`.
    pub(super) fn put(&self, rel: &Path, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        let (store, key) = (self.store.clone(), self.key(rel));
        block(async move { store.put(&key, bytes.into()).await.map(|_| ()) })
            .map_err(self.failed(rel))
    }

    /// Uploads the local file `from` as `rel`, in parts.
    pub(super) fn upload(&self, from: &Path, rel: &Path) -> Result<(), ArchiveError> {
        let (store, key, local) = (self.store.clone(), self.key(rel), from.to_owned());
        let outcome = block(async move {
            let mut file = tokio::fs::File::open(&local).await.map_err(Upload::Read)?;
            let upload = store.put_multipart(&key).await.map_err(Upload::Store)?;
            let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut buf = vec![0u8; 1 << 20];
            let written = async {
                loop {
                    let n = file.read(&mut buf).await.map_err(Upload::Read)?;
                    if n == 0 {
                        return Ok(());
                    }
                    parts.wait_for_capacity(4).await.map_err(Upload::Store)?;
                    parts.write(&buf[..n]);
                }
            }
            .await;
            match written {
                Ok(()) => parts.finish().await.map(|_| ()).map_err(Upload::Store),
                Err(e) => {
                    let _ = parts.abort().await;
                    Err(e)
                }
            }
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(Upload::Read(e)) => Err(ArchiveError::io(from)(e)),
            Err(Upload::Store(e)) => Err(self.failed(rel)(e)),
        }
    }
}

enum Upload {
    Read(std::io::Error),
    Store(object_store::Error),
}

/// Runs `request` on the archive's I/O runtime and waits for it.
fn block<T: Send + 'static>(request: impl Future<Output = T> + Send + 'static) -> T {
    static IO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let io = IO.get_or_init(|| {
        // Building a runtime fails only when the OS refuses threads.
        #[allow(clippy::expect_used)]
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nerve-archive-io")
            .enable_all()
            .build()
            .expect("the archive's I/O runtime")
    });
    // A request's future does not panic; a JoinError would be a bug worth the panic.
    #[allow(clippy::expect_used)]
    futures::executor::block_on(io.spawn(request)).expect("archive request")
}
