//! The gateway's upstream replicas: which ones it may send to, how it picks one, and how
//! the set changes while it runs.
//!
//! Each upstream has a [`ReplicaSet`]: an immutable list swapped whole when the set
//! changes, so a pick never sees half an update, and a request already sent keeps its
//! [`Replica`] (an `Arc`) until it is answered. A replica left out of a new list gets no
//! new request from the moment the swap is done: that is how a deployment drains it.
//!
//! The set changes through the upstreams file (`--upstreams-file`), which the supervisor
//! writes (atomically: a temporary file renamed) during a rollout or blue-green switch:
//! `{"generation": 3, "upstreams": {"orders": ["http://127.0.0.1:4101"]}}`.
//! [`watch_file`] reads it every [`WATCH_INTERVAL`]; on a new generation it swaps the
//! sets it names and then writes the generation to `<file>.applied`, which the supervisor
//! waits for before it stops an old replica. A file, not an HTTP endpoint: the gateway's
//! only listener is public, and the file lives in the run's own directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Upstream;
use crate::platform::breaker::CircuitBreaker;

/// How often the gateway looks at the upstreams file: a switch waits at most this long
/// (plus a file read) before the gateway acts on it.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(50);

/// One replica of an upstream: its address, health and breaker.
pub struct Replica {
    pub base: String,
    pub healthy: AtomicBool,
    pub breaker: CircuitBreaker,
}

impl Replica {
    fn new(base: &str) -> Arc<Replica> {
        Arc::new(Replica {
            base: base.trim_end_matches('/').to_string(),
            // Optimistic until the first health check says otherwise.
            healthy: AtomicBool::new(true),
            breaker: CircuitBreaker::new(5, Duration::from_secs(5)),
        })
    }
}

/// The replicas of one upstream, taken round-robin.
pub struct ReplicaSet {
    /// A std lock, not a Tokio one: it is held only to clone or swap the `Arc`, never
    /// across an `.await`.
    replicas: RwLock<Arc<Vec<Arc<Replica>>>>,
    next: AtomicUsize,
}

impl ReplicaSet {
    pub fn new(bases: &[String]) -> ReplicaSet {
        ReplicaSet {
            replicas: RwLock::new(Arc::new(bases.iter().map(|b| Replica::new(b)).collect())),
            next: AtomicUsize::new(0),
        }
    }

    /// The replicas in rotation now.
    pub fn current(&self) -> Arc<Vec<Arc<Replica>>> {
        // A poisoned lock still holds a whole list: swaps replace it in one assignment.
        self.replicas
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts exactly `bases` in rotation. A replica already in it keeps its health and
    /// breaker; one left out gets no new request from now on.
    pub fn replace(&self, bases: &[String]) {
        let current = self.current();
        let next: Vec<Arc<Replica>> = bases
            .iter()
            .map(|base| {
                let base = base.trim_end_matches('/');
                current
                    .iter()
                    .find(|r| r.base == base)
                    .cloned()
                    .unwrap_or_else(|| Replica::new(base))
            })
            .collect();
        *self
            .replicas
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
    }

    /// The next replica that is healthy and whose breaker admits a call, skipping `avoid`.
    ///
    /// When no replica is healthy, health is ignored ("panic routing", as Envoy does below
    /// its panic threshold): readiness probes check shared dependencies such as the
    /// database, so a slow dependency fails every replica's probe at once, and shedding all
    /// traffic would turn a slowdown into an outage. The breakers still guard each replica.
    pub(super) fn pick(&self, avoid: Option<&Arc<Replica>>) -> Option<Arc<Replica>> {
        let replicas = self.current();
        let any_healthy = replicas.iter().any(|r| {
            r.healthy.load(Ordering::Relaxed) && !avoid.is_some_and(|a| Arc::ptr_eq(a, r))
        });
        let count = replicas.len();
        for _ in 0..count {
            let index = self.next.fetch_add(1, Ordering::Relaxed) % count;
            let replica = &replicas[index];
            if avoid.is_some_and(|a| Arc::ptr_eq(a, replica))
                || (any_healthy && !replica.healthy.load(Ordering::Relaxed))
            {
                continue;
            }
            if replica.breaker.try_acquire() {
                return Some(replica.clone());
            }
        }
        None
    }
}

/// What the supervisor writes to the upstreams file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpstreamsFile {
    /// Grows with every change; the gateway acts on a generation once.
    pub generation: u64,
    /// Service name -> every replica URL in rotation.
    pub upstreams: HashMap<String, Vec<String>>,
}

impl UpstreamsFile {
    /// Writes this to `path` atomically (a temporary file renamed over it), so the
    /// gateway never reads half of it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        write_atomically(path, &text)
    }
}

/// The file the gateway writes the generation it applied to.
pub fn applied_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".applied");
    PathBuf::from(name)
}

/// The generation the gateway has applied from the upstreams file at `path`, if any.
pub fn applied_generation(path: &Path) -> Option<u64> {
    std::fs::read_to_string(applied_path(path))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Applies each new generation of the upstreams file at `path` to `sets` until
/// `shutdown`. An unreadable or invalid file is logged and tried again: the gateway keeps
/// routing to the set it has.
pub async fn watch_file(
    path: PathBuf,
    sets: Arc<HashMap<Upstream, ReplicaSet>>,
    shutdown: CancellationToken,
) {
    let mut applied = 0;
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let file: UpstreamsFile = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(file) => file,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "invalid upstreams file");
                    continue;
                }
            },
            // Not written yet: the `--upstream` flags stand.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "reading the upstreams file");
                continue;
            }
        };
        if file.generation <= applied {
            continue;
        }
        apply(&file, &sets);
        applied = file.generation;
        let generation = applied.to_string();
        if let Err(error) = write_atomically(&applied_path(&path), generation.as_bytes()) {
            tracing::warn!(path = %path.display(), %error, "writing the applied generation");
        }
    }
}

fn apply(file: &UpstreamsFile, sets: &HashMap<Upstream, ReplicaSet>) {
    for (name, bases) in &file.upstreams {
        match Upstream::from_name(name).and_then(|u| sets.get(&u)) {
            Some(set) => {
                set.replace(bases);
                tracing::info!(upstream = %name, replicas = ?bases, generation = file.generation, "upstream replicas changed");
            }
            None => {
                tracing::warn!(upstream = %name, "the upstreams file names an upstream the gateway does not route to")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize) -> ReplicaSet {
        ReplicaSet::new(
            &(1..=n)
                .map(|i| format!("http://127.0.0.1:{i}"))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn unhealthy_replicas_are_skipped_while_a_healthy_one_remains() {
        let set = replicas(3);
        let replicas = set.current();
        replicas[0].healthy.store(false, Ordering::Relaxed);
        replicas[2].healthy.store(false, Ordering::Relaxed);
        for _ in 0..6 {
            let picked = set.pick(None).expect("a replica");
            assert!(Arc::ptr_eq(&picked, &replicas[1]), "{}", picked.base);
        }
        // The only healthy one is avoided (a retry after it failed): panic routing tries another.
        let healthy = replicas[1].clone();
        let retry = set.pick(Some(&healthy)).expect("panic routing on retry");
        assert!(!Arc::ptr_eq(&retry, &healthy));
    }

    #[test]
    fn with_no_healthy_replica_every_replica_takes_turns() {
        let set = replicas(2);
        for replica in set.current().iter() {
            replica.healthy.store(false, Ordering::Relaxed);
        }
        let picked: Vec<String> = (0..4)
            .map(|_| set.pick(None).expect("panic routing").base.clone())
            .collect();
        assert_eq!(
            picked.iter().filter(|b| b.ends_with(":1")).count(),
            2,
            "{picked:?}"
        );
    }

    #[test]
    fn a_replica_taken_out_of_rotation_is_never_picked_and_one_kept_keeps_its_state() {
        let set = replicas(2);
        let kept = set.current()[1].clone();
        kept.healthy.store(false, Ordering::Relaxed);
        set.replace(&["http://127.0.0.1:2/".into(), "http://127.0.0.1:3".into()]);
        let now = set.current();
        assert!(
            Arc::ptr_eq(&now[0], &kept),
            "the same replica, not a new one"
        );
        assert!(
            !now[0].healthy.load(Ordering::Relaxed),
            "its health is kept"
        );
        for _ in 0..10 {
            let picked = set.pick(None).expect("a replica");
            assert_ne!(picked.base, "http://127.0.0.1:1", "a drained replica");
        }
    }

    #[tokio::test]
    async fn a_new_generation_of_the_file_is_applied_and_acknowledged() {
        let dir = std::env::temp_dir().join(format!("upstreams-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("upstreams.json");
        let sets: Arc<HashMap<Upstream, ReplicaSet>> =
            Arc::new([(Upstream::Orders, replicas(1))].into_iter().collect());
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(watch_file(path.clone(), sets.clone(), shutdown.clone()));
        let file = UpstreamsFile {
            generation: 7,
            upstreams: [("orders".to_string(), vec!["http://127.0.0.1:9".to_string()])]
                .into_iter()
                .collect(),
        };
        file.write(&path).expect("written");
        let mut waited = 0;
        while applied_generation(&path) != Some(7) && waited < 200 {
            tokio::time::sleep(WATCH_INTERVAL).await;
            waited += 1;
        }
        shutdown.cancel();
        let _ = watcher.await;
        assert_eq!(applied_generation(&path), Some(7));
        let orders = sets[&Upstream::Orders].current();
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].base, "http://127.0.0.1:9");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
