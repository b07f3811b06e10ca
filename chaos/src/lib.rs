//! Fault injectors for faultline: process faults on supervised processes (kill, pause,
//! restart), a TCP fault proxy (partition, latency, bandwidth) and the fault timeline of a
//! scenario.
//!
//! Nothing is here yet: the fault injectors are the subject of their own issue. The crate
//! exists so that the workspace has the shape DESIGN.md describes and so that nothing in
//! `loadgen`, `chaos` or `reports` ever depends on `system`.
