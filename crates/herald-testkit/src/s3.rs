//! A prefix of its own in the test bucket for each test: the S3-compatible server that
//! `scripts/test` starts on loopback (`HERALD_TEST_S3_ENDPOINT`, bucket `HERALD_TEST_S3_BUCKET`,
//! `herald-test` by default), with the credentials every test uses. It looks behind the Files
//! port too: the objects under the prefix, and the multipart uploads still open there.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::TryStreamExt as _;
use herald_store::{S3Endpoint, S3Files, S3Location, S3Options};
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt as _, PutPayload,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    path::Path,
};
use uuid::Uuid;

/// The bucket's variable; the endpoint is `HERALD_TEST_S3_ENDPOINT`.
const BUCKET_VAR: &str = "HERALD_TEST_S3_BUCKET";

/// One test's prefix in the test bucket.
#[derive(Debug, Clone)]
pub struct TestBucket {
    pub endpoint: String,
    pub bucket: String,
    /// `t-<uuid>`, this test's alone.
    pub prefix: String,
    raw: Arc<dyn ObjectStore>,
    http: reqwest::Client,
}

impl TestBucket {
    /// A fresh prefix, when `HERALD_TEST_S3_ENDPOINT` is set (else skipped loudly, or failed
    /// under `HERALD_TEST_REQUIRE_ALL=1`).
    pub fn new(test: &str) -> Option<Self> {
        let endpoint = crate::test_env::backend_url("HERALD_TEST_S3_ENDPOINT", test)?.trim_end_matches('/').to_owned();
        let bucket = std::env::var(BUCKET_VAR).ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "herald-test".into());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_endpoint(&endpoint)
            .with_virtual_hosted_style_request(false)
            .with_client_options(ClientOptions::new().with_allow_http(true));
        for (name, value) in Self::credentials() {
            builder = builder.with_config(name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>().expect("key"), value);
        }
        let raw = Arc::new(builder.build().expect("test bucket client"));
        let prefix = format!("t-{}", Uuid::now_v7().simple());
        let http = crate::http::builder().timeout(Duration::from_secs(10)).build().expect("http client");
        Some(Self { endpoint, bucket, prefix, raw, http })
    }

    /// The `AWS_*` variables a Herald process (or [`S3Files::open`]) gets: the test server takes
    /// any credentials.
    pub fn credentials() -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "herald-test"),
            ("AWS_SECRET_ACCESS_KEY", "herald-test-secret"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// `HERALD_FILES_URL` for this prefix.
    pub fn files_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// Everything a Herald process needs to keep its files here.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = Self::credentials().into_iter().collect();
        env.insert("HERALD_FILES_URL".into(), self.files_url());
        env.insert("HERALD_S3_ENDPOINT".into(), self.endpoint.clone());
        env
    }

    /// The Files adapter over this prefix, opened as a Herald process opens it with the default
    /// settings (100 MiB uploads, 256 MiB of upload memory).
    pub async fn files(&self) -> S3Files {
        self.files_with(S3Options { max_upload_size: 100 << 20, upload_memory: 256 << 20 }).await
    }

    /// The Files adapter over this prefix with `options`.
    pub async fn files_with(&self, options: S3Options) -> S3Files {
        let location: S3Location = self.files_url().parse().expect("location");
        let endpoint: S3Endpoint = self.endpoint.parse().expect("endpoint");
        S3Files::open(&location, Some(&endpoint), options, Self::credentials()).await.expect("open the test bucket")
    }

    /// The entity tag of the object at `<prefix>/<name>`: `"…-<parts>"` for a multipart upload.
    pub async fn etag(&self, name: &str) -> String {
        self.raw.head(&self.path(name)).await.expect("head").e_tag.unwrap_or_default()
    }

    fn path(&self, name: &str) -> Path {
        Path::parse(format!("{}/{name}", self.prefix)).expect("object path")
    }

    /// Puts an object at `<prefix>/<name>` behind Herald's back (`name` may hold slashes).
    pub async fn put(&self, name: &str, bytes: &[u8]) {
        self.raw.put(&self.path(name), PutPayload::from(bytes.to_vec())).await.expect("put an object");
    }

    /// Every object under the prefix, as names below it, with their sizes.
    pub async fn objects(&self) -> Vec<(String, u64)> {
        let listed: Vec<_> =
            self.raw.list(Some(&Path::from(self.prefix.as_str()))).try_collect().await.expect("list the prefix");
        let strip = format!("{}/", self.prefix);
        listed
            .into_iter()
            .map(|meta| (meta.location.as_ref().strip_prefix(&strip).unwrap_or_default().to_owned(), meta.size))
            .collect()
    }

    /// The keys of the multipart uploads still open under the prefix (ListMultipartUploads; the
    /// test server answers unsigned requests).
    pub async fn open_uploads(&self) -> Vec<String> {
        let url = format!("{}/{}?uploads&prefix={}/", self.endpoint, self.bucket, self.prefix);
        let resp = self.http.get(url).send().await.expect("list multipart uploads");
        assert!(resp.status().is_success(), "list multipart uploads: {}", resp.status());
        let xml = resp.text().await.expect("body");
        xml.split("<Upload>")
            .skip(1)
            .filter_map(|upload| upload.split_once("<Key>").and_then(|(_, rest)| rest.split_once("</Key>")))
            .map(|(key, _)| key.to_owned())
            .collect()
    }

    /// Waits until no multipart upload is open under the prefix (a dropped upload is aborted in
    /// the background), up to `wait`; returns those still open.
    pub async fn wait_no_open_uploads(&self, wait: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let open = self.open_uploads().await;
            if open.is_empty() || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes what the test left under its prefix.
    pub async fn finish(self) {
        let listed: Vec<_> =
            self.raw.list(Some(&Path::from(self.prefix.as_str()))).try_collect().await.unwrap_or_default();
        for meta in listed {
            self.raw.delete(&meta.location).await.ok();
        }
    }
}
