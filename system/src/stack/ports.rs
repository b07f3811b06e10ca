//! Loopback ports for the stack's components.
//!
//! A component such as Kafka binds its ports seconds after they were chosen, so a chosen
//! port must stay free in between. Two things take ports in that window, and each is kept
//! out:
//! - **Outgoing connections.** The kernel gives every `connect()` a local port from the
//!   ephemeral range (`net.ipv4.ip_local_port_range`), and a load test makes thousands. A
//!   port found by binding port 0 comes from that same range, so ports are chosen *below*
//!   it instead.
//! - **Other faultline processes** choosing at the same moment (tests run many stacks in
//!   parallel). A chosen port is held by an advisory lock on a file in
//!   `$TMPDIR/faultline-ports/` for the life of this process; another process skips a
//!   locked port. Within one process a set of handed-out ports does the same.
//!
//! A port the user asked for is checked before anything starts, so a taken one is reported
//! as such, not as a component crash.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use rand::Rng;

use super::StackError;

pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Lowest port chosen; below it are many well-known services' ports.
const LOWEST_CHOSEN_PORT: u16 = 10_000;

/// Ports tried before giving up.
const ATTEMPTS: usize = 200;

/// Ports this process has handed out, with the lock file that keeps other processes off.
fn handed_out() -> &'static Mutex<HashMap<u16, Option<File>>> {
    static HANDED_OUT: OnceLock<Mutex<HashMap<u16, Option<File>>>> = OnceLock::new();
    HANDED_OUT.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A port on 127.0.0.1 that is free, below the ephemeral range, and reserved for this
/// process (see the module comment).
pub fn free_port(component: &str) -> Result<u16, StackError> {
    let range = chosen_range();
    let mut rng = rand::rng();
    let mut handed_out = handed_out()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..ATTEMPTS {
        let port = rng.random_range(range.0..range.1);
        if handed_out.contains_key(&port) {
            continue;
        }
        let Some(lock) = lock_port(port) else {
            continue;
        };
        if TcpListener::bind(SocketAddrV4::new(LOOPBACK, port)).is_err() {
            continue;
        }
        handed_out.insert(port, lock);
        return Ok(port);
    }
    // A crowded range: fall back to the kernel's choice, which is at least free now.
    let listener = TcpListener::bind(SocketAddrV4::new(LOOPBACK, 0))
        .map_err(|source| StackError::io(format!("finding a free port for {component}"), source))?;
    let port = listener
        .local_addr()
        .map_err(|source| StackError::io(format!("finding a free port for {component}"), source))?
        .port();
    handed_out.insert(port, None);
    Ok(port)
}

/// `requested` if it is free, a fresh free port if none was requested.
pub fn port_for(component: &str, requested: Option<u16>) -> Result<u16, StackError> {
    match requested {
        None | Some(0) => free_port(component),
        Some(port) => {
            TcpListener::bind(SocketAddrV4::new(LOOPBACK, port)).map_err(|source| {
                StackError::PortTaken {
                    component: component.to_string(),
                    port,
                    reason: source.to_string(),
                }
            })?;
            Ok(port)
        }
    }
}

/// `[low, high)` to choose from: from [`LOWEST_CHOSEN_PORT`] up to the ephemeral range, or,
/// on a machine whose ephemeral range starts too low to leave room, above its top.
fn chosen_range() -> (u16, u16) {
    let (ephemeral_low, ephemeral_high) = ephemeral_range().unwrap_or((32_768, 60_999));
    if ephemeral_low > LOWEST_CHOSEN_PORT + 1_000 {
        (LOWEST_CHOSEN_PORT, ephemeral_low)
    } else if ephemeral_high < 64_000 {
        (ephemeral_high + 1, u16::MAX)
    } else {
        (LOWEST_CHOSEN_PORT, u16::MAX)
    }
}

fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    Some((fields.next()?.ok()?, fields.next()?.ok()?))
}

/// Takes this process's advisory lock on `port`: `None` when another process holds it,
/// `Some(None)` when locking is not possible here (then only the bind check guards).
fn lock_port(port: u16) -> Option<Option<File>> {
    let dir = lock_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        return Some(None);
    }
    let file = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{port}.lock")))
    {
        Ok(file) => file,
        Err(_) => return Some(None),
    };
    match file.try_lock() {
        Ok(()) => Some(Some(file)),
        Err(TryLockError::WouldBlock) => None,
        Err(TryLockError::Error(_)) => Some(None),
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("faultline-ports")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50)
            .map(|_| free_port("test").expect("a free port"))
            .collect();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        if let Some((low, high)) = ephemeral_range() {
            for port in &ports {
                assert!(
                    !(low..=high).contains(port),
                    "{port} is in the ephemeral range {low}-{high}"
                );
            }
        }
    }

    #[test]
    fn a_port_locked_by_another_holder_is_skipped() {
        let port = free_port("test").expect("a free port");
        // This process holds the lock, so a second open file cannot take it.
        assert!(
            lock_port(port).is_none(),
            "port {port} could be locked twice"
        );
    }
}
