//! The artifact store against an S3-compatible server started on 127.0.0.1
//! (`tests/s3/servers.rs`): moto, an emulator, by default; Garage, a real
//! object store, with `SLUICE_S3_TEST_SERVER=garage` (`make test-s3-real`).
//! Both run the same checks. Fails, rather than skips, when the server cannot
//! be started, so a green run always means S3 was exercised.
//!
//! Keep this the only test in this binary: it sets environment variables,
//! which is only sound while no other thread reads them. That is why the
//! server is chosen by a variable rather than by a second test.

#[path = "s3/servers.rs"]
mod servers;

use bytes::Bytes;
use futures_util::{FutureExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use servers::S3Server;
use sluice::artifact::{ArtifactStore, Digest, StoreError};
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

const BUCKET: &str = "sluice-artifacts";
const PREFIX: &str = "some/prefix";

/// Points the AWS variables, which `ArtifactStore::open` reads, at the server,
/// signing with `secret_access_key`.
#[allow(unsafe_code)]
fn point_aws_at(server: &S3Server, secret_access_key: &str) {
    let vars = [
        ("AWS_ENDPOINT", server.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", server.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret_access_key),
        ("AWS_REGION", server.region.as_str()),
    ];
    for (name, value) in vars {
        // SAFETY: this is the binary's only test and no runtime has been started
        // yet, so no other thread can be reading the environment.
        unsafe { std::env::set_var(name, value) };
    }
}

/// The bucket itself, bypassing the artifact store, to tamper with objects.
fn raw_bucket(server: &S3Server) -> impl ObjectStore {
    AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .with_access_key_id(&server.access_key_id)
        .with_secret_access_key(&server.secret_access_key)
        .with_region(&server.region)
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
    let server = S3Server::start(servers::chosen(), BUCKET);
    eprintln!("checking the artifact store against {:?} at {}", server.kind, server.endpoint);
    let url = format!("s3://{BUCKET}/{PREFIX}");
    // Both stores are opened (the variables read) before any runtime thread exists.
    point_aws_at(&server, "not-the-secret-key");
    let wrongly_signed = ArtifactStore::open(&url).unwrap();
    point_aws_at(&server, &server.secret_access_key);
    let store = ArtifactStore::open(&url).unwrap();
    let raw = raw_bucket(&server);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let checks = AssertUnwindSafe(async {
        if server.checks_signatures() {
            bad_signatures_are_refused_with_a_hint(&wrongly_signed).await;
        }
        every_check(&store, &raw).await;
    });
    let outcome = runtime.block_on(checks.catch_unwind());
    if let Err(failure) = outcome {
        // The assertion alone rarely says why a real server refused a request.
        eprintln!("{:?}'s log:\n{}", server.kind, server.log());
        std::panic::resume_unwind(failure);
    }
}

async fn every_check(store: &ArtifactStore, raw: &impl ObjectStore) {
    unknown_artifacts_are_not_found(store).await;
    let bytes = component(100_000, 1);
    let digest = same_bytes_are_stored_once_under_the_prefix(store, raw, &bytes).await;
    tampered_objects_are_refused_then_repaired(store, raw, &digest, &bytes).await;
    truncated_objects_are_refused_then_repaired(store, raw, &digest, &bytes).await;
    let large = large_artifacts_go_up_in_parts(store).await;
    only_the_artifacts_are_in_the_bucket(raw, [digest, large]).await;
}

/// Only a real server checks signatures (moto accepts any): the operator is told
/// which variables hold the credentials.
async fn bad_signatures_are_refused_with_a_hint(wrongly_signed: &ArtifactStore) {
    let error = wrongly_signed.contains(&Digest::of(b"anything")).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Unreachable { .. }), "{error:?}");
    assert!(message.contains("403") && message.contains("AWS_SECRET_ACCESS_KEY"), "{message}");
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

/// A size mismatch is caught from the object's head alone: repaired without a download.
async fn truncated_objects_are_refused_then_repaired(
    store: &ArtifactStore,
    raw: &impl ObjectStore,
    digest: &Digest,
    bytes: &Bytes,
) {
    raw.put(&key_of(digest), bytes.slice(..bytes.len() - 1).into()).await.unwrap();
    assert!(store.contains(digest).await.unwrap(), "the truncated object is still there");
    let error = store.get(digest).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { size, .. } if size == bytes.len() as u64 - 1), "{error:?}");
    assert!(store.put(bytes.clone(), None).await.unwrap().newly_stored, "a truncated object is overwritten");
    assert_eq!(store.get(digest).await.unwrap(), bytes);
}

async fn large_artifacts_go_up_in_parts(store: &ArtifactStore) -> Digest {
    let total = 20 << 20;
    let bytes = component(total, 2);
    let calls = Mutex::new(Vec::new());
    let progress = |done, total| calls.lock().unwrap().push((done, total));
    let outcome = store.put(bytes.clone(), Some(&progress)).await.unwrap();
    let calls = calls.into_inner().unwrap();
    assert!(calls.len() >= 3, "one progress call per part: {calls:?}");
    assert_eq!(calls.last(), Some(&(total as u64, total as u64)));
    assert_eq!(store.get(&outcome.digest).await.unwrap(), bytes);
    outcome.digest
}

/// Listing the whole bucket finds exactly the pushed artifacts, each under the
/// URL's prefix: nothing stray (parts of a multipart upload, temporary names).
async fn only_the_artifacts_are_in_the_bucket(raw: &impl ObjectStore, digests: [Digest; 2]) {
    let listed: BTreeSet<String> = raw.list(None).map_ok(|meta| meta.location.to_string()).try_collect().await.unwrap();
    let expected: BTreeSet<String> = digests.iter().map(|digest| key_of(digest).to_string()).collect();
    assert_eq!(listed, expected);
    let count = |prefix: &'static str| raw.list(Some(&Path::from(prefix))).try_collect::<Vec<_>>();
    assert_eq!(count(PREFIX).await.unwrap().len(), 2, "listing by the prefix finds both");
    assert!(count("some/pre").await.unwrap().is_empty(), "a prefix matches whole path segments only");
}
