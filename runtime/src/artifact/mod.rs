//! Artifacts: flow components named by the sha256 of their bytes.

mod digest;

pub use digest::Digest;
