//! A payload store in an S3-compatible bucket, through `aws-sdk-s3`.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::{check_key, Op, PayloadStore};
use secrecy::{ExposeSecret, SecretString};

use crate::{Error, Result};

/// Where the bucket is and how to sign for it.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Endpoint URL (for S3-compatible services); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (may be empty).
    pub prefix: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key (never printed).
    pub secret_key: SecretString,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible servers.
    pub path_style: bool,
}

/// Objects in an S3 bucket; signed URLs are S3 presigned URLs.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

fn s3_err(what: &str, e: impl std::error::Error) -> Error {
    // The SDK's Display is terse; its Debug carries the service's error code.
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    Error::PayloadStore(format!("S3 {what}: {msg}"))
}

impl S3Store {
    /// A client for `cfg` (no network traffic until the first call).
    pub fn new(cfg: S3Config) -> S3Store {
        let creds = Credentials::new(cfg.access_key, cfg.secret_key.expose_secret(), None, None, "cloudsync");
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region))
            .credentials_provider(creds)
            .force_path_style(cfg.path_style);
        if let Some(ep) = cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        S3Store {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            bucket: cfg.bucket,
            prefix: cfg.prefix.trim_matches('/').to_string(),
        }
    }

    fn key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) })
    }

    /// Deletes the objects under `prefix` (a full bucket key prefix) that `select`
    /// picks, page by page; returns how many.
    async fn delete_where(&self, prefix: &str, select: impl Fn(&aws_sdk_s3::types::Object) -> bool) -> Result<u64> {
        let mut removed = 0;
        let mut token = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(&self.bucket);
            if !prefix.is_empty() {
                req = req.prefix(prefix);
            }
            if let Some(t) = token.take() {
                req = req.continuation_token(t);
            }
            let page = req.send().await.map_err(|e| s3_err("list", e))?;
            for k in page.contents().iter().filter(|o| select(o)).filter_map(|o| o.key()) {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(k)
                    .send()
                    .await
                    .map_err(|e| s3_err("delete", e))?;
                removed += 1;
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(removed)
    }

    /// Checks that the bucket is reachable with these credentials.
    pub async fn check(&self) -> Result<()> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| s3_err("head bucket", e))?;
        Ok(())
    }
}

impl PayloadStore for S3Store {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key)?)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| s3_err("put", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let out = self.client.get_object().bucket(&self.bucket).key(self.key(key)?).send().await.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                Error::NotFound { what: "payload object" }
            } else {
                s3_err("get", e)
            }
        })?;
        let data = out.body.collect().await.map_err(|e| s3_err("get body", e))?;
        Ok(data.into_bytes().to_vec())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key)?)
            .send()
            .await
            .map_err(|e| s3_err("delete", e))?;
        Ok(())
    }

    async fn presign(&self, key: &str, op: Op, ttl: Duration) -> Result<String> {
        let cfg = PresigningConfig::expires_in(ttl).map_err(|e| s3_err("presign", e))?;
        let key = self.key(key)?;
        let req = match op {
            // The size is a signed header: S3 refuses any other body length. (The hash
            // the key names is checked wherever the object is read.)
            Op::Put { len } => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                .presigned(cfg)
                .await
                .map_err(|e| s3_err("presign", e))?,
            Op::Get => self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(cfg)
                .await
                .map_err(|e| s3_err("presign", e))?,
        };
        Ok(req.uri().to_string())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        check_key(prefix)?;
        self.delete_where(&format!("{}/", self.key(prefix)?), |_| true).await
    }

    async fn expire(&self, age: Duration) -> Result<u64> {
        let cutoff = SystemTime::now().checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        let prefix = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        self.delete_where(&prefix, |obj| {
            obj.last_modified().and_then(|t| SystemTime::try_from(*t).ok()).is_some_and(|t| t < cutoff)
        })
        .await
    }
}
