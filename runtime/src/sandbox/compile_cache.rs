//! Machine code compiled from a component, cached on this host only, keyed by
//! the artifact's digest and the engine's settings. Never shared: loading
//! machine code from elsewhere would let whoever wrote it run native code.

use crate::artifact::Digest;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of compiled components, or none (always compile).
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompileSource {
    /// Compiled now.
    Compiled,
    /// Loaded from the cache.
    Cached,
}

impl CompileCache {
    /// A cache in `dir` (created on first write).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: Some(dir.into()) }
    }

    /// No cache: every load compiles.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    fn path_for(&self, engine: &Engine, digest: &Digest) -> Option<PathBuf> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{}-{:016x}.cwasm", digest.hex(), hasher.finish())))
    }

    /// The compiled component for `bytes`, from the cache when present.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource)> {
        let path = self.path_for(engine, digest);
        if let Some(path) = &path
            && let Some(component) = load_cached(engine, path)
        {
            crate::observe::metrics().compile_cache_hits.inc();
            return Ok((component, CompileSource::Cached));
        }
        crate::observe::metrics().compile_cache_misses.inc();
        let component = Component::new(engine, bytes)?;
        if let Some(path) = &path {
            // A cache that cannot be written only costs speed.
            let _ = store(&component, path);
        }
        Ok((component, CompileSource::Compiled))
    }
}

#[allow(unsafe_code)]
fn load_cached(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // SAFETY: the file was written by `Component::serialize` of this host
    // into its private cache folder; wasmtime checks that it was compiled
    // with compatible engine settings and refuses it otherwise.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(component) => Some(component),
        Err(_) => {
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

fn store(component: &Component, path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache files live in a folder");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tmp = tempfile_in(dir)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    let name = format!(".tmp-{}-{}", std::process::id(), uuid::Uuid::now_v7());
    Ok(dir.join(name))
}
