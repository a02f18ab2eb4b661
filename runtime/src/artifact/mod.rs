//! Artifacts: flow components named by the sha256 of their bytes.

mod digest;
mod store;

pub use digest::Digest;
pub use store::{ArtifactStore, PutOutcome, StoreError};
