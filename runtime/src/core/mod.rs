//! The pure core: ids and names, the run state machine, task policies and
//! failures. No I/O and no wasmtime here; everything else depends on it.

pub mod address;
pub mod deployment;
pub mod describe;
pub mod describe_check;
pub mod duration;
pub mod egress;
pub mod events;
pub mod failure;
pub mod grants;
pub mod ids;
pub mod journal;
pub mod pause;
pub mod policy;
pub mod pool;
pub mod record;
pub mod schedule;
pub mod state;
pub mod tenant;
