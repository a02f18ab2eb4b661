//! Start-up: the first run of a component on a fresh host, which compiles
//! it, and a run once the compile cache is warm, as whole `sluice exec`
//! processes (each with a new `SLUICE_HOME`); and the raw wasmtime floor
//! in this process: compile (or load the serialized machine code), link,
//! instantiate and call `describe` (sync wasmtime), with nothing else.

use crate::processes::{run, sluice};
use crate::sync_baseline::Baseline;
use anyhow::{Result, bail};
use serde_json::{Value, json};
use sluice::sandbox::engine::EngineSettings;
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The component file and the `sluice exec` arguments of each component.
fn component(name: &str) -> Result<(std::path::PathBuf, &'static [&'static str])> {
    match name {
        "bench" => Ok((crate::component("bench_flow.wasm")?, &["--flow", "sequential", "--param", "count=1"])),
        "python" => Ok((crate::component("python_greet.wasm")?, &[])),
        other => bail!("unknown component {other:?}: bench or python"),
    }
}

/// Cold and warm start of `name`, for Sluice and raw wasmtime, in seconds.
pub fn cold(name: &str) -> Result<Value> {
    let (path, args) = component(name)?;
    let home = tempfile::tempdir()?;
    let exec = || -> Result<f64> {
        let start = Instant::now();
        run(sluice(home.path()).arg("exec").arg(&path).args(args))?;
        Ok(start.elapsed().as_secs_f64())
    };
    let sluice_cold = exec()?;
    let sluice_warm = exec()?;

    let bytes = std::fs::read(&path)?;
    let engine = EngineSettings::default().build()?;
    let start = Instant::now();
    let component = Component::new(&engine, &bytes)?;
    Baseline::from_component(&engine, &component).describe()?;
    let raw_cold = start.elapsed().as_secs_f64();
    let serialized = component.serialize()?;
    let start = Instant::now();
    let component = deserialize(&engine, &serialized)?;
    Baseline::from_component(&engine, &component).describe()?;
    let raw_warm = start.elapsed().as_secs_f64();
    Ok(json!({
        "bytes": bytes.len(),
        "sluice_cold_s": sluice_cold, "sluice_warm_s": sluice_warm,
        "wasmtime_cold_s": raw_cold, "wasmtime_warm_s": raw_warm,
    }))
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, serialized: &[u8]) -> Result<Component> {
    // SAFETY: the bytes were produced by `Component::serialize` a moment ago,
    // in this process, with this engine.
    Ok(unsafe { Component::deserialize(engine, serialized) }?)
}
