//! Integration tests of the `faultline` binary itself, run as a child process the way a user
//! or CI runs it. Each test here is about the stack's life cycle as seen from outside (start,
//! print, stop, die), so each starts its own `faultline stack up`.

#![allow(clippy::unwrap_used)]

mod lifecycle;
mod procs;
#[path = "../common/programs.rs"]
mod programs;
mod run;
mod usage_errors;
