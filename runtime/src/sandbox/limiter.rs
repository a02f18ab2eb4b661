//! Per-instance memory and table limits that remember what they refused, so
//! a guest that dies after a refused allocation is reported as hitting the
//! limit rather than with a bare trap.

use wasmtime::ResourceLimiter;

/// Limits of one instance.
#[derive(Debug)]
pub struct InstanceLimiter {
    memory_limit: usize,
    table_elements_limit: usize,
    refused: Option<String>,
}

impl InstanceLimiter {
    /// An instance may have at most `memory_limit` bytes of linear memory.
    pub fn new(memory_limit: usize) -> Self {
        Self { memory_limit, table_elements_limit: 1_000_000, refused: None }
    }

    /// The limit that was hit, if any, in words.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit && maximum.is_none_or(|max| desired <= max);
        if !allowed {
            self.refused = Some(format!(
                "memory limit of {} MiB per instance reached (asked to grow from {} to {} MiB)",
                self.memory_limit >> 20,
                current >> 20,
                desired.div_ceil(1 << 20),
            ));
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.table_elements_limit && maximum.is_none_or(|max| desired <= max);
        if !allowed {
            self.refused = Some(format!("table limit of {} elements per instance reached", self.table_elements_limit));
        }
        Ok(allowed)
    }
}
