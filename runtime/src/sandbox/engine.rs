//! Every wasmtime `Config` setting in one place, with safe defaults.
//!
//! Instances come from the pooling allocator (fast instantiation, bounded
//! memory), guests run on wasmtime's async support with epoch interruption
//! (a guest in a loop yields to tokio every tick, so timeouts and
//! cancellation are enforced), and a background thread drives the epoch.

use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Dirty memory a freed pool slot keeps paged in (and copies back from the
/// memory image) when the kernel can say which pages were dirtied. The cost:
/// after a burst of N concurrent instances, up to N times this stays resident
/// in their idle slots (only what the guests really dirtied).
const RESIDENT_WITH_PAGEMAP: usize = 16 << 20;

/// Engine-wide settings. Instance-level limits (memory) are applied per
/// store under these ceilings.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Largest linear memory any instance may ever get (the pool's slot size).
    pub max_memory_bytes: usize,
    /// Deepest wasm stack an instance may use before trapping.
    pub max_wasm_stack_bytes: usize,
    /// Instances that may be alive at once (the pool's size).
    pub pool_instances: u32,
    /// How often running guests yield to the scheduler.
    pub epoch_tick: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_memory_bytes: 1 << 30,
            max_wasm_stack_bytes: 512 << 10,
            pool_instances: 1000,
            epoch_tick: Duration::from_millis(5),
        }
    }
}

impl EngineSettings {
    fn config(&self, pooling: bool) -> Config {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(self.max_wasm_stack_bytes);
        // The fiber stack holds the wasm stack plus host frames called from it.
        config.async_stack_size(self.max_wasm_stack_bytes + (1 << 20));
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            let instances = self.pool_instances;
            pool.total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(8))
                .total_memories(instances.saturating_mul(2))
                .total_tables(instances.saturating_mul(8))
                .total_stacks(instances)
                .max_memories_per_module(1)
                .max_tables_per_module(4)
                .table_elements(200_000)
                .max_core_instance_size(8 << 20)
                .max_component_instance_size(8 << 20)
                .max_memory_size(self.max_memory_bytes);
            if pagemap_scan_available() {
                // Freeing a slot copies back only the pages the guest dirtied
                // (found by PAGEMAP_SCAN), up to these sizes, instead of
                // unmapping them: the next instance of the same component
                // (a Python one dirties a few MiB of its memory image) then
                // takes no page faults.
                pool.pagemap_scan(Enabled::Auto)
                    .linear_memory_keep_resident(RESIDENT_WITH_PAGEMAP)
                    .table_keep_resident(1 << 20);
            } else {
                // Keep a little of every slot paged in: reusing a slot then
                // costs no page faults for small guests.
                pool.linear_memory_keep_resident(64 << 10).table_keep_resident(16 << 10);
            }
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }

    /// Builds the engine, falling back to on-demand allocation when the pool's
    /// virtual memory cannot be reserved (for example under a tight ulimit).
    pub fn build(&self) -> anyhow::Result<Engine> {
        let engine = match Engine::new(&self.config(true)) {
            Ok(engine) => engine,
            Err(_) => Engine::new(&self.config(false)).map_err(anyhow::Error::from)?,
        };
        spawn_epoch_ticker(&engine, self.epoch_tick);
        Ok(engine)
    }
}

/// Whether Linux's PAGEMAP_SCAN ioctl (6.7 and later) can tell a freed
/// slot's dirty pages: `/proc/self/pagemap` opens and the kernel is recent.
fn pagemap_scan_available() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    version >= (6, 7) && std::fs::File::open("/proc/self/pagemap").is_ok()
}

/// Increments the epoch every tick until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .expect("spawning the epoch thread");
}
