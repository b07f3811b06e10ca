//! The `/proc` sampler of a run: once a second, the CPU seconds and resident memory of
//! each process of the reference system, and the machine's network and disk counters,
//! into results' `resources` (`faultline_results::resources`).
//!
//! [`ResourceSampler::start`] runs beside the load and the `/metrics` scrape; each sweep
//! reads `/proc/<pid>/stat` of every process once (off the async workers), builds the
//! parent → children tree, and adds each watched process's whole tree: PostgreSQL's
//! backends are children of its postmaster, and a child already reaped is in its
//! parent's `cutime`/`cstime`. The watched processes are asked of the system at every
//! sweep, so a replica restarted by a fault is followed under its new pid.
//! [`ResourceSampler::finish`] turns the sweeps' wall-clock times into offsets from the
//! run's start. On a system without `/proc` nothing is sampled and results have no
//! `resources`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use faultline_results::{Machine, MachineSample, ProcessResources, ProcessSample, ResourceResults};
use faultline_system::supervisor::System;
use tokio::{sync::oneshot, task::JoinHandle};

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, which Linux fixes
/// at 100 for every user-space ABI (what `sysconf(_SC_CLK_TCK)` answers).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process to follow: its name in results and its pid now.
type Watched = (String, u32);

/// One sweep: when, each watched process's (CPU seconds, resident bytes), the machine.
struct Sweep {
    at: SystemTime,
    processes: Vec<(String, f64, u64)>,
    machine: Option<(u64, u64, u64, u64)>,
}

/// A running sampler; see the module documentation.
pub struct ResourceSampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Sweep>>,
    interval: Duration,
}

impl ResourceSampler {
    pub fn start(system: Arc<System>, interval: Duration) -> ResourceSampler {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let page_bytes = page_size();
            let mut sweeps = Vec::new();
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let watched = watched(&system);
                let sweep = tokio::task::spawn_blocking(move || sweep(&watched, page_bytes)).await;
                match sweep {
                    Ok(Some(sweep)) => sweeps.push(sweep),
                    // No /proc: nothing to sample on this system, now or later.
                    Ok(None) | Err(_) => break,
                }
            }
            sweeps
        });
        ResourceSampler {
            stop,
            task,
            interval,
        }
    }

    /// Stops sampling; the samples with offsets from `started_at`, or `None` when none
    /// was taken.
    pub async fn finish(self, started_at: SystemTime) -> Option<ResourceResults> {
        let _ = self.stop.send(());
        let sweeps = self.task.await.ok()?;
        if sweeps.is_empty() {
            return None;
        }
        let offset = |at: SystemTime| match at.duration_since(started_at) {
            Ok(after) => after.as_secs_f64(),
            Err(before) => -before.duration().as_secs_f64(),
        };
        let mut processes: Vec<ProcessResources> = Vec::new();
        let mut machine = Vec::new();
        for sweep in &sweeps {
            let t = offset(sweep.at);
            for (name, cpu_secs, rss_bytes) in &sweep.processes {
                let sample = ProcessSample {
                    t,
                    cpu_secs: *cpu_secs,
                    rss_bytes: *rss_bytes,
                };
                match processes.iter_mut().find(|p| &p.name == name) {
                    Some(process) => process.samples.push(sample),
                    None => processes.push(ProcessResources {
                        name: name.clone(),
                        samples: vec![sample],
                    }),
                }
            }
            if let Some((net_rx_bytes, net_tx_bytes, disk_reads, disk_writes)) = sweep.machine {
                machine.push(MachineSample {
                    t,
                    net_rx_bytes,
                    net_tx_bytes,
                    disk_reads,
                    disk_writes,
                });
            }
        }
        Some(ResourceResults {
            interval_secs: self.interval.as_secs_f64(),
            cores: Machine::this().cores,
            processes,
            machine,
        })
    }
}

/// Every process of the system now: each service replica (`orders-1`), each Kafka
/// broker (`kafka-1`), `postgres` and `redis` (those the stack started itself).
fn watched(system: &System) -> Vec<Watched> {
    let mut watched: Vec<Watched> = system
        .services()
        .into_iter()
        .filter_map(|(env_name, _, pid)| Some((replica_name(&env_name), pid?)))
        .collect();
    if let Some(stack) = system.stack() {
        for (index, broker) in stack.kafka().brokers().iter().enumerate() {
            if let Some(pid) = broker.pid() {
                watched.push((format!("kafka-{}", index + 1), pid));
            }
        }
        let servers = [
            ("postgres", stack.postgres().process()),
            ("redis", stack.redis().process()),
        ];
        for (name, process) in servers {
            if let Some(process) = process {
                watched.push((name.to_string(), process.pid()));
            }
        }
    }
    watched
}

/// `SERVICE_ORDERS_1` → `orders-1`, the name faults use.
fn replica_name(env_name: &str) -> String {
    let lower = env_name
        .strip_prefix("SERVICE_")
        .unwrap_or(env_name)
        .to_lowercase();
    match lower.rsplit_once('_') {
        Some((service, replica)) => format!("{service}-{replica}"),
        None => lower,
    }
}

/// What `/proc/<pid>/stat` says of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    parent: u32,
    /// utime + stime + cutime + cstime, in ticks.
    ticks: u64,
    rss_pages: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name (field 2) is in parentheses
/// and may hold spaces and parentheses itself, so fields are counted after its last `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let after_name = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        parent: u32::try_from(field(4)?).ok()?,
        ticks: field(14)? + field(15)? + field(16)? + field(17)?,
        rss_pages: field(24)?,
    })
}

/// One pass over `/proc`; `None` when there is no `/proc` to read.
fn sweep(watched: &[Watched], page_bytes: u64) -> Option<Sweep> {
    let at = SystemTime::now();
    let mut stats: HashMap<u32, Stat> = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read: it is simply not counted.
        if let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|line| parse_stat(&line))
        {
            stats.insert(pid, stat);
        }
    }
    let processes = watched
        .iter()
        .filter_map(|(name, pid)| {
            let (ticks, pages) = tree_total(&stats, *pid)?;
            Some((
                name.clone(),
                ticks as f64 / TICKS_PER_SECOND,
                pages.saturating_mul(page_bytes),
            ))
        })
        .collect();
    let machine = machine_counters();
    Some(Sweep {
        at,
        processes,
        machine,
    })
}

/// The ticks and resident pages of `root` and every descendant of it; `None` when
/// `root` is gone.
fn tree_total(stats: &HashMap<u32, Stat>, root: u32) -> Option<(u64, u64)> {
    let first = stats.get(&root)?;
    let (mut ticks, mut pages) = (first.ticks, first.rss_pages);
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, stat) in stats.iter().filter(|(_, s)| s.parent == parent) {
            ticks += stat.ticks;
            pages += stat.rss_pages;
            frontier.push(*pid);
        }
    }
    Some((ticks, pages))
}

/// The machine's (bytes received, bytes sent, disk reads, disk writes) since boot.
fn machine_counters() -> Option<(u64, u64, u64, u64)> {
    let (rx, tx) = network_bytes(&std::fs::read_to_string("/proc/net/dev").ok()?);
    let (reads, writes) = disk_ops(&std::fs::read_to_string("/proc/diskstats").ok()?, |name| {
        // Whole disks have a device behind them; partitions, loop and ram devices not.
        std::path::Path::new("/sys/block")
            .join(name)
            .join("device")
            .exists()
    });
    Some((rx, tx, reads, writes))
}

/// Bytes received and sent over every interface of `/proc/net/dev`.
fn network_bytes(text: &str) -> (u64, u64) {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .filter_map(|(_, counters)| {
            let fields: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            Some((*fields.first()?, *fields.get(8)?))
        })
        .fold((0, 0), |(rx, tx), (r, t)| {
            (rx.saturating_add(r), tx.saturating_add(t))
        })
}

/// Reads and writes completed by the devices of `/proc/diskstats` that `is_disk` keeps.
fn disk_ops(text: &str, is_disk: impl Fn(&str) -> bool) -> (u64, u64) {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields.get(2)?;
            if !is_disk(name) {
                return None;
            }
            Some((
                fields.get(3)?.parse::<u64>().ok()?,
                fields.get(7)?.parse::<u64>().ok()?,
            ))
        })
        .fold((0, 0), |(reads, writes), (r, w)| {
            (reads.saturating_add(r), writes.saturating_add(w))
        })
}

/// Bytes of a memory page, from the kernel's own answer for this process (4 KiB when it
/// cannot be read).
fn page_size() -> u64 {
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("KernelPageSize:"))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kb| kb.trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (tokio (rt) w) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 9 0 1000 123456789 1536 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                parent: 17,
                ticks: 250 + 50 + 7 + 3,
                rss_pages: 1536
            }
        );
    }

    #[test]
    fn a_process_tree_adds_its_descendants_and_nothing_else() {
        let stat = |parent, ticks, rss_pages| Stat {
            parent,
            ticks,
            rss_pages,
        };
        let stats = HashMap::from([
            (10, stat(1, 100, 10)),
            (11, stat(10, 20, 2)),
            (12, stat(11, 3, 1)),
            (20, stat(1, 1000, 100)),
        ]);
        assert_eq!(tree_total(&stats, 10), Some((123, 13)));
        assert_eq!(tree_total(&stats, 99), None);
    }

    #[test]
    fn machine_counters_add_every_interface_and_only_whole_disks() {
        let dev = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 500       5    0    0    0     0          0         0     200       2    0    0    0     0       0          0";
        assert_eq!(network_bytes(dev), (1500, 1200));
        let disks = " 253       0 vda 100 0 800 10 40 0 320 5 0 20 15 0 0 0 0
 253       1 vda1 90 0 700 9 30 0 240 4 0 18 13 0 0 0 0";
        assert_eq!(disk_ops(disks, |name| name == "vda"), (100, 40));
    }

    #[test]
    fn replica_names_are_those_faults_use() {
        assert_eq!(replica_name("SERVICE_ORDERS_1"), "orders-1");
        assert_eq!(replica_name("SERVICE_GATEWAY_1"), "gateway-1");
    }

    #[test]
    fn this_process_is_found_with_its_cpu_and_memory() {
        let page_bytes = page_size();
        let me = std::process::id();
        // Spend some CPU so that the counter cannot be 0.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let sweep = sweep(&[("me".into(), me)], page_bytes).unwrap();
        let (name, cpu_secs, rss_bytes) = &sweep.processes[0];
        assert_eq!(name, "me");
        assert!(*cpu_secs > 0.0, "{cpu_secs}");
        assert!(*rss_bytes > 1 << 20, "{rss_bytes}");
        assert!(sweep.machine.is_some());
    }
}
