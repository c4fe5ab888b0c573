//! # squash-s3
//!
//! The S3 store (aws-sdk-s3): `s3://bucket/prefix` URIs, a custom endpoint for
//! S3-compatible servers (path-style addressing), credentials and region from the usual
//! AWS chain (environment, profile files, instance/container roles), multipart upload
//! for large objects.
//!
//! The [`ObjectStore`] trait is synchronous; this store runs the SDK on a small tokio
//! runtime of its own. Called from inside another tokio runtime, it hops to a scoped
//! thread instead of blocking that runtime's worker.
//!
//! Also opens a store from its location ([`open_store`], [`Connector`]): `s3://bucket/prefix`
//! or a local directory. A crate of its own so that the query engine, the build and
//! their tests link without the AWS SDK.

#![warn(missing_docs)]

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use squash_storage::{validate_key, LocalDir, ObjectStore, Precondition, Result, Retrying, StorageError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Objects at or above this size are uploaded in parts.
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 64 << 20;
/// Size of each uploaded part (S3's minimum is 5 MiB except for the last part).
pub const DEFAULT_PART_SIZE: usize = 16 << 20;

/// One S3 client and the small tokio runtime it runs on. Build it once per process (or
/// Lambda container) and open every `s3://` location through it
/// ([`S3Store::with_client`], or [`Connector`]): the client keeps its connection
/// pool and credentials cache across indexes.
pub struct S3Client {
    client: aws_sdk_s3::Client,
    runtime: tokio::runtime::Runtime,
}

impl S3Client {
    /// A client with credentials and region from the usual AWS chain. The endpoint is
    /// `endpoint` if given, else `SQUASH_S3_ENDPOINT`, else the chain's
    /// (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, profile); with a custom endpoint,
    /// path-style addressing is used. The region defaults to `us-east-1`.
    pub fn new(endpoint: Option<&str>) -> Result<S3Client> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("squash-s3")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Io {
                store: "s3".to_string(),
                key: String::new(),
                source: e,
            })?;
        let sdk = block_on(&runtime, aws_config::load_from_env());
        let endpoint = endpoint
            .map(|e| e.to_string())
            .or_else(|| std::env::var("SQUASH_S3_ENDPOINT").ok())
            .filter(|e| !e.is_empty())
            .or_else(|| sdk.endpoint_url().map(|e| e.to_string()));
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(60))
            .build();
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk).timeout_config(timeouts);
        if sdk.region().is_none() {
            conf = conf.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = endpoint {
            conf = conf.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(S3Client {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            runtime,
        })
    }
}

/// Runs a future on `runtime`, from sync or async callers alike: inside another tokio
/// runtime it hops to a scoped thread instead of blocking that runtime's worker.
fn block_on<F: Future + Send>(runtime: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(|| runtime.block_on(fut)).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    } else {
        runtime.block_on(fut)
    }
}

/// Objects under `s3://bucket/prefix`.
pub struct S3Store {
    shared: Arc<S3Client>,
    bucket: String,
    prefix: String,
    multipart_threshold: usize,
    part_size: usize,
}

/// Splits `s3://bucket/prefix/...` into bucket and prefix (without trailing `/`).
pub fn parse_s3_uri(uri: &str) -> Result<(String, String)> {
    let bad = |reason: &str| StorageError::InvalidKey {
        key: uri.to_string(),
        reason: reason.to_string(),
    };
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| bad("expected s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty()
        || bucket.len() > 63
        || !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(bad("invalid bucket name"));
    }
    let prefix = prefix.trim_end_matches('/').to_string();
    if !prefix.is_empty() {
        validate_key(&prefix)?;
    }
    Ok((bucket.to_string(), prefix))
}

impl S3Store {
    /// Opens `s3://bucket/prefix` with a client of its own (see [`S3Client::new`] for
    /// the endpoint and region). Opening many locations? Share one client:
    /// [`S3Store::with_client`].
    pub fn open(uri: &str) -> Result<S3Store> {
        S3Store::open_with_endpoint(uri, None)
    }

    /// Like [`S3Store::open`], with an explicit endpoint (path-style) taking precedence.
    pub fn open_with_endpoint(uri: &str, endpoint: Option<&str>) -> Result<S3Store> {
        parse_s3_uri(uri)?;
        S3Store::with_client(Arc::new(S3Client::new(endpoint)?), uri)
    }

    /// Opens `s3://bucket/prefix` through a shared client.
    pub fn with_client(shared: Arc<S3Client>, uri: &str) -> Result<S3Store> {
        let (bucket, prefix) = parse_s3_uri(uri)?;
        Ok(S3Store {
            shared,
            bucket,
            prefix,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
        })
    }

    /// Sets the multipart threshold and part size (part size at least 5 MiB).
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> S3Store {
        self.multipart_threshold = threshold.max(1);
        self.part_size = part_size.max(5 << 20);
        self
    }

    fn full_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    /// Runs a future on the shared client's runtime, from sync or async callers alike.
    fn run<F: Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        block_on(&self.shared.runtime, fut)
    }

    fn remote<E: ProvideErrorMetadata + std::fmt::Debug>(&self, key: &str, err: SdkError<E>) -> StorageError {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let transient = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
            _ => matches!(status, Some(429) | Some(500..=599)),
        };
        let detail = match (err.code(), err.message()) {
            (Some(code), Some(msg)) => format!("{code}: {msg}"),
            (Some(code), None) => code.to_string(),
            _ => format!("{err:?}").chars().take(300).collect(),
        };
        if status == Some(412) || status == Some(409) || err.code() == Some("PreconditionFailed") {
            return StorageError::Conflict {
                store: self.describe(),
                key: key.to_string(),
            };
        }
        if status == Some(404) || err.code() == Some("NoSuchKey") || err.code() == Some("NotFound") {
            return StorageError::NotFound {
                store: self.describe(),
                key: key.to_string(),
            };
        }
        StorageError::Remote {
            store: self.describe(),
            key: key.to_string(),
            message: match status {
                Some(s) => format!("HTTP {s}, {detail}"),
                None => detail,
            },
            transient,
        }
    }

    async fn get_tagged_async(&self, key: &str) -> Result<(Vec<u8>, String)> {
        let full = self.full_key(key)?;
        let out = self
            .shared
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.remote(key, e))?;
        let tag = out.e_tag().unwrap_or_default().to_string();
        let body = out.body.collect().await.map_err(|e| StorageError::Remote {
            store: self.describe(),
            key: key.to_string(),
            message: format!("reading the body failed: {e}"),
            transient: true,
        })?;
        let bytes = body.into_bytes().to_vec();
        if tag.is_empty() {
            return Err(StorageError::Unsupported {
                store: self.describe(),
                what: format!("ETags (none on '{key}')"),
            });
        }
        Ok((bytes, tag))
    }

    async fn get_async(&self, key: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
        let full = self.full_key(key)?;
        let mut req = self.shared.client.get_object().bucket(&self.bucket).key(&full);
        if let Some((start, end)) = range {
            if end <= start {
                return Ok(Vec::new());
            }
            req = req.range(format!("bytes={start}-{}", end - 1));
        }
        let out = req.send().await.map_err(|e| self.remote(key, e))?;
        let body = out.body.collect().await.map_err(|e| StorageError::Remote {
            store: self.describe(),
            key: key.to_string(),
            message: format!("reading the body failed: {e}"),
            transient: true,
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn put_multipart(&self, key: &str, full: &str, bytes: &[u8]) -> Result<()> {
        let created = self
            .shared
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.remote(key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let mut tasks = Vec::new();
        for (i, chunk) in bytes.chunks(self.part_size).enumerate() {
            let req = self
                .shared
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .part_number(i as i32 + 1)
                .body(ByteStream::from(chunk.to_vec()));
            tasks.push(tokio::spawn(async move { (i, req.send().await) }));
        }
        let mut parts = Vec::with_capacity(tasks.len());
        let mut failure = None;
        for t in tasks {
            match t.await {
                Ok((i, Ok(out))) => parts.push(
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .set_e_tag(out.e_tag().map(|s| s.to_string()))
                        .build(),
                ),
                Ok((_, Err(e))) => failure = Some(self.remote(key, e)),
                Err(e) => {
                    failure = Some(StorageError::Remote {
                        store: self.describe(),
                        key: key.to_string(),
                        message: format!("upload task failed: {e}"),
                        transient: true,
                    })
                }
            }
        }
        if let Some(err) = failure {
            let _ = self
                .shared
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(err);
        }
        parts.sort_by_key(|p| p.part_number());
        self.shared
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| self.remote(key, e))?;
        Ok(())
    }
}

impl ObjectStore for S3Store {
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.run(self.get_async(key, None))
    }

    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        self.run(self.get_async(key, Some((start, end))))
    }

    fn get_many(&self, keys: &[&str]) -> Vec<Result<Vec<u8>>> {
        self.run(async {
            let futures: Vec<_> = keys.iter().map(|k| self.get_async(k, None)).collect();
            let mut out = Vec::with_capacity(futures.len());
            // Drive them concurrently: each GET is I/O bound.
            let joined = join_all(futures).await;
            out.extend(joined);
            out
        })
    }

    fn get_ranges(&self, ranges: &[(&str, u64, u64)]) -> Vec<Result<Vec<u8>>> {
        self.run(async {
            let futures: Vec<_> = ranges
                .iter()
                .map(|&(k, s, e)| self.get_async(k, Some((s, e))))
                .collect();
            join_all(futures).await
        })
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let full = self.full_key(key)?;
        self.run(async {
            match self
                .shared
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
            {
                Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
                Err(e) => match self.remote(key, e) {
                    StorageError::NotFound { .. } => Ok(None),
                    other => Err(other),
                },
            }
        })
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let full = self.full_key(key)?;
        self.run(async {
            if bytes.len() >= self.multipart_threshold && bytes.len() > self.part_size {
                return self.put_multipart(key, &full, bytes).await;
            }
            self.shared
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .map_err(|e| self.remote(key, e))?;
            Ok(())
        })
    }

    fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, String)> {
        self.run(self.get_tagged_async(key))
    }

    fn put_if(&self, key: &str, bytes: &[u8], when: &Precondition) -> Result<String> {
        let full = self.full_key(key)?;
        self.run(async {
            let mut req = self
                .shared
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .body(ByteStream::from(bytes.to_vec()));
            req = match when {
                Precondition::Absent => req.if_none_match("*"),
                Precondition::Matches(tag) => req.if_match(tag),
            };
            let out = req.send().await.map_err(|e| self.remote(key, e))?;
            Ok(out.e_tag().unwrap_or_default().to_string())
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        self.run(async {
            self.shared
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| self.remote(key, e))?;
            Ok(())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.list_modified(prefix)?.into_iter().map(|(k, _)| k).collect())
    }

    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<std::time::SystemTime>)>> {
        let root = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let full = format!("{root}{prefix}");
        self.run(async {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut req = self.shared.client.list_objects_v2().bucket(&self.bucket).prefix(&full);
                if let Some(t) = &token {
                    req = req.continuation_token(t);
                }
                let page = req.send().await.map_err(|e| self.remote(prefix, e))?;
                for obj in page.contents() {
                    if let Some(k) = obj.key().and_then(|k| k.strip_prefix(&root)) {
                        let modified = obj
                            .last_modified()
                            .and_then(|t| std::time::SystemTime::try_from(*t).ok());
                        keys.push((k.to_string(), modified));
                    }
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Awaits futures concurrently, results in input order (a tiny `join_all`).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..futures.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futures.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// Opens the store a location names: `s3://bucket/prefix` or a local
/// directory path. Each call builds its own S3 client; a process that opens many
/// locations builds one [`Connector`] instead.
pub fn open_store(location: &str) -> Result<Arc<dyn ObjectStore>> {
    Connector::for_root(location)?.open(location)
}

/// Opens store locations with clients built once: when the root it is made for is an
/// `s3://` location, one S3 client (and its runtime) serves every location it opens, as
/// a Lambda container should (clients built at cold start, reused by every request).
#[derive(Clone, Default)]
pub struct Connector {
    s3: Option<Arc<S3Client>>,
}

impl Connector {
    /// Builds the clients that locations under `root` need: an S3 client for `s3://`
    /// roots, nothing for directories.
    pub fn for_root(root: &str) -> Result<Connector> {
        if root.starts_with("s3://") {
            parse_s3_uri(root)?;
            return Ok(Connector {
                s3: Some(Arc::new(S3Client::new(None)?)),
            });
        }
        Ok(Connector::default())
    }

    /// Opens `location`: `s3://bucket/prefix` through the shared client (a client of its
    /// own when this connector was made for a directory root), or a local directory.
    pub fn open(&self, location: &str) -> Result<Arc<dyn ObjectStore>> {
        if location.starts_with("s3://") {
            let client = match &self.s3 {
                Some(client) => client.clone(),
                None => Arc::new(S3Client::new(None)?),
            };
            return Ok(Arc::new(Retrying::new(S3Store::with_client(client, location)?)));
        }
        if location.contains("://") {
            return Err(StorageError::InvalidKey {
                key: location.to_string(),
                reason: "unknown scheme (expected s3:// or a directory path)".into(),
            });
        }
        Ok(Arc::new(LocalDir::new(location)))
    }

    /// True when S3 locations share one client.
    pub fn shares_s3_client(&self) -> bool {
        self.s3.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connector_builds_one_s3_client_for_an_s3_root_and_none_for_a_directory() {
        let dir = std::env::temp_dir().join(format!("squash-connector-{}", std::process::id()));
        let local = Connector::for_root(dir.to_str().unwrap()).unwrap();
        assert!(!local.shares_s3_client());
        let store = local.open(dir.join("idx").to_str().unwrap()).unwrap();
        assert!(store.describe().contains("idx"), "{}", store.describe());
        // Building the client reads configuration only; nothing is sent.
        let s3 = Connector::for_root("s3://bucket/indexes").unwrap();
        assert!(s3.shares_s3_client());
        let a = s3.open("s3://bucket/indexes/a").unwrap();
        let b = s3.open("s3://bucket/indexes/b").unwrap();
        assert_eq!(
            (a.describe(), b.describe()),
            ("s3://bucket/indexes/a".into(), "s3://bucket/indexes/b".into())
        );
        assert!(Connector::for_root("s3://Bad_Bucket!/x").is_err());
        for bad in ["ftp://host/x", "gs://bucket/x"] {
            assert!(matches!(local.open(bad), Err(StorageError::InvalidKey { .. })), "{bad}");
            assert!(matches!(open_store(bad), Err(StorageError::InvalidKey { .. })), "{bad}");
        }
    }

    #[test]
    fn parses_uris() {
        assert_eq!(parse_s3_uri("s3://b/p/q/").unwrap(), ("b".into(), "p/q".into()));
        assert_eq!(parse_s3_uri("s3://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_s3_uri("s3:///p").is_err());
        assert!(parse_s3_uri("http://b/p").is_err());
        assert!(parse_s3_uri("s3://b/../p").is_err());
        assert!(parse_s3_uri("s3://b_c/p").is_err());
    }
}
