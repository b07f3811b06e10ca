//! What the system's processes used during a run, sampled from `/proc` once a second
//! (`results.json`'s optional `resources`).
//!
//! The sampler (`faultline_scenarios::run::resources`) records, for each process of the
//! reference system (every service replica, each Kafka broker, PostgreSQL and Redis, each
//! with the children it started), its CPU seconds so far and its resident memory; and
//! for the machine, its network and disk counters since boot. Counters are stored as
//! they were read, so that any interval's use is the difference of two samples; the
//! methods here turn them into the per-second figures reports draw and claims are held
//! against:
//!
//! - [`ResourceResults::cpu_share`]: the share of the machine's cores the system used,
//!   each second (all its processes together);
//! - [`ResourceResults::memory`]: the system's resident memory, summed over its
//!   processes, at each sample;
//! - [`ResourceResults::network`] and [`ResourceResults::disk_ops`]: the machine's bytes
//!   sent and received per second (loopback included: on one machine that is where the
//!   system's traffic goes) and its disk reads and writes completed per second.

use serde::{Deserialize, Serialize};

/// Every sample of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceResults {
    /// Seconds between two samples, as asked.
    pub interval_secs: f64,
    /// The machine's cores, against which a CPU share is taken.
    pub cores: u64,
    /// Each process of the system, in the order the system started them.
    pub processes: Vec<ProcessResources>,
    /// The machine's counters at each sample.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machine: Vec<MachineSample>,
}

/// One process of the system (with its children, e.g. PostgreSQL's backends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessResources {
    /// `orders-1`, `gateway-1`, `kafka-1`, `postgres`, `redis`.
    pub name: String,
    pub samples: Vec<ProcessSample>,
}

/// One reading of a process: counters since it started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    /// Seconds after the run's `started_at`.
    pub t: f64,
    /// User and system CPU seconds used so far by the process and its children.
    pub cpu_secs: f64,
    /// Resident memory of the process and its children, bytes.
    pub rss_bytes: u64,
}

/// One reading of the machine's counters (since boot).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MachineSample {
    /// Seconds after the run's `started_at`.
    pub t: f64,
    /// Bytes received and sent over every interface, loopback included.
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// Reads and writes completed by every disk (not partitions).
    pub disk_reads: u64,
    pub disk_writes: u64,
}

impl ResourceResults {
    /// The share of the machine's cores used by all the system's processes together,
    /// per interval between two samples: `(end of interval, share)`, share 0–1. A
    /// process restarted between two samples (its counter went down) adds nothing for
    /// that interval rather than a negative figure.
    pub fn cpu_share(&self) -> Vec<(f64, f64)> {
        let cores = self.cores.max(1) as f64;
        let mut used: Vec<(f64, f64)> = Vec::new();
        for process in &self.processes {
            for pair in process.samples.windows(2) {
                let seconds = pair[1].t - pair[0].t;
                if seconds <= 0.0 {
                    continue;
                }
                let share = (pair[1].cpu_secs - pair[0].cpu_secs).max(0.0) / seconds / cores;
                add_at(&mut used, pair[1].t, share);
            }
        }
        used
    }

    /// One process's CPU use, in cores (1.0 is one core busy), per interval.
    pub fn process_cores(process: &ProcessResources) -> Vec<(f64, f64)> {
        process
            .samples
            .windows(2)
            .filter(|pair| pair[1].t > pair[0].t)
            .map(|pair| {
                let cores =
                    (pair[1].cpu_secs - pair[0].cpu_secs).max(0.0) / (pair[1].t - pair[0].t);
                (pair[1].t, cores)
            })
            .collect()
    }

    /// The system's resident memory (bytes, summed over its processes) at each sample.
    pub fn memory(&self) -> Vec<(f64, f64)> {
        let mut total: Vec<(f64, f64)> = Vec::new();
        for process in &self.processes {
            for sample in &process.samples {
                add_at(&mut total, sample.t, sample.rss_bytes as f64);
            }
        }
        total
    }

    /// The machine's network bytes (received and sent) per second, per interval.
    pub fn network(&self) -> Vec<(f64, f64)> {
        self.machine_rate(|m| m.net_rx_bytes.saturating_add(m.net_tx_bytes))
    }

    /// The machine's disk operations (reads and writes completed) per second.
    pub fn disk_ops(&self) -> Vec<(f64, f64)> {
        self.machine_rate(|m| m.disk_reads.saturating_add(m.disk_writes))
    }

    fn machine_rate(&self, counter: impl Fn(&MachineSample) -> u64) -> Vec<(f64, f64)> {
        self.machine
            .windows(2)
            .filter(|pair| pair[1].t > pair[0].t)
            .map(|pair| {
                let delta = counter(&pair[1]).saturating_sub(counter(&pair[0]));
                (pair[1].t, delta as f64 / (pair[1].t - pair[0].t))
            })
            .collect()
    }
}

/// Adds `value` to the point of `series` at `t`: samples of different processes taken
/// in one sweep are a few milliseconds apart, so they meet at the sweep's whole
/// interval (`t` rounded to a tenth of a second).
fn add_at(series: &mut Vec<(f64, f64)>, t: f64, value: f64) {
    let key = (t * 10.0).round() / 10.0;
    match series.iter_mut().find(|(at, _)| (*at - key).abs() < 0.05) {
        Some((_, sum)) => *sum += value,
        None => {
            series.push((key, value));
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, cpu_secs: f64, rss_bytes: u64) -> ProcessSample {
        ProcessSample {
            t,
            cpu_secs,
            rss_bytes,
        }
    }

    fn two_processes() -> ResourceResults {
        ResourceResults {
            interval_secs: 1.0,
            cores: 2,
            processes: vec![
                ProcessResources {
                    name: "orders-1".into(),
                    samples: vec![sample(0.0, 10.0, 100), sample(1.0, 10.5, 300)],
                },
                ProcessResources {
                    name: "postgres".into(),
                    // Restarted between the samples: its counter went down.
                    samples: vec![sample(0.01, 4.0, 50), sample(1.01, 1.0, 70)],
                },
            ],
            machine: vec![
                MachineSample {
                    t: 0.0,
                    net_rx_bytes: 1000,
                    net_tx_bytes: 1000,
                    disk_reads: 5,
                    disk_writes: 5,
                },
                MachineSample {
                    t: 2.0,
                    net_rx_bytes: 3000,
                    net_tx_bytes: 2000,
                    disk_reads: 9,
                    disk_writes: 7,
                },
            ],
        }
    }

    #[test]
    fn cpu_share_adds_processes_over_the_machines_cores_and_ignores_a_restart() {
        let share = two_processes().cpu_share();
        assert_eq!(share, vec![(1.0, 0.25)]);
    }

    #[test]
    fn memory_sums_the_processes_of_one_sweep() {
        assert_eq!(two_processes().memory(), vec![(0.0, 150.0), (1.0, 370.0)]);
    }

    #[test]
    fn machine_counters_become_rates() {
        let resources = two_processes();
        assert_eq!(resources.network(), vec![(2.0, 1500.0)]);
        assert_eq!(resources.disk_ops(), vec![(2.0, 3.0)]);
    }

    #[test]
    fn results_without_resources_still_read() {
        let json = r#"{"interval_secs":1.0,"cores":4,"processes":[]}"#;
        let read: ResourceResults = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        assert!(read.machine.is_empty());
    }
}
