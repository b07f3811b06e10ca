//! CPU time of processes during one phase of a row, as [`CpuUse`].
//!
//! Running processes (the brokers, faultline itself) are read from `/proc/<pid>/stat`
//! at the start and the end of a phase ([`CpuMeter`]). The Java tool's JVMs are gone by
//! the time their phase ends, so they are counted through `getrusage(RUSAGE_CHILDREN)`,
//! which adds each child's whole CPU time once it has been reaped ([`ChildrenMeter`]).

use std::time::Instant;

use faultline_results::kafka_bench::CpuUse;

/// `/proc/<pid>/stat` counts in USER_HZ, which Linux fixes at 100 for user space on
/// every architecture faultline builds for (x86-64, arm64).
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of a process (every thread), in seconds; `None` once it is gone.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); the state (field 3) is the first after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

fn machine_cores() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

fn usage(cpu_secs: f64, started: Instant) -> CpuUse {
    let wall = started.elapsed().as_secs_f64().max(1e-3);
    let cores = cpu_secs.max(0.0) / wall;
    CpuUse {
        cores,
        percent_of_machine: cores / machine_cores() * 100.0,
    }
}

/// CPU of running processes from now until [`CpuMeter::stop`].
#[derive(Debug)]
pub struct CpuMeter {
    pids: Vec<u32>,
    at_start: f64,
    started: Instant,
}

impl CpuMeter {
    pub fn start(pids: Vec<u32>) -> CpuMeter {
        let at_start = pids.iter().filter_map(|pid| cpu_secs(*pid)).sum();
        CpuMeter {
            pids,
            at_start,
            started: Instant::now(),
        }
    }

    /// `None` when there was nothing to measure (no pids, e.g. an external cluster).
    pub fn stop(&self) -> Option<CpuUse> {
        if self.pids.is_empty() {
            return None;
        }
        let now: f64 = self.pids.iter().filter_map(|pid| cpu_secs(*pid)).sum();
        Some(usage(now - self.at_start, self.started))
    }
}

/// CPU of this process's reaped children from now until [`ChildrenMeter::stop`].
#[derive(Debug)]
pub struct ChildrenMeter {
    at_start: Option<f64>,
    started: Instant,
}

fn children_secs() -> Option<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

impl ChildrenMeter {
    pub fn start() -> ChildrenMeter {
        ChildrenMeter {
            at_start: children_secs(),
            started: Instant::now(),
        }
    }

    /// Call after the children were waited for.
    pub fn stop(&self) -> Option<CpuUse> {
        Some(usage(children_secs()? - self.at_start?, self.started))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_busy_thread_shows_as_cpu_of_this_process() {
        let meter = CpuMeter::start(vec![std::process::id()]);
        let until = Instant::now() + std::time::Duration::from_millis(300);
        let mut spins = 0_u64;
        while Instant::now() < until {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        let used = meter.stop().unwrap();
        assert!(used.cores > 0.0, "{used:?}");
        assert!(CpuMeter::start(Vec::new()).stop().is_none());
    }

    #[test]
    fn a_process_that_is_gone_has_no_cpu_reading() {
        assert!(cpu_secs(u32::MAX).is_none());
        assert!(cpu_secs(std::process::id()).is_some());
    }
}
