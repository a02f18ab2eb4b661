//! The artifact store against a real S3-compatible server: moto, started on
//! 127.0.0.1 by `tests/s3/start-moto.sh` (which installs it into
//! `target/moto-venv` on first use). Fails, rather than skips, when moto
//! cannot be started, so a green run always means S3 was exercised.
//!
//! Keep this the only test in this binary: it sets environment variables,
//! which is only sound while no other thread reads them.

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice::artifact::{ArtifactStore, Digest, StoreError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BUCKET: &str = "sluice-artifacts";
const PREFIX: &str = "some/prefix";

/// The moto server; killed when dropped, so a failed assertion does not leave it running.
struct Moto {
    pid: String,
    port: u16,
}

impl Moto {
    /// Runs the start script on a free port and waits until the server accepts connections.
    fn start() -> Self {
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/s3/start-moto.sh");
        let output = Command::new("bash").arg(script).arg(port.to_string()).output().expect("run start-moto.sh");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "start-moto.sh failed ({}):\n{stderr}", output.status);
        let pid = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let moto = Self { pid, port };
        moto.wait_until_listening(Duration::from_secs(60));
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Fails fast, with moto's log, if the server dies instead of listening.
    fn wait_until_listening(&self, patience: Duration) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(self.is_alive(), "moto (pid {}) exited on startup:\n{}", self.pid, self.log());
            assert!(start.elapsed() < patience, "moto did not listen within {patience:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn is_alive(&self) -> bool {
        Command::new("kill").args(["-0", &self.pid]).status().is_ok_and(|status| status.success())
    }

    fn log(&self) -> String {
        let path = format!("{}/../target/moto-venv/moto-{}.log", env!("CARGO_MANIFEST_DIR"), self.port);
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("(cannot read {path}: {e})"))
    }

    /// moto accepts unsigned requests, so a bare HTTP PUT creates the bucket
    /// without pulling in an S3 client just for this.
    fn create_bucket(&self, bucket: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {response}");
    }
}

impl Drop for Moto {
    /// Waits (briefly) for the port to close too, so the server is gone when the
    /// test ends. Not `kill -0`: the orphaned server may linger as a zombie.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Points the AWS variables, which `ArtifactStore::open` reads, at moto.
#[allow(unsafe_code)]
fn point_aws_at(endpoint: &str) {
    let vars = [
        ("AWS_ENDPOINT", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    for (name, value) in vars {
        // SAFETY: this is the binary's only test and no runtime has been started
        // yet, so no other thread can be reading the environment.
        unsafe { std::env::set_var(name, value) };
    }
}

/// The bucket itself, bypassing the artifact store, to tamper with objects.
fn raw_bucket(endpoint: &str) -> impl ObjectStore {
    AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .build()
        .unwrap()
}

fn key_of(digest: &Digest) -> Path {
    Path::from(format!("{PREFIX}/artifacts/sha256/{}.wasm", digest.hex()))
}

/// Bytes that are not one repeated value.
fn component(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

#[test]
fn the_artifact_store_works_against_s3() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    point_aws_at(&moto.endpoint());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = ArtifactStore::open(&format!("s3://{BUCKET}/{PREFIX}")).unwrap();
        let raw = raw_bucket(&moto.endpoint());
        unknown_artifacts_are_not_found(&store).await;
        let bytes = component(100_000, 1);
        let digest = same_bytes_are_stored_once_under_the_prefix(&store, &raw, &bytes).await;
        tampered_objects_are_refused_then_repaired(&store, &raw, &digest, &bytes).await;
        large_artifacts_go_up_in_parts(&store).await;
    });
}

async fn unknown_artifacts_are_not_found(store: &ArtifactStore) {
    let digest = Digest::of(b"never pushed");
    assert!(!store.contains(&digest).await.unwrap());
    let error = store.get(&digest).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
}

async fn same_bytes_are_stored_once_under_the_prefix(
    store: &ArtifactStore,
    raw: &impl ObjectStore,
    bytes: &Bytes,
) -> Digest {
    let first = store.put(bytes.clone(), None).await.unwrap();
    assert!(first.newly_stored);
    assert!(!store.put(bytes.clone(), None).await.unwrap().newly_stored);
    assert!(store.contains(&first.digest).await.unwrap());
    assert_eq!(store.get(&first.digest).await.unwrap(), bytes);
    let stored = raw.get(&key_of(&first.digest)).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored, bytes, "the object lives under the URL's prefix");
    first.digest
}

async fn tampered_objects_are_refused_then_repaired(
    store: &ArtifactStore,
    raw: &impl ObjectStore,
    digest: &Digest,
    bytes: &Bytes,
) {
    let mut tampered = bytes.to_vec();
    tampered[42] ^= 0xff;
    raw.put(&key_of(digest), tampered.into()).await.unwrap();
    let error = store.get(digest).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("will not be run"), "{error}");
    assert!(store.put(bytes.clone(), None).await.unwrap().newly_stored, "a corrupt object is overwritten");
    assert_eq!(store.get(digest).await.unwrap(), bytes);
}

async fn large_artifacts_go_up_in_parts(store: &ArtifactStore) {
    let total = 20 << 20;
    let bytes = component(total, 2);
    let calls = Mutex::new(Vec::new());
    let progress = |done, total| calls.lock().unwrap().push((done, total));
    let outcome = store.put(bytes.clone(), Some(&progress)).await.unwrap();
    let calls = calls.into_inner().unwrap();
    assert!(calls.len() >= 3, "one progress call per part: {calls:?}");
    assert_eq!(calls.last(), Some(&(total as u64, total as u64)));
    assert_eq!(store.get(&outcome.digest).await.unwrap(), bytes);
}
