//! The content-addressed artifact store: component bytes kept under
//! `artifacts/sha256/<hex>.wasm` in any `object_store` backend named by a URL
//! (a local folder, `memory://`, `s3://`, `gs://`, `az://`).
//!
//! The store is shared and may be written by others, so nothing read from it is
//! trusted: every read is checked against the digest it was asked for.

use super::Digest;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

/// Objects larger than this are uploaded in parts, so a slow link shows progress
/// and a failure does not resend everything at once.
const MULTIPART_THRESHOLD: usize = 8 << 20;

/// Every part but the last has this size: S3 requires at least 5 MiB, and R2
/// requires all parts but the last to be the same size.
const PART_SIZE: usize = 8 << 20;

const SUPPORTED: &str = "memory://, file:///absolute/dir, a plain folder path, s3://bucket[/prefix], \
                         gs://bucket[/prefix], az://container[/prefix] or azure://container[/prefix]";

/// Why the artifact store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object is stored under the digest.
    #[error("artifact {0} is not in the artifact store; push it with `sluice push FILE.wasm`")]
    NotFound(Digest),
    /// The stored object's bytes do not hash to its name.
    #[error(
        "artifact {digest} is corrupt or has been tampered with: the {size} bytes stored under its name \
         hash to {actual}, so it will not be run; push the original file again with `sluice push FILE.wasm` \
         to repair it"
    )]
    Corrupt {
        /// The digest that was asked for.
        digest: Digest,
        /// The digest of the bytes actually stored.
        actual: Digest,
        /// How many bytes were stored.
        size: u64,
    },
    /// An I/O or network failure talking to the store.
    #[error("the artifact store at {url} cannot be reached: {message}")]
    Unreachable {
        /// The store's URL.
        url: String,
        /// What went wrong, with a hint about credentials for cloud stores.
        message: String,
    },
    /// The URL names no store this build can open.
    #[error("{0}")]
    InvalidUrl(String),
}

/// What [`ArtifactStore::put`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The sha256 of the bytes: their name in the store.
    pub digest: Digest,
    /// Their length.
    pub size: u64,
    /// False when identical, intact bytes were already stored.
    pub newly_stored: bool,
}

/// Flow components stored under the sha256 of their bytes.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Prepended to every key; empty for local folders (the folder is the root).
    prefix: String,
    url: String,
    /// Which environment variables configure a cloud store, for error messages.
    credentials_hint: Option<&'static str>,
}

impl ArtifactStore {
    /// Opens the store named by `url`: `memory://`, `file:///abs/dir` or a plain
    /// folder path (created if missing), `s3://`, `gs://`, `az://`/`azure://`
    /// with a bucket and an optional key prefix. Cloud stores take credentials
    /// from the usual environment variables.
    pub fn open(url: &str) -> Result<ArtifactStore, StoreError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Self::local(url, std::path::Path::new(url));
        };
        match scheme {
            "memory" => Ok(Self::new(Arc::new(InMemory::new()), rest, url, None)),
            "file" => Self::open_file_url(url, rest),
            "s3" | "s3a" => Self::open_cloud(url, scheme, rest, Cloud::S3),
            "gs" => Self::open_cloud(url, scheme, rest, Cloud::Gcs),
            "az" | "azure" => Self::open_cloud(url, scheme, rest, Cloud::Azure),
            _ => Err(StoreError::InvalidUrl(format!(
                "`{url}` is not an artifact store URL this build supports: scheme `{scheme}://` is unknown; \
                 use {SUPPORTED}"
            ))),
        }
    }

    /// The URL the store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stores `bytes` under their digest unless identical intact bytes are
    /// already there; a corrupt object under that name is overwritten.
    /// `progress(done, total)` is called after each uploaded part (once, at the
    /// end, for small objects or when nothing had to be uploaded).
    pub async fn put(
        &self,
        bytes: Bytes,
        progress: Option<&(dyn Fn(u64, u64) + Sync)>,
    ) -> Result<PutOutcome, StoreError> {
        let digest = Digest::of(&bytes);
        let size = bytes.len() as u64;
        let key = self.key(&digest);
        let newly_stored = !self.holds_intact(&key, &digest, size).await?;
        if newly_stored {
            self.upload(&key, bytes, progress).await?;
        } else if let Some(progress) = progress {
            progress(size, size);
        }
        Ok(PutOutcome { digest, size, newly_stored })
    }

    /// Reads the artifact named `digest`, refusing bytes that do not hash to it.
    pub async fn get(&self, digest: &Digest) -> Result<Bytes, StoreError> {
        let key = self.key(digest);
        let bytes = match self.store.get(&key).await {
            Ok(result) => result.bytes().await.map_err(|e| self.unreachable(e))?,
            Err(object_store::Error::NotFound { .. }) => return Err(StoreError::NotFound(digest.clone())),
            Err(e) => return Err(self.unreachable(e)),
        };
        verify(digest, &bytes)?;
        Ok(bytes)
    }

    /// Whether an object is stored under `digest` (its bytes are not checked).
    pub async fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        match self.store.head(&self.key(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: &str, credentials_hint: Option<&'static str>) -> Self {
        let prefix = prefix.trim_matches('/').to_string();
        Self { store, prefix, url: url.to_string(), credentials_hint }
    }

    /// `file:///abs/dir`: only absolute paths, since `file://dir` would make
    /// `dir` a host name.
    fn open_file_url(url: &str, rest: &str) -> Result<Self, StoreError> {
        if !rest.starts_with('/') {
            return Err(StoreError::InvalidUrl(format!(
                "`{url}` is not a usable file URL: write file:///absolute/path (three slashes) or a plain folder path"
            )));
        }
        Self::local(url, std::path::Path::new(rest))
    }

    /// A local folder, created if missing, is the root of the keys.
    fn local(url: &str, dir: &std::path::Path) -> Result<Self, StoreError> {
        let unreachable = |why: String| StoreError::Unreachable { url: url.to_string(), message: why };
        std::fs::create_dir_all(dir).map_err(|e| unreachable(format!("cannot create {}: {e}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| unreachable(e.to_string()))?;
        Ok(Self::new(Arc::new(store), "", url, None))
    }

    /// `scheme://bucket/prefix`: the builder reads the bucket from the URL and
    /// everything else from the environment; the prefix is ours to apply.
    fn open_cloud(url: &str, scheme: &str, rest: &str, cloud: Cloud) -> Result<Self, StoreError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::InvalidUrl(format!(
                "`{url}` names no {}: write {}",
                cloud.bucket_word(),
                cloud.example()
            )));
        }
        Path::parse(prefix.trim_matches('/'))
            .map_err(|e| StoreError::InvalidUrl(format!("`{url}` has an unusable key prefix: {e}")))?;
        let store = cloud.build(&format!("{scheme}://{bucket}")).map_err(|e| {
            StoreError::InvalidUrl(format!(
                "cannot open the artifact store at {url}: {e}; {}",
                cloud.credentials_hint()
            ))
        })?;
        Ok(Self::new(store, prefix, url, Some(cloud.credentials_hint())))
    }

    /// Where the artifact named `digest` lives.
    fn key(&self, digest: &Digest) -> Path {
        let name = format!("artifacts/sha256/{}.wasm", digest.hex());
        match self.prefix.is_empty() {
            true => Path::from(name),
            false => Path::from(format!("{}/{name}", self.prefix)),
        }
    }

    /// Whether `key` already holds exactly these bytes. A size mismatch is
    /// decided from the head alone, so repairing a truncated object costs no
    /// download.
    async fn holds_intact(&self, key: &Path, digest: &Digest, size: u64) -> Result<bool, StoreError> {
        let meta = match self.store.head(key).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.unreachable(e)),
        };
        if meta.size != size {
            return Ok(false);
        }
        match self.get(digest).await {
            Ok(_) => Ok(true),
            // Deleted or overwritten with bad bytes since the head: upload again.
            Err(StoreError::NotFound(_) | StoreError::Corrupt { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn upload(
        &self,
        key: &Path,
        bytes: Bytes,
        progress: Option<&(dyn Fn(u64, u64) + Sync)>,
    ) -> Result<(), StoreError> {
        let total = bytes.len() as u64;
        if bytes.len() > MULTIPART_THRESHOLD {
            return self.upload_in_parts(key, bytes, progress).await;
        }
        self.store.put(key, PutPayload::from_bytes(bytes)).await.map_err(|e| self.unreachable(e))?;
        if let Some(progress) = progress {
            progress(total, total);
        }
        Ok(())
    }

    /// A multipart upload only becomes visible when completed, so readers never
    /// see a partial object; on failure the parts are discarded.
    async fn upload_in_parts(
        &self,
        key: &Path,
        bytes: Bytes,
        progress: Option<&(dyn Fn(u64, u64) + Sync)>,
    ) -> Result<(), StoreError> {
        let total = bytes.len() as u64;
        let mut upload = self.store.put_multipart(key).await.map_err(|e| self.unreachable(e))?;
        let mut done = 0;
        while done < bytes.len() {
            let end = (done + PART_SIZE).min(bytes.len());
            if let Err(e) = upload.put_part(PutPayload::from_bytes(bytes.slice(done..end))).await {
                // Best effort: some stores (S3, GCS) keep orphaned parts until aborted.
                let _ = upload.abort().await;
                return Err(self.unreachable(e));
            }
            done = end;
            if let Some(progress) = progress {
                progress(done as u64, total);
            }
        }
        upload.complete().await.map_err(|e| self.unreachable(e))?;
        Ok(())
    }

    fn unreachable(&self, error: object_store::Error) -> StoreError {
        let message = match self.credentials_hint {
            Some(hint) => format!("{error} ({hint})"),
            None => error.to_string(),
        };
        StoreError::Unreachable { url: self.url.clone(), message }
    }
}

/// Refuses bytes that do not hash to `digest`.
fn verify(digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
    let actual = Digest::of(bytes);
    if actual == *digest {
        return Ok(());
    }
    Err(StoreError::Corrupt { digest: digest.clone(), actual, size: bytes.len() as u64 })
}

/// The cloud backends, told apart for their builders and error messages.
#[derive(Clone, Copy)]
enum Cloud {
    S3,
    Gcs,
    Azure,
}

impl Cloud {
    fn build(self, bucket_url: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
        Ok(match self {
            // from_env also reads AWS_ENDPOINT / AWS_ENDPOINT_URL and AWS_ALLOW_HTTP.
            Cloud::S3 => Arc::new(AmazonS3Builder::from_env().with_url(bucket_url).build()?),
            Cloud::Gcs => Arc::new(GoogleCloudStorageBuilder::from_env().with_url(bucket_url).build()?),
            Cloud::Azure => Arc::new(MicrosoftAzureBuilder::from_env().with_url(bucket_url).build()?),
        })
    }

    fn bucket_word(self) -> &'static str {
        match self {
            Cloud::Azure => "container",
            Cloud::S3 | Cloud::Gcs => "bucket",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Cloud::S3 => "s3://bucket[/prefix]",
            Cloud::Gcs => "gs://bucket[/prefix]",
            Cloud::Azure => "az://container[/prefix]",
        }
    }

    fn credentials_hint(self) -> &'static str {
        match self {
            Cloud::S3 => {
                "credentials and endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, \
                 AWS_REGION/AWS_DEFAULT_REGION, AWS_ENDPOINT (or AWS_ENDPOINT_URL) and AWS_ALLOW_HTTP"
            }
            Cloud::Gcs => {
                "credentials come from GOOGLE_SERVICE_ACCOUNT (a key file path), GOOGLE_SERVICE_ACCOUNT_KEY (its JSON) \
                 or GOOGLE_APPLICATION_CREDENTIALS"
            }
            Cloud::Azure => {
                "credentials come from AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, \
                 AZURE_STORAGE_SAS_KEY, or AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A store under test and, for `file://`, the folder behind it.
    struct Fixture {
        store: ArtifactStore,
        dir: Option<tempfile::TempDir>,
    }

    impl Fixture {
        fn memory() -> Self {
            Self { store: ArtifactStore::open("memory://").unwrap(), dir: None }
        }

        fn file() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = ArtifactStore::open(&format!("file://{}", dir.path().display())).unwrap();
            Self { store, dir: Some(dir) }
        }

        /// Replaces the stored object behind the store's back: in the folder
        /// itself for `file://`, through the raw object store otherwise.
        async fn tamper(&self, digest: &Digest, bytes: &[u8]) {
            let key = self.store.key(digest);
            match &self.dir {
                Some(dir) => std::fs::write(dir.path().join(key.as_ref()), bytes).unwrap(),
                None => {
                    self.store.store.put(&key, Bytes::copy_from_slice(bytes).into()).await.unwrap();
                }
            }
        }
    }

    /// Bytes that differ from one `seed` to the next and are not one repeated value.
    fn component(len: usize, seed: u8) -> Bytes {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
    }

    /// Every file under `dir`, however deep.
    fn files_under(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .map(|path| if path.is_dir() { files_under(&path) } else { 1 })
            .sum()
    }

    /// Records every `progress(done, total)` call.
    #[derive(Default)]
    struct Progress(Mutex<Vec<(u64, u64)>>);

    impl Progress {
        fn callback(&self) -> impl Fn(u64, u64) + Sync + '_ {
            |done, total| self.0.lock().unwrap().push((done, total))
        }

        fn calls(&self) -> Vec<(u64, u64)> {
            self.0.lock().unwrap().clone()
        }
    }

    async fn put_twice_stores_once(fixture: Fixture) {
        let bytes = component(1000, 1);
        let first = fixture.store.put(bytes.clone(), None).await.unwrap();
        assert_eq!(first, PutOutcome { digest: Digest::of(&bytes), size: 1000, newly_stored: true });
        let second = fixture.store.put(bytes.clone(), None).await.unwrap();
        assert_eq!(second, PutOutcome { newly_stored: false, ..first });
        assert!(fixture.store.contains(&second.digest).await.unwrap());
        if let Some(dir) = &fixture.dir {
            assert_eq!(files_under(dir.path()), 1);
            let path = dir.path().join(format!("artifacts/sha256/{}.wasm", second.digest.hex()));
            assert_eq!(std::fs::read(path).unwrap(), bytes);
        }
    }

    async fn get_returns_the_bytes(fixture: Fixture) {
        let bytes = component(5000, 2);
        let digest = fixture.store.put(bytes.clone(), None).await.unwrap().digest;
        assert_eq!(fixture.store.get(&digest).await.unwrap(), bytes);
    }

    async fn unknown_digest_is_not_found(fixture: Fixture) {
        let digest = Digest::of(b"never pushed");
        let error = fixture.store.get(&digest).await.unwrap_err();
        assert!(matches!(&error, StoreError::NotFound(d) if *d == digest), "{error:?}");
        assert!(error.to_string().contains("sluice push"), "{error}");
        assert!(!fixture.store.contains(&digest).await.unwrap());
    }

    async fn tampered_object_is_refused(fixture: Fixture) {
        let bytes = component(4096, 3);
        let digest = fixture.store.put(bytes.clone(), None).await.unwrap().digest;
        let mut tampered = bytes.to_vec();
        tampered[100] ^= 0xff;
        fixture.tamper(&digest, &tampered).await;
        let error = fixture.store.get(&digest).await.unwrap_err();
        let StoreError::Corrupt { digest: wanted, actual, size } = &error else { panic!("{error:?}") };
        assert_eq!((wanted, actual, *size), (&digest, &Digest::of(&tampered), 4096));
        let message = error.to_string();
        for expected in ["tampered", "will not be run", "sluice push", &digest.to_string()] {
            assert!(message.contains(expected), "{expected:?} missing from: {message}");
        }
    }

    async fn truncated_object_is_refused(fixture: Fixture) {
        let bytes = component(4096, 4);
        let digest = fixture.store.put(bytes.clone(), None).await.unwrap().digest;
        fixture.tamper(&digest, &bytes[..1000]).await;
        let error = fixture.store.get(&digest).await.unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { size: 1000, .. }), "{error:?}");
    }

    async fn small_put_reports_progress_once(fixture: Fixture) {
        let progress = Progress::default();
        fixture.store.put(component(300, 5), Some(&progress.callback())).await.unwrap();
        assert_eq!(progress.calls(), [(300, 300)]);
    }

    async fn large_put_goes_multipart_with_progress(fixture: Fixture) {
        let total = 20 << 20;
        let bytes = component(total, 6);
        let progress = Progress::default();
        let outcome = fixture.store.put(bytes.clone(), Some(&progress.callback())).await.unwrap();
        assert!(outcome.newly_stored);
        let calls = progress.calls();
        assert!(calls.len() >= 3, "one call per part: {calls:?}");
        assert!(calls.windows(2).all(|pair| pair[0].0 < pair[1].0), "{calls:?}");
        assert!(calls.iter().all(|&(_, t)| t == total as u64), "{calls:?}");
        assert_eq!(calls.last(), Some(&(total as u64, total as u64)));
        assert_eq!(fixture.store.get(&outcome.digest).await.unwrap(), bytes);
    }

    async fn put_repairs_a_tampered_object(fixture: Fixture) {
        let bytes = component(4096, 7);
        let digest = fixture.store.put(bytes.clone(), None).await.unwrap().digest;
        // Same length (only a full read can tell), then shorter (the head tells).
        let mut flipped = bytes.to_vec();
        flipped[0] ^= 1;
        for bad in [&flipped[..], &bytes[..10]] {
            fixture.tamper(&digest, bad).await;
            assert!(fixture.store.put(bytes.clone(), None).await.unwrap().newly_stored);
            assert_eq!(fixture.store.get(&digest).await.unwrap(), bytes);
        }
    }

    /// The same checks against each local backend.
    macro_rules! suite {
        ($($check:ident),* $(,)?) => {
            mod memory {
                $(#[tokio::test] async fn $check() { super::$check(super::Fixture::memory()).await; })*
            }
            mod file {
                $(#[tokio::test] async fn $check() { super::$check(super::Fixture::file()).await; })*
            }
        };
    }

    suite!(
        put_twice_stores_once,
        get_returns_the_bytes,
        unknown_digest_is_not_found,
        tampered_object_is_refused,
        truncated_object_is_refused,
        small_put_reports_progress_once,
        large_put_goes_multipart_with_progress,
        put_repairs_a_tampered_object,
    );

    #[test]
    fn an_unknown_scheme_is_refused_naming_the_supported_ones() {
        let error = ArtifactStore::open("ftp://x").unwrap_err();
        assert!(matches!(error, StoreError::InvalidUrl(_)), "{error:?}");
        let message = error.to_string();
        for expected in ["ftp://x", "memory://", "file://", "s3://", "gs://", "az://"] {
            assert!(message.contains(expected), "{expected:?} missing from: {message}");
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in ["s3://", "gs:///prefix", "file://relative/dir"] {
            let error = ArtifactStore::open(url).unwrap_err();
            assert!(matches!(error, StoreError::InvalidUrl(_)), "{url}: {error:?}");
        }
    }

    #[tokio::test]
    async fn a_plain_path_opens_a_folder_created_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("not/yet/there");
        let store = ArtifactStore::open(root.to_str().unwrap()).unwrap();
        assert_eq!(store.url(), root.to_str().unwrap());
        let digest = store.put(component(10, 8), None).await.unwrap().digest;
        assert!(root.join(format!("artifacts/sha256/{}.wasm", digest.hex())).is_file());
    }

    #[test]
    fn a_url_path_becomes_a_key_prefix() {
        let digest = Digest::of(b"x");
        let store = ArtifactStore::open("memory://some/prefix/").unwrap();
        assert_eq!(store.key(&digest).as_ref(), format!("some/prefix/artifacts/sha256/{}.wasm", digest.hex()));
    }

    #[test]
    fn cloud_failures_name_the_url_and_the_credential_variables() {
        let store = ArtifactStore::open("s3://bucket/prefix").unwrap();
        let error =
            store.unreachable(object_store::Error::Generic { store: "S3", source: "connection refused".into() });
        let message = error.to_string();
        for expected in ["s3://bucket/prefix cannot be reached", "connection refused", "AWS_ACCESS_KEY_ID"] {
            assert!(message.contains(expected), "{expected:?} missing from: {message}");
        }
    }
}
