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
//! [`watch_file`] looks at its metadata every [`WATCH_INTERVAL`] and reads it only when
//! that changed; on a new generation it swaps the sets it names and then writes the
//! generation to `<file>.applied`, which the supervisor waits for before it stops an old
//! replica. A file, not an HTTP endpoint: the gateway's only listener is public, and the
//! file lives in the run's own directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

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
    let temporary = temporary_path(path);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Where a file is written before it is renamed over `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    PathBuf::from(temporary)
}

/// Applies each new generation of the upstreams file at `path` to `sets` until
/// `shutdown`. An unreadable or invalid file is logged once and looked at again: the
/// gateway keeps routing to the set it has.
pub async fn watch_file(
    path: PathBuf,
    sets: Arc<HashMap<Upstream, ReplicaSet>>,
    shutdown: CancellationToken,
) {
    let mut watch = FileWatch::default();
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let file = match look(&path, &mut watch).await {
            Outcome::Apply(file) => file,
            Outcome::Warn(problem) => {
                tracing::warn!("{problem}");
                continue;
            }
            Outcome::Nothing => continue,
        };
        apply(&file, &sets);
        let generation = file.generation.to_string();
        let applied = applied_path(&path);
        if let Err(error) = write_atomically_async(&applied, generation.as_bytes()).await {
            tracing::warn!(path = %applied.display(), %error, "writing the applied generation");
        }
    }
}

/// One look at the file: its metadata always, its text only when that changed.
async fn look(path: &Path, watch: &mut FileWatch) -> Outcome {
    let version = match tokio::fs::metadata(path).await {
        Ok(metadata) => Version::of(&metadata),
        // Not written yet: the `--upstream` flags stand.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Outcome::Nothing,
        Err(error) => {
            let problem = format!("cannot read the upstreams file {}: {error}", path.display());
            return watch.problem(None, problem);
        }
    };
    if !watch.needs_read(version) {
        return Outcome::Nothing;
    }
    match tokio::fs::read(path).await {
        Ok(bytes) => watch.take(version, &bytes, path),
        Err(error) => {
            let problem = format!("cannot read the upstreams file {}: {error}", path.display());
            watch.problem(Some(version), problem)
        }
    }
}

async fn write_atomically_async(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_path(path);
    tokio::fs::write(&temporary, bytes).await?;
    tokio::fs::rename(&temporary, path).await
}

/// Which version of the file its metadata describes. The supervisor renames a new file
/// over the old one, so the inode changes with every write; it is kept beside the
/// modification time because that time moves in clock ticks of a few milliseconds, and two
/// generations of the same length can be written within one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Version {
    fn of(metadata: &std::fs::Metadata) -> Version {
        use std::os::unix::fs::MetadataExt;
        Version {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
        }
    }
}

/// What a look at the upstreams file calls for.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A generation newer than the one applied.
    Apply(UpstreamsFile),
    /// A problem not logged yet.
    Warn(String),
    /// Nothing new: no file, the version already read, or a problem already logged.
    Nothing,
}

/// What the watcher remembers between looks: the version it read last, the generation it
/// applied last, and the problem it logged last, so that a bad file is reported once and
/// not at every look.
#[derive(Debug, Default)]
struct FileWatch {
    read: Option<Version>,
    applied: u64,
    logged: Option<(Option<Version>, String)>,
}

impl FileWatch {
    /// Whether the file must be read: only when it is not the version read last.
    fn needs_read(&self, version: Version) -> bool {
        self.read != Some(version)
    }

    /// What the text read at `version` calls for.
    fn take(&mut self, version: Version, bytes: &[u8], path: &Path) -> Outcome {
        // Valid or not, this version is not read again: its text cannot change without
        // its metadata changing.
        self.read = Some(version);
        match serde_json::from_slice::<UpstreamsFile>(bytes) {
            Ok(file) => {
                self.logged = None;
                if file.generation <= self.applied {
                    return Outcome::Nothing;
                }
                self.applied = file.generation;
                Outcome::Apply(file)
            }
            Err(error) => {
                let problem = format!(
                    "the upstreams file {} is invalid: {error}; the gateway keeps its \
                     replicas until the file changes",
                    path.display()
                );
                self.problem(Some(version), problem)
            }
        }
    }

    /// `problem` at `version` (None: no metadata), to be logged unless it was logged last.
    fn problem(&mut self, version: Option<Version>, problem: String) -> Outcome {
        let seen = (version, problem);
        if self.logged.as_ref() == Some(&seen) {
            return Outcome::Nothing;
        }
        let problem = seen.1.clone();
        self.logged = Some(seen);
        Outcome::Warn(problem)
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

    fn version(modified_ms: u64, len: u64, inode: u64) -> Version {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(modified_ms);
        Version {
            modified: Some(modified),
            len,
            inode,
        }
    }

    fn file_text(generation: u64, base: &str) -> Vec<u8> {
        let file = UpstreamsFile {
            generation,
            upstreams: [("orders".to_string(), vec![base.to_string()])]
                .into_iter()
                .collect(),
        };
        serde_json::to_vec(&file).expect("serializable")
    }

    #[test]
    fn the_file_is_read_again_only_when_its_time_length_or_inode_changed() {
        let path = Path::new("run/upstreams.json");
        let mut watch = FileWatch::default();
        let first = version(1_000, 60, 7);
        assert!(watch.needs_read(first), "never read yet");
        let text = file_text(1, "http://127.0.0.1:4101");
        assert!(matches!(watch.take(first, &text, path), Outcome::Apply(f) if f.generation == 1));
        assert!(
            !watch.needs_read(first),
            "the same version is not read again"
        );
        for changed in [
            version(1_001, 60, 7),
            version(1_000, 61, 7),
            // Renamed over within one clock tick, with the same length.
            version(1_000, 60, 8),
        ] {
            assert!(watch.needs_read(changed), "{changed:?} is a new version");
        }
        // A new version with the same generation is read but not applied again.
        let touched = version(2_000, 60, 7);
        assert_eq!(watch.take(touched, &text, path), Outcome::Nothing);
        let next = version(3_000, 60, 9);
        let text = file_text(2, "http://127.0.0.1:4102");
        assert!(matches!(watch.take(next, &text, path), Outcome::Apply(f) if f.generation == 2));
    }

    #[test]
    fn an_invalid_file_is_reported_once_naming_it_and_its_line_until_it_changes() {
        let path = Path::new("run/upstreams.json");
        let mut watch = FileWatch::default();
        let bad = version(1_000, 30, 7);
        let text = b"{\"generation\": 1,\n \"upstreams\": [}";
        let Outcome::Warn(problem) = watch.take(bad, text, path) else {
            panic!("an invalid file is reported");
        };
        assert!(problem.contains("run/upstreams.json"), "{problem}");
        assert!(problem.contains("line 2"), "{problem}");
        assert!(!watch.needs_read(bad), "the bad version is not read again");
        // The same bad text under a new version is a new report.
        let rewritten = version(2_000, 30, 8);
        assert!(watch.needs_read(rewritten));
        assert!(matches!(
            watch.take(rewritten, text, path),
            Outcome::Warn(_)
        ));
        // Fixed: applied.
        let fixed = version(3_000, 60, 9);
        let text = file_text(1, "http://127.0.0.1:4101");
        assert!(matches!(watch.take(fixed, &text, path), Outcome::Apply(_)));
    }

    #[test]
    fn a_file_that_cannot_be_read_is_reported_once_until_the_problem_changes() {
        let mut watch = FileWatch::default();
        let denied = "cannot read the upstreams file run/upstreams.json: permission denied";
        let at = Some(version(1_000, 30, 7));
        assert_eq!(
            watch.problem(at, denied.to_string()),
            Outcome::Warn(denied.to_string())
        );
        assert_eq!(watch.problem(at, denied.to_string()), Outcome::Nothing);
        assert!(
            watch.needs_read(version(1_000, 30, 7)),
            "an unread version is tried again"
        );
        let other = "cannot read the upstreams file run/upstreams.json: is a directory";
        assert!(matches!(
            watch.problem(None, other.to_string()),
            Outcome::Warn(_)
        ));
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
