//! The pooling allocator's usage (`sluice_pool_*`): component instances,
//! memories and fiber stacks in use out of the pool's slots, read from
//! wasmtime when Prometheus scrapes. An engine that fell back to on-demand
//! allocation (no pool could be reserved) reports no usage.

use super::metrics;
use wasmtime::Engine;

/// Sets the pool gauges from `engine`, whose pool has `slots` component instance slots.
pub fn refresh(engine: &Engine, slots: u32) {
    let m = metrics();
    let Some(pool) = engine.pooling_allocator_metrics() else {
        m.pool_slots.set(0);
        return;
    };
    m.pool_slots.set(i64::from(slots));
    m.pool_component_instances.set(pool.component_instances() as i64);
    m.pool_memories.set(pool.memories() as i64);
    m.pool_stacks.set(pool.stacks() as i64);
    m.pool_bytes_kept_resident.set(pool.unused_memory_bytes_resident() as i64);
}
