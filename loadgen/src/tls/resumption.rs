//! Where a run keeps the TLS sessions its connections may resume (module `tls`).
//!
//! rustls's own in-memory store keeps at most 8 TLS 1.3 tickets per server. A load
//! generator opens many connections to one server at once, each resuming with a ticket
//! of its own (a TLS 1.3 ticket is used once), so with 64 connections most found the
//! store empty and made a full handshake: a certificate chain and a signature checked
//! on our side, a signature made on the server's, on every connection of a
//! handshake-bound run. [`SessionStore`] keeps up to [`TICKETS_PER_SERVER`] tickets per
//! server instead (newest used first, oldest dropped first, as rustls does), so every
//! connection after the first wave resumes. The rest (the key-exchange hint and the
//! one TLS 1.2 session) is kept as rustls keeps it. [`Tickets`] is the bounded queue
//! itself, apart from rustls's types.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
};

use rustls::{
    client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue},
    pki_types::ServerName,
    NamedGroup,
};

/// TLS 1.3 tickets kept per server: more than the connections of any usual run, so
/// each of them finds one when it reconnects. A ticket is a few hundred bytes.
pub(crate) const TICKETS_PER_SERVER: usize = 4096;

/// Tickets of one server, newest last, at most `limit` of them.
#[derive(Debug)]
pub(crate) struct Tickets<T> {
    queue: VecDeque<T>,
    limit: usize,
}

impl<T> Tickets<T> {
    pub(crate) fn new(limit: usize) -> Tickets<T> {
        Tickets {
            queue: VecDeque::new(),
            limit,
        }
    }

    /// Keeps `ticket`, dropping the oldest when full.
    pub(crate) fn insert(&mut self, ticket: T) {
        if self.queue.len() >= self.limit {
            self.queue.pop_front();
        }
        self.queue.push_back(ticket);
    }

    /// The newest ticket, which is also the furthest from expiring.
    pub(crate) fn take(&mut self) -> Option<T> {
        self.queue.pop_back()
    }
}

/// What is kept for one server.
#[derive(Debug)]
struct ServerSessions {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: Tickets<Tls13ClientSessionValue>,
}

impl Default for ServerSessions {
    fn default() -> ServerSessions {
        ServerSessions {
            kx_hint: None,
            tls12: None,
            tls13: Tickets::new(TICKETS_PER_SERVER),
        }
    }
}

/// The session store of one run's TLS config, shared by all its connections. The
/// servers are the run's hosts, so they are not bounded apart.
#[derive(Debug, Default)]
pub(crate) struct SessionStore {
    servers: Mutex<HashMap<ServerName<'static>, ServerSessions>>,
}

impl SessionStore {
    fn servers(&self) -> MutexGuard<'_, HashMap<ServerName<'static>, ServerSessions>> {
        // A panic while holding it leaves sessions that are still sessions.
        self.servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.servers().entry(server_name).or_default().kx_hint = Some(group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.servers().get(server_name).and_then(|s| s.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.servers().entry(server_name).or_default().tls12 = Some(value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.servers()
            .get(server_name)
            .and_then(|s| s.tls12.clone())
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        if let Some(server) = self.servers().get_mut(server_name) {
            server.tls12 = None;
        }
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.servers()
            .entry(server_name)
            .or_default()
            .tls13
            .insert(value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.servers()
            .get_mut(server_name)
            .and_then(|s| s.tls13.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_of_a_wave_finds_a_ticket() {
        // rustls's own store would hand out 8 of these 64.
        let mut tickets = Tickets::new(TICKETS_PER_SERVER);
        (0..64).for_each(|ticket| tickets.insert(ticket));
        let taken = std::iter::from_fn(|| tickets.take()).count();
        assert_eq!(taken, 64);
    }

    #[test]
    fn the_newest_ticket_is_used_first_and_the_oldest_dropped_when_full() {
        let mut tickets = Tickets::new(3);
        (1..=5).for_each(|ticket| tickets.insert(ticket));
        let taken: Vec<i32> = std::iter::from_fn(|| tickets.take()).collect();
        assert_eq!(taken, [5, 4, 3]);
    }
}
