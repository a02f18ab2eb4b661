//! The sandbox: wasmtime engine settings, the WIT boundary, the host side of
//! every instance, and loading a component (with its compile cache).

pub mod bindings;
pub mod capabilities;
pub mod compile_cache;
pub mod cpu;
pub mod egress;
pub mod engine;
pub mod flow_clock;
pub mod host_v0_2;
pub mod instance;
pub mod limiter;
pub mod program;
pub mod stdio;
pub mod submitted;
pub mod thread_clock;
