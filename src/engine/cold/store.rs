//! The object store of the cold tier, behind a blocking API: the only
//! place that knows `object_store` and tokio. One object per sector, named
//! `<prefix>/<root>`; every request has a time limit.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientConfigKey, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use crate::error::{Error, Result};
use crate::merkle::Root;

/// Each request: connect within 5 s, answer within 10 s; retried (with
/// backoff) for at most 15 s, and cut off at 25 s whatever happens, so a
/// read of a cold sector fails within 30 s of asking.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);
const HARD_LIMIT: Duration = Duration::from_secs(25);

/// Where cold sectors go: a bucket and a prefix in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdUrl {
    pub bucket: String,
    pub prefix: String,
}

impl ColdUrl {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub fn parse(url: &str) -> Result<ColdUrl> {
        let bad = |why: &str| Error::Invalid(format!("--cold {url:?}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is missing"));
        }
        Ok(ColdUrl {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }
}

impl std::fmt::Display for ColdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The cold store: a client and the runtime its requests run on.
pub struct ColdStore {
    url: ColdUrl,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

/// What a request to the store found.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// No object under that name.
    NotFound,
    /// A create-only put found the object there already.
    Exists,
    /// Anything else: the store unreachable, refusing, or too slow.
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("no such object"),
            StoreError::Exists => f.write_str("the object exists already"),
            StoreError::Failed(why) => f.write_str(why),
        }
    }
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// Where a streamed object goes: its bytes as they come, then the outcome.
pub trait Sink: Send + 'static {
    fn take(&mut self, chunk: Bytes);
    fn finish(&mut self, outcome: StoreResult<()>);
}

impl ColdStore {
    /// A client for `url`, endpoint, region and credentials from the
    /// `AWS_*` variables. Checks nothing yet (see [`ColdStore::check`]).
    pub fn connect(url: ColdUrl) -> Result<ColdStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cold-store")
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the cold store's runtime", e))?;
        // path-style requests (what MinIO and RGW expect) unless
        // AWS_VIRTUAL_HOSTED_STYLE_REQUEST says otherwise
        let builder = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            // on top of the client settings from the environment
            // (AWS_ALLOW_HTTP, proxies), which with_client_options would drop
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                format!("{}s", CONNECT_TIMEOUT.as_secs()),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}s", REQUEST_TIMEOUT.as_secs()),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            });
        let store = builder
            .build()
            // the builder's messages name settings, never their values
            .map_err(|e| Error::Invalid(format!("cannot use the cold store {url}: {e}")))?;
        Ok(ColdStore {
            url,
            store: Arc::new(store),
            runtime,
        })
    }

    pub fn url(&self) -> &ColdUrl {
        &self.url
    }

    /// Checks the bucket can be listed, with a sentence naming the problem
    /// when not (credentials refused, no such bucket, nothing answering).
    pub fn check(&self) -> Result<()> {
        let store = self.store.clone();
        let prefix = self.prefix_path();
        let listed = self.run(async move {
            let mut list = store.list(Some(&prefix));
            match list.next().await {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            }
        });
        let e = match listed {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(timeout) => {
                return Err(Error::Unavailable(format!(
                    "the cold store {} does not answer: {timeout}",
                    self.url
                )));
            }
        };
        let text = e.to_string();
        let why =
            if text.contains("NoSuchBucket") || matches!(e, object_store::Error::NotFound { .. }) {
                format!("the bucket {:?} does not exist", self.url.bucket)
            } else if [
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "403",
            ]
            .iter()
            .any(|w| text.contains(w))
                || matches!(
                    e,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                )
            {
                "the store refused the credentials (check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY)"
                    .to_string()
            } else {
                "the store cannot be reached (check AWS_ENDPOINT, and AWS_ALLOW_HTTP=true for a \
             plain-HTTP endpoint)"
                    .to_string()
            };
        Err(Error::Invalid(format!(
            "cannot use the cold store {}: {why}: {}",
            self.url,
            first_line(&text)
        )))
    }

    /// Uploads `data` as the object of `root`, only if there is none.
    pub fn put_new(&self, root: &Root, data: Bytes) -> StoreResult<()> {
        let store = self.store.clone();
        let path = self.path_of(root);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.request(async move {
            store
                .put_opts(&path, PutPayload::from_bytes(data), opts)
                .await
                .map(|_| ())
        })
    }

    /// The size of the object of `root`.
    pub fn size(&self, root: &Root) -> StoreResult<u64> {
        let store = self.store.clone();
        let path = self.path_of(root);
        self.request(async move { store.head(&path).await.map(|m| m.size) })
    }

    /// Streams bytes `range` of the object of `root` into `sink`; returns
    /// at once (the request runs on the runtime, cut off at the hard limit).
    pub fn stream_range(&self, root: &Root, range: Range<u64>, mut sink: impl Sink) {
        let store = self.store.clone();
        let path = self.path_of(root);
        self.runtime.spawn(async move {
            let streamed = async {
                let options = GetOptions::new().with_range(Some(range));
                let mut chunks = store.get_opts(&path, options).await?.into_stream();
                while let Some(chunk) = chunks.next().await {
                    sink.take(chunk?);
                }
                Ok::<(), object_store::Error>(())
            };
            let outcome = match tokio::time::timeout(HARD_LIMIT, streamed).await {
                Ok(streamed) => streamed.map_err(to_store_error),
                Err(_) => Err(StoreError::Failed(no_answer())),
            };
            sink.finish(outcome);
        });
    }

    /// Deletes the object of `root` (none there: done).
    pub fn delete(&self, root: &Root) -> StoreResult<()> {
        let store = self.store.clone();
        let path = self.path_of(root);
        match self.request(async move { store.delete(&path).await }) {
            Err(StoreError::NotFound) => Ok(()),
            other => other,
        }
    }

    /// The roots of every object under the prefix (names that are not a
    /// root are skipped: not ours).
    pub fn list_roots(&self) -> StoreResult<Vec<Root>> {
        let store = self.store.clone();
        let prefix = self.prefix_path();
        let names = self
            .run(async move {
                let mut list = store.list(Some(&prefix));
                let mut names = Vec::new();
                while let Some(meta) = list.next().await {
                    names.push(meta?.location.filename().unwrap_or_default().to_string());
                }
                Ok::<_, object_store::Error>(names)
            })
            .map_err(StoreError::Failed)?
            .map_err(to_store_error)?;
        Ok(names.iter().filter_map(|n| n.parse().ok()).collect())
    }

    fn prefix_path(&self) -> ObjectPath {
        ObjectPath::from(self.url.prefix.as_str())
    }

    fn path_of(&self, root: &Root) -> ObjectPath {
        self.prefix_path().clone().join(root.to_string())
    }

    fn request<T: Send + 'static>(
        &self,
        f: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> StoreResult<T> {
        self.run(f)
            .map_err(StoreError::Failed)?
            .map_err(to_store_error)
    }

    /// Runs `f` on the runtime, cut off at the hard limit.
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> std::result::Result<T, String> {
        self.runtime
            .block_on(async move { tokio::time::timeout(HARD_LIMIT, f).await })
            .map_err(|_| no_answer())
    }
}

fn no_answer() -> String {
    format!("no answer within {} s", HARD_LIMIT.as_secs())
}

fn to_store_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            StoreError::Exists
        }
        e => StoreError::Failed(first_line(&e.to_string()).to_string()),
    }
}

/// Errors of the store can carry a whole response body: the first line
/// says it.
fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or("");
    match line.char_indices().nth(400) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::ColdUrl;

    #[test]
    fn cold_urls_name_a_bucket_and_a_prefix() {
        let u = ColdUrl::parse("s3://b/some/prefix/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("b", "some/prefix"));
        let u = ColdUrl::parse("s3://b").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("b", ""));
        assert!(ColdUrl::parse("http://b/x").is_err());
        assert!(ColdUrl::parse("s3:///x").is_err());
    }
}
