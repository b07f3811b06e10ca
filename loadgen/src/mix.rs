//! Routes: which request, and which host, each arrival goes to.
//!
//! [`Turns`]: smooth weighted round robin (nginx's upstream balancing) laid out once
//! into a table of one cycle, so weights 3:1 give exactly 3 and 1 of every 4 arrivals,
//! interleaved (`a a b a`, not `a a a b`), and equal weights give plain turns
//! (`a b c a b c`), as requests were sent before weights existed. Picking is one
//! modulo and one load per arrival.
//!
//! [`Routes`] puts the turns of the requests and of the hosts together, and numbers the
//! endpoints results are kept under: one per request and host when the hosts are
//! spread by turns, one per request when each request has its own host (a recording
//! spanning several hosts). A recording replayed in order ([`ReplayStep`]s) is not
//! turns at all: each virtual user takes the steps one after another, with the think
//! time recorded before each.

use std::time::Duration;

use crate::{error::LoadError, har::ReplayStep};

/// The longest cycle a mix may have (after dividing the weights by their greatest
/// common divisor): it is one table entry per arrival of a cycle.
const MAX_CYCLE: u64 = 100_000;

/// One cycle of weighted turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Turns {
    order: Vec<usize>,
}

impl Turns {
    /// The turns of `weights` (each at least 1). `Err` says why not.
    pub(crate) fn new(weights: &[u32]) -> Result<Turns, String> {
        if weights.is_empty() {
            return Err("nothing to choose from".into());
        }
        if let Some(position) = weights.iter().position(|w| *w == 0) {
            return Err(format!(
                "weight of entry {} is 0: weights start at 1",
                position + 1
            ));
        }
        let divisor = weights.iter().fold(0, |d, w| gcd(d, *w));
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
        let cycle: i64 = weights.iter().sum();
        if cycle as u64 > MAX_CYCLE {
            return Err(format!(
                "weights sum to {cycle} (after dividing by their common divisor); keep it at most {MAX_CYCLE}"
            ));
        }
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(cycle as usize);
        for _ in 0..cycle {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            // The first of the largest, so ties go in entry order.
            let mut chosen = 0;
            for (i, c) in current.iter().enumerate() {
                if *c > current[chosen] {
                    chosen = i;
                }
            }
            current[chosen] -= cycle;
            order.push(chosen);
        }
        Ok(Turns { order })
    }

    /// How many arrivals one cycle has.
    pub(crate) fn cycle(&self) -> u64 {
        self.order.len() as u64
    }

    /// The entry arrival `index` goes to.
    pub(crate) fn at(&self, index: u64) -> usize {
        match self.order.len() {
            1 => 0,
            len => self.order[(index % len as u64) as usize],
        }
    }
}

/// Which endpoint and host an arrival, or a replay's step, goes to.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    request_turns: Turns,
    host_turns: Turns,
    requests: usize,
    hosts: usize,
    /// Per request, the one host it goes to; empty: requests meet every host in turn.
    own_hosts: Vec<usize>,
    /// The recording's order; empty: weighted turns.
    replay: Vec<ReplayStep>,
}

impl Routes {
    /// The routes of requests of `request_weights` over hosts of `host_weights`;
    /// `own_hosts` (one per request, or empty) and `replay` (steps naming requests, or
    /// empty) as [`crate::LoadConfig`] holds them. `Err` says which is wrong.
    pub(crate) fn new(
        request_weights: &[u32],
        host_weights: &[u32],
        own_hosts: &[usize],
        replay: &[ReplayStep],
    ) -> Result<Routes, LoadError> {
        let invalid = |option, reason: String| LoadError::InvalidArgument { option, reason };
        let request_turns =
            Turns::new(request_weights).map_err(|reason| invalid("request weights", reason))?;
        let host_turns =
            Turns::new(host_weights).map_err(|reason| invalid("target weights", reason))?;
        let hosts = host_weights.len();
        let requests = request_weights.len();
        if !own_hosts.is_empty() && own_hosts.len() != requests {
            return Err(invalid(
                "request hosts",
                format!("{} hosts for {requests} requests", own_hosts.len()),
            ));
        }
        if let Some(host) = own_hosts.iter().find(|h| **h >= hosts) {
            return Err(invalid(
                "request hosts",
                format!("host {} of {hosts}", host + 1),
            ));
        }
        if let Some(step) = replay.iter().find(|s| s.request >= requests) {
            return Err(invalid(
                "replay",
                format!("a step names request {} of {requests}", step.request + 1),
            ));
        }
        Ok(Routes {
            request_turns,
            host_turns,
            requests,
            hosts,
            own_hosts: own_hosts.to_vec(),
            replay: replay.to_vec(),
        })
    }

    /// Each endpoint's request and host, in endpoint order.
    pub(crate) fn endpoints(&self) -> Vec<(usize, usize)> {
        if !self.own_hosts.is_empty() {
            return self.own_hosts.iter().copied().enumerate().collect();
        }
        let hosts = 0..self.hosts;
        (0..self.requests)
            .flat_map(|request| hosts.clone().map(move |host| (request, host)))
            .collect()
    }

    fn endpoint(&self, request: usize, host: usize) -> usize {
        if self.own_hosts.is_empty() {
            request * self.hosts + host
        } else {
            request
        }
    }

    /// The endpoint and the host arrival `index` goes to. The host moves on once per
    /// cycle of the requests' turns, so every request meets every host in turn.
    pub(crate) fn of_arrival(&self, index: u64) -> (usize, usize) {
        let request = self.request_turns.at(index);
        if let Some(host) = self.own_hosts.get(request) {
            return (request, *host);
        }
        if self.hosts == 1 {
            // One host (the common case): no division per arrival.
            return (request, 0);
        }
        let host = self.host_turns.at(index / self.request_turns.cycle());
        (self.endpoint(request, host), host)
    }

    /// Whether arrivals are a recording's steps replayed in order.
    pub(crate) fn replaying(&self) -> bool {
        !self.replay.is_empty()
    }

    /// A virtual user's step `position` (counted from 0, round and round the
    /// recording): its endpoint and host, and the think time before the next step.
    pub(crate) fn step(&self, position: u64) -> (usize, usize, Duration) {
        let len = self.replay.len() as u64;
        let step = &self.replay[(position % len) as usize];
        let next = &self.replay[((position + 1) % len) as usize];
        // Without hosts of their own, each pass of the recording goes to the next host.
        let host = match self.own_hosts.get(step.request) {
            Some(host) => *host,
            None => self.host_turns.at(position / len),
        };
        (self.endpoint(step.request, host), host, next.think)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cycle(weights: &[u32]) -> Vec<usize> {
        let turns = Turns::new(weights).unwrap();
        (0..turns.cycle()).map(|i| turns.at(i)).collect()
    }

    #[test]
    fn equal_weights_take_plain_turns() {
        assert_eq!(cycle(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(cycle(&[5, 5]), [0, 1]);
        assert_eq!(cycle(&[7]), [0]);
    }

    #[test]
    fn weights_three_to_one_give_three_of_every_four_interleaved() {
        assert_eq!(cycle(&[3, 1]), [0, 0, 1, 0]);
        assert_eq!(cycle(&[300, 100]), [0, 0, 1, 0]);
        let counts = cycle(&[5, 1, 2]).iter().fold([0; 3], |mut c, i| {
            c[*i] += 1;
            c
        });
        assert_eq!(counts, [5, 1, 2]);
    }

    #[test]
    fn zero_weights_and_huge_cycles_are_refused() {
        assert!(Turns::new(&[1, 0]).unwrap_err().contains("entry 2"));
        assert!(Turns::new(&[100_000, 1]).unwrap_err().contains("at most"));
        assert!(Turns::new(&[]).is_err());
    }
}
