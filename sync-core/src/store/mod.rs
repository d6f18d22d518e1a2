//! Event stores shipped with the core.

pub mod memory;
