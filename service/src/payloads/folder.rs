//! A payload store in a local folder, with URLs signed by HMAC-SHA256.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{check_key, Op, PayloadStore};
use crate::ids::now_ms;
use crate::{Error, Result};

/// Objects as files under `root`; signed URLs point at the service's
/// `/v1/blobs/<key>` endpoint, which checks them with [`FolderStore::verify`].
#[derive(Clone, Debug)]
pub struct FolderStore {
    root: PathBuf,
    public_url: String,
    secret: Vec<u8>,
}

/// A failure of the folder itself (full, unwritable, gone): the payload store is
/// unavailable, which callers answer with a retryable error.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::PayloadStore(format!("{}: {source}", path.display()))
}

impl FolderStore {
    /// A store in `root`, signing URLs for `public_url` (the service's base URL) with
    /// `secret`.
    pub fn new(root: PathBuf, public_url: String, secret: Vec<u8>) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(FolderStore { root, public_url: public_url.trim_end_matches('/').to_string(), secret })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn signature(&self, key: &str, op: Op, expires: i64) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(format!("{}\n{key}\n{expires}", op.name()).as_bytes());
        if let Op::Put { len } = op {
            mac.update(format!("\n{len}").as_bytes());
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// Starts writing an object that a signed URL granted (streamed: memory does not
    /// grow with the object). Upload keys name the SHA-256 of their bytes
    /// ([`super::object_key`]), so an object that exists already has exactly these
    /// bytes: `None` then, and nothing is written (a retried or replayed upload is
    /// harmless). `NewObject::finish` makes a new object visible only if it has
    /// exactly the granted size and the hash its key names.
    pub async fn create(&self, key: &str, len: u64) -> Result<Option<NewObject>> {
        let hash = super::key_hash(key).ok_or_else(|| Error::Invalid("not an upload key".into()))?;
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        if tokio::fs::try_exists(&path).await.map_err(io(&path))? {
            return Ok(None);
        }
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
        let file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        use sha2::Digest;
        Ok(Some(NewObject { file, tmp, path, dir, len, written: 0, hash, sha: Sha256::new() }))
    }

    /// Whether a signed URL's parameters are valid now (constant-time comparison).
    pub fn verify(&self, key: &str, op: Op, expires: i64, signature_hex: &str) -> bool {
        let Ok(given) = hex::decode(signature_hex) else { return false };
        expires > now_ms() && check_key(key).is_ok() && bool::from(self.signature(key, op, expires).ct_eq(&given))
    }
}

/// An object being written through a signed URL ([`FolderStore::create`]). Dropped
/// unfinished (the client went away, the body was refused), its partial file goes.
pub struct NewObject {
    file: tokio::fs::File,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    len: u64,
    written: u64,
    hash: [u8; 32],
    sha: Sha256,
}

impl NewObject {
    /// Appends bytes; refuses more than the granted size.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        self.written += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        if self.written > self.len {
            self.discard().await;
            return Err(Error::Invalid(format!(
                "the body is longer than the {} bytes the URL was issued for",
                self.len
            )));
        }
        self.sha.update(chunk);
        self.file.write_all(chunk).await.map_err(io(&self.tmp))
    }

    /// Checks size and hash, then makes the object durable and visible, once.
    pub async fn finish(mut self) -> Result<()> {
        use sha2::Digest;
        if self.written != self.len {
            self.discard().await;
            return Err(Error::Invalid(format!(
                "the body has {} bytes; the URL was issued for {}",
                self.written, self.len
            )));
        }
        let digest = std::mem::take(&mut self.sha).finalize();
        if self.hash.as_slice() != digest.as_slice() {
            self.discard().await;
            return Err(Error::Invalid("the body does not match the hash the URL was issued for".into()));
        }
        self.file.sync_all().await.map_err(io(&self.tmp))?;
        // A hard link never replaces: when a concurrent upload of the same bytes won,
        // its object (named by the same hash) stays.
        let linked = tokio::fs::hard_link(&self.tmp, &self.path).await;
        self.discard().await;
        match linked {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other.map_err(io(&self.path))?,
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir)))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    async fn discard(&mut self) {
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

impl Drop for NewObject {
    fn drop(&mut self) {
        // Usually gone already (finished or discarded); one unlink otherwise.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl PayloadStore for FolderStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            use std::io::Write;
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            // Make the rename itself durable.
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        tokio::fs::read(&path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { what: "payload object" },
            _ => io(&path)(e),
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    async fn presign(&self, key: &str, op: Op, ttl: Duration) -> Result<String> {
        check_key(key)?;
        let expires = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let sig = hex::encode(self.signature(key, op, expires));
        let len = match op {
            Op::Put { len } => format!("&len={len}"),
            Op::Get => String::new(),
        };
        Ok(format!("{}/v1/blobs/{key}?op={}{len}&expires={expires}&sig={sig}", self.public_url, op.name()))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        check_key(prefix)?;
        let dir = self.root.join(prefix);
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let mut removed = 0;
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else { continue };
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(entry.path());
                    } else {
                        removed += 1;
                    }
                }
            }
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
                _ => Ok(removed),
            }
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    async fn expire(&self, age: Duration) -> Result<u64> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let cutoff = SystemTime::now().checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
            let mut removed = 0;
            let mut stack = vec![root];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Ok(meta) = entry.metadata() else { continue };
                    if meta.is_dir() {
                        stack.push(path);
                    } else if meta.modified().is_ok_and(|m| m < cutoff) && std::fs::remove_file(&path).is_ok() {
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete_and_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let s = FolderStore::new(dir.path().to_path_buf(), "http://h:1/".into(), b"secret".to_vec()).unwrap();
        s.put("a/b/c.csyn", b"hello".to_vec()).await.unwrap();
        assert_eq!(s.get("a/b/c.csyn").await.unwrap(), b"hello");
        assert!(matches!(s.get("a/b/missing").await, Err(Error::NotFound { .. })));
        assert!(s.put("../escape", vec![]).await.is_err());
        let url = s.presign("a/b/c.csyn", Op::Get, Duration::from_secs(60)).await.unwrap();
        assert!(url.starts_with("http://h:1/v1/blobs/a/b/c.csyn?op=get&expires="));
        let q: std::collections::HashMap<&str, &str> =
            url.split('?').nth(1).unwrap().split('&').filter_map(|kv| kv.split_once('=')).collect();
        let expires: i64 = q["expires"].parse().unwrap();
        assert!(s.verify("a/b/c.csyn", Op::Get, expires, q["sig"]));
        assert!(!s.verify("a/b/c.csyn", Op::Put { len: 0 }, expires, q["sig"]), "signature is bound to the operation");
        assert!(!s.verify("a/b/other", Op::Get, expires, q["sig"]), "signature is bound to the key");
        assert!(!s.verify("a/b/c.csyn", Op::Get, expires + 1, q["sig"]), "signature is bound to the expiry");
        assert!(!s.verify(
            "a/b/c.csyn",
            Op::Get,
            now_ms() - 1,
            &hex::encode(s.signature("a/b/c.csyn", Op::Get, now_ms() - 1))
        ));
        s.delete("a/b/c.csyn").await.unwrap();
        s.delete("a/b/c.csyn").await.unwrap();
        assert_eq!(s.expire(Duration::from_secs(0)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn signed_uploads_are_bound_to_size_and_hash() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let s = FolderStore::new(dir.path().to_path_buf(), "http://x".into(), b"secret".to_vec()).unwrap();
        let body = b"the payload bytes";
        let key = super::super::object_key("db", "site", &sha2::Sha256::digest(body).into());
        let len = u64::try_from(body.len()).unwrap();
        let url = s.presign(&key, Op::Put { len }, Duration::from_secs(60)).await.unwrap();
        assert!(url.contains(&format!("&len={len}&")));
        let expires: i64 = url.split("expires=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
        let sig = url.split("sig=").nth(1).unwrap();
        assert!(s.verify(&key, Op::Put { len }, expires, sig));
        assert!(!s.verify(&key, Op::Put { len: len + 1 }, expires, sig), "signature is bound to the size");

        // Longer, shorter, other bytes, abandoned halfway: refused, nothing left behind.
        let mut w = s.create(&key, len).await.unwrap().unwrap();
        assert!(w.write(&[0; 64]).await.is_err());
        let mut w = s.create(&key, len).await.unwrap().unwrap();
        w.write(&body[..3]).await.unwrap();
        assert!(w.finish().await.is_err());
        let mut w = s.create(&key, len).await.unwrap().unwrap();
        w.write(b"the payload bytez").await.unwrap();
        assert!(w.finish().await.is_err());
        let mut w = s.create(&key, len).await.unwrap().unwrap();
        w.write(&body[..5]).await.unwrap();
        drop(w);
        assert!(matches!(s.get(&key).await, Err(Error::NotFound { .. })));
        assert_eq!(std::fs::read_dir(dir.path().join("db/site")).unwrap().count(), 0);
        // The right bytes; then the object exists and nothing more is written.
        let (mut first, mut second) =
            (s.create(&key, len).await.unwrap().unwrap(), s.create(&key, len).await.unwrap().unwrap());
        first.write(body).await.unwrap();
        second.write(body).await.unwrap();
        first.finish().await.unwrap();
        second.finish().await.unwrap();
        assert_eq!(s.get(&key).await.unwrap(), body);
        assert!(s.create(&key, len).await.unwrap().is_none());
        // Only upload keys (naming a hash) are written this way.
        assert!(matches!(s.create("db/site/plain.csyn", 1).await, Err(Error::Invalid(_))));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("db/site")).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
