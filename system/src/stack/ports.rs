//! Loopback ports for the stack's components.
//!
//! A free port is found by binding port 0 and letting the listener go. Another process could
//! take it before the component binds it; then the component fails to start and its error
//! carries the log that says so. A port the user asked for is checked before anything starts,
//! so a taken one is reported as such, not as a component crash.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use super::StackError;

pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port(component: &str) -> Result<u16, StackError> {
    let listener = TcpListener::bind(SocketAddrV4::new(LOOPBACK, 0))
        .map_err(|source| StackError::io(format!("finding a free port for {component}"), source))?;
    let port = listener
        .local_addr()
        .map_err(|source| StackError::io(format!("finding a free port for {component}"), source))?
        .port();
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
