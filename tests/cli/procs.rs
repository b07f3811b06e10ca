//! Reading the process table from /proc: who is whose child, which process group.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// (pid, parent pid, process group) of every process, from /proc/<pid>/stat.
pub fn process_table() -> Vec<(i32, i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command name may hold spaces and parentheses; fields resume after the last ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            // A zombie has died, unless it is a thread-group leader whose other threads are
            // still exiting (and still hold its sockets).
            if state == "Z" {
                let tasks = std::fs::read_dir(entry.path().join("task")).map_or(0, |t| t.count());
                if tasks <= 1 {
                    return None;
                }
            }
            let ppid = fields.next()?.parse().ok()?;
            let pgrp = fields.next()?.parse().ok()?;
            Some((pid, ppid, pgrp))
        })
        .collect()
}

/// Process groups led by the direct children of `parent`: the stack's components.
pub fn child_groups(parent: u32) -> HashSet<i32> {
    process_table()
        .into_iter()
        .filter(|(_, ppid, _)| *ppid == parent as i32)
        .map(|(_, _, pgrp)| pgrp)
        .collect()
}

/// Every descendant of `ancestor` (children, their children, ...).
///
/// Process groups are not enough: PostgreSQL's postmaster puts each of its children in a
/// session of its own.
pub fn descendants(ancestor: u32) -> HashSet<i32> {
    let table = process_table();
    let mut found: HashSet<i32> = HashSet::new();
    let mut frontier = vec![ancestor as i32];
    while let Some(parent) = frontier.pop() {
        for (pid, ppid, _) in &table {
            if *ppid == parent && found.insert(*pid) {
                frontier.push(*pid);
            }
        }
    }
    found
}

/// Those of `pids` still alive (zombies excluded).
pub fn still_alive(pids: &HashSet<i32>) -> Vec<i32> {
    process_table()
        .into_iter()
        .map(|(pid, _, _)| pid)
        .filter(|pid| pids.contains(pid))
        .collect()
}

/// Waits until none of `pids` is alive; returns the survivors otherwise.
pub fn wait_until_gone(pids: &HashSet<i32>, timeout: Duration) -> Result<(), Vec<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive = still_alive(pids);
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(alive);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
