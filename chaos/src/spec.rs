//! The `[[faults]]` part of a scenario file: [`FaultSpec`] is what the file says
//! (strings as written, so errors can quote them), [`Fault`] is what it means once
//! validated (durations, rates, one [`FaultAction`] per kind). Validation names the
//! fault's number in the file (1-based, in file order), its kind and target, and the
//! field at fault.
//!
//! ```toml
//! [[faults]]
//! at = "10s"            # offset from the start of load
//! duration = "5s"       # absent: until the run ends; not allowed for kill, terminate, restart
//! kind = "latency"
//! target = "kafka"      # a name the run binds to a proxy or a process
//! latency = "200ms"
//! jitter = "50ms"
//! direction = "both"    # upstream (client to server) | downstream | both
//!
//! [[faults]]
//! at = "20s"
//! kind = "rollout"      # or "blue-green": a deployment of every replica of a service
//! target = "orders"
//! pause = "1s"          # rollout: wait between replicas (default 1s)
//! drain = "2s"          # how long an old replica keeps its in-flight requests once the
//!                       # gateway stopped sending to it, before SIGTERM (default 2s)
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::proxy::{Direction, Latency, Slicer};
use faultline_results::quantity::{self, parse_byte_rate, parse_bytes, QuantityError};

use crate::units::{format_bytes, format_duration, format_rate};

/// One `[[faults]]` entry as written. (A missing `Option` field is `None`: serde needs no
/// `default` for it.)
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Offset from the start of load, e.g. `"10s"`.
    pub at: String,
    /// How long the fault lasts, e.g. `"5s"`.
    pub duration: Option<String>,
    pub kind: FaultKind,
    /// The name of a proxy or process the run binds.
    pub target: String,
    /// latency: the added delay.
    pub latency: Option<String>,
    /// latency: uniform jitter around the delay (± this much).
    pub jitter: Option<String>,
    /// latency, bandwidth, slicer: which way (default both).
    pub direction: Option<Direction>,
    /// bandwidth: bytes per second, `"1MB/s"` or a number.
    pub bandwidth: Option<Amount>,
    /// slicer: average slice size, `"64B"` or a number of bytes.
    pub size: Option<Amount>,
    /// slicer: slices vary by ± this many bytes (default 0).
    pub size_variation: Option<Amount>,
    /// slicer: pause between slices (default none).
    pub delay: Option<String>,
    /// timeout: how long connections are held before they are closed.
    pub timeout: Option<String>,
    /// rollout: wait between one replica's replacement and the next.
    pub pause: Option<String>,
    /// rollout, blue-green: time an old replica has, out of the gateway's rotation, to
    /// finish what it was sent before it gets SIGTERM.
    pub drain: Option<String>,
}

/// A size or rate written as a number or as text with a unit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Integer(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Integer(n) => write!(f, "{n}"),
            Amount::Float(x) => write!(f, "{x}"),
            Amount::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Kill,
    Terminate,
    Pause,
    Restart,
    Partition,
    Reset,
    Latency,
    Bandwidth,
    Slicer,
    Timeout,
    /// Replaces a service's replicas one at a time.
    Rollout,
    /// Starts a second full set of a service's replicas and switches to it at once.
    #[serde(rename = "blue-green")]
    BlueGreen,
}

/// How long a rollout waits between replicas and an old replica drains, unless told.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(2);

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Terminate => "terminate",
            FaultKind::Pause => "pause",
            FaultKind::Restart => "restart",
            FaultKind::Partition => "partition",
            FaultKind::Reset => "reset",
            FaultKind::Latency => "latency",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::Slicer => "slicer",
            FaultKind::Timeout => "timeout",
            FaultKind::Rollout => "rollout",
            FaultKind::BlueGreen => "blue-green",
        }
    }

    /// Acts on a process (the others act on a proxy).
    pub fn is_process(self) -> bool {
        matches!(
            self,
            FaultKind::Kill | FaultKind::Terminate | FaultKind::Pause | FaultKind::Restart
        )
    }

    /// Replaces a service's replicas (acts on a deployable service).
    pub fn is_deployment(self) -> bool {
        matches!(self, FaultKind::Rollout | FaultKind::BlueGreen)
    }

    /// Happens at one instant, or lasts as long as its work: a `duration` means nothing.
    pub fn is_instant(self) -> bool {
        matches!(
            self,
            FaultKind::Kill
                | FaultKind::Terminate
                | FaultKind::Restart
                | FaultKind::Rollout
                | FaultKind::BlueGreen
        )
    }

    /// The kind-specific fields it takes.
    fn fields(self) -> &'static [&'static str] {
        match self {
            FaultKind::Latency => &["latency", "jitter", "direction"],
            FaultKind::Bandwidth => &["bandwidth", "direction"],
            FaultKind::Slicer => &["size", "size_variation", "delay", "direction"],
            FaultKind::Timeout => &["timeout"],
            FaultKind::Rollout => &["pause", "drain"],
            FaultKind::BlueGreen => &["drain"],
            _ => &[],
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// 1-based position in the scenario's `[[faults]]`.
    pub number: usize,
    /// Offset from the start of load.
    pub at: Duration,
    /// `None`: instantaneous (kill, terminate, restart, reset without duration), or
    /// lasting until the run ends.
    pub duration: Option<Duration>,
    pub target: String,
    pub action: FaultAction,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultAction {
    Kill,
    Terminate,
    /// SIGSTOP, and SIGCONT when the fault ends.
    Pause,
    Restart,
    /// Traffic through the proxy is held both ways.
    Partition,
    /// Current connections are reset; with a duration, new ones are reset meanwhile.
    Reset,
    Latency {
        direction: Direction,
        latency: Latency,
    },
    Bandwidth {
        direction: Direction,
        bytes_per_second: u64,
    },
    Slicer {
        direction: Direction,
        slicer: Slicer,
    },
    Timeout {
        timeout: Duration,
    },
    Rollout {
        pause: Duration,
        drain: Duration,
    },
    BlueGreen {
        drain: Duration,
    },
}

impl FaultAction {
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultAction::Kill => FaultKind::Kill,
            FaultAction::Terminate => FaultKind::Terminate,
            FaultAction::Pause => FaultKind::Pause,
            FaultAction::Restart => FaultKind::Restart,
            FaultAction::Partition => FaultKind::Partition,
            FaultAction::Reset => FaultKind::Reset,
            FaultAction::Latency { .. } => FaultKind::Latency,
            FaultAction::Bandwidth { .. } => FaultKind::Bandwidth,
            FaultAction::Slicer { .. } => FaultKind::Slicer,
            FaultAction::Timeout { .. } => FaultKind::Timeout,
            FaultAction::Rollout { .. } => FaultKind::Rollout,
            FaultAction::BlueGreen { .. } => FaultKind::BlueGreen,
        }
    }

    /// The direction of a link fault; `Both` for the others (they act on both ways).
    pub fn direction(&self) -> Direction {
        match self {
            FaultAction::Latency { direction, .. }
            | FaultAction::Bandwidth { direction, .. }
            | FaultAction::Slicer { direction, .. } => *direction,
            _ => Direction::Both,
        }
    }
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        self.action.kind()
    }

    /// When the fault ends, as an offset; `None` if it is instantaneous or open-ended.
    pub fn end(&self) -> Option<Duration> {
        self.duration.map(|d| self.at + d)
    }

    /// Shown on charts and the progress line, e.g. `latency 200ms±50ms kafka`,
    /// `bandwidth 1MB/s upstream postgres`, `kill orders-1`.
    pub fn label(&self) -> String {
        let kind = self.kind().name();
        let target = &self.target;
        let way = match self.action.direction() {
            Direction::Both => String::new(),
            one => format!("{} ", one.name()),
        };
        match self.action {
            FaultAction::Latency { latency, .. } => {
                let jitter = if latency.jitter.is_zero() {
                    String::new()
                } else {
                    format!("±{}", format_duration(latency.jitter))
                };
                format!(
                    "{kind} {}{jitter} {way}{target}",
                    format_duration(latency.delay)
                )
            }
            FaultAction::Bandwidth {
                bytes_per_second, ..
            } => format!("{kind} {} {way}{target}", format_rate(bytes_per_second)),
            FaultAction::Slicer { slicer, .. } => {
                let variation = if slicer.size_variation == 0 {
                    String::new()
                } else {
                    format!("±{}", format_bytes(slicer.size_variation as u64))
                };
                format!(
                    "{kind} {}{variation}/{} {way}{target}",
                    format_bytes(slicer.size as u64),
                    format_duration(slicer.delay)
                )
            }
            FaultAction::Timeout { timeout } => {
                format!("{kind} {} {target}", format_duration(timeout))
            }
            _ => format!("{kind} {target}"),
        }
    }
}

/// A scenario's faults that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("reading [[faults]]: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("fault #{number} ({kind} on {target:?}): {field}: {problem}")]
    Invalid {
        number: usize,
        kind: FaultKind,
        target: String,
        /// The key at fault, e.g. `latency`.
        field: &'static str,
        problem: String,
    },
    #[error(
        "faults #{first} and #{second} ({kind} on {target:?}) overlap in time: the end of \
         one would undo the other; give them separate times or different directions"
    )]
    Overlap {
        first: usize,
        second: usize,
        kind: FaultKind,
        target: String,
    },
}

impl SpecError {
    /// The 1-based number of the (first) fault at fault, when there is one.
    pub fn fault_number(&self) -> Option<usize> {
        match self {
            SpecError::Toml(_) => None,
            SpecError::Invalid { number, .. } => Some(*number),
            SpecError::Overlap { first, .. } => Some(*first),
        }
    }
}

/// Reads the `[[faults]]` of a TOML document (other keys are left to their owners) and
/// validates them.
pub fn parse_faults(toml_text: &str) -> Result<Vec<Fault>, SpecError> {
    #[derive(Deserialize)]
    struct Document {
        #[serde(default)]
        faults: Vec<FaultSpec>,
    }
    let document: Document = toml::from_str(toml_text)?;
    validate(&document.faults)
}

/// Validates every fault, then checks that no two faults of one kind on one target
/// overlap in time (and direction): the first to end would undo the other.
pub fn validate(specs: &[FaultSpec]) -> Result<Vec<Fault>, SpecError> {
    let faults = specs
        .iter()
        .enumerate()
        .map(|(index, spec)| spec.validate(index + 1))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, first) in faults.iter().enumerate() {
        for second in &faults[i + 1..] {
            if conflicts(first, second) {
                return Err(SpecError::Overlap {
                    first: first.number,
                    second: second.number,
                    kind: first.kind(),
                    target: first.target.clone(),
                });
            }
        }
    }
    Ok(faults)
}

/// Two faults conflict when both hold state on one target that the end of either
/// would clear: same kind, overlapping time, overlapping direction. Instantaneous
/// faults hold nothing (a reset without duration only resets current connections).
fn conflicts(a: &Fault, b: &Fault) -> bool {
    if a.kind() != b.kind() || a.target != b.target || a.kind().is_instant() {
        return false;
    }
    if a.kind() == FaultKind::Reset && (a.duration.is_none() || b.duration.is_none()) {
        return false;
    }
    if !a.action.direction().overlaps(b.action.direction()) {
        return false;
    }
    // Half-open windows [at, end): one may start exactly when the other ends.
    let a_before_b = a.end().is_some_and(|end| end <= b.at);
    let b_before_a = b.end().is_some_and(|end| end <= a.at);
    !(a_before_b || b_before_a)
}

/// Names a field of one fault in errors.
struct FieldError<'a> {
    number: usize,
    kind: FaultKind,
    target: &'a str,
}

impl FieldError<'_> {
    fn at(&self, field: &'static str, problem: String) -> SpecError {
        SpecError::Invalid {
            number: self.number,
            kind: self.kind,
            target: self.target.to_string(),
            field,
            problem,
        }
    }

    /// A duration from an optional field, zero when absent.
    fn duration_or_zero(
        &self,
        field: &'static str,
        value: &Option<String>,
    ) -> Result<Duration, SpecError> {
        match value {
            Some(text) => parse_duration(text).map_err(|e| self.at(field, e)),
            None => Ok(Duration::ZERO),
        }
    }

    /// A duration field with a default when absent.
    fn duration_or(
        &self,
        value: &Option<String>,
        field: &'static str,
        default: Duration,
    ) -> Result<Duration, SpecError> {
        match value {
            Some(text) => parse_duration(text).map_err(|e| self.at(field, e)),
            None => Ok(default),
        }
    }

    /// A field this kind needs, or an error with an example.
    fn required<'v, T>(
        &self,
        field: &'static str,
        value: &'v Option<T>,
        example: &str,
    ) -> Result<&'v T, SpecError> {
        value.as_ref().ok_or_else(|| {
            self.at(
                field,
                format!(
                    "is missing: a {} fault needs e.g. {field} = {example}",
                    self.kind
                ),
            )
        })
    }
}

impl FaultSpec {
    /// Validates this fault, the `number`-th in its file (1-based).
    pub fn validate(&self, number: usize) -> Result<Fault, SpecError> {
        let fail = FieldError {
            number,
            kind: self.kind,
            target: &self.target,
        };
        if self.target.trim().is_empty() {
            return Err(fail.at("target", "is empty; name a proxy or a process".into()));
        }
        self.check_fields(&fail)?;
        let at = parse_duration(&self.at).map_err(|e| fail.at("at", e))?;
        let duration = self.duration(&fail)?;
        Ok(Fault {
            number,
            at,
            duration,
            target: self.target.clone(),
            action: self.action(&fail)?,
        })
    }

    /// Fields of other kinds are mistakes (a `latency` on a bandwidth fault would be
    /// silently ignored otherwise).
    fn check_fields(&self, fail: &FieldError<'_>) -> Result<(), SpecError> {
        let kind = self.kind;
        let given: [(&'static str, bool); 10] = [
            ("latency", self.latency.is_some()),
            ("jitter", self.jitter.is_some()),
            ("direction", self.direction.is_some()),
            ("bandwidth", self.bandwidth.is_some()),
            ("size", self.size.is_some()),
            ("size_variation", self.size_variation.is_some()),
            ("delay", self.delay.is_some()),
            ("timeout", self.timeout.is_some()),
            ("pause", self.pause.is_some()),
            ("drain", self.drain.is_some()),
        ];
        for (field, present) in given {
            if present && !kind.fields().contains(&field) {
                let takes = match kind.fields() {
                    [] => "no other fields".to_string(),
                    fields => fields.join(", "),
                };
                return Err(fail.at(
                    field,
                    format!("does not apply to a {kind} fault (it takes {takes})"),
                ));
            }
        }
        Ok(())
    }

    fn duration(&self, fail: &FieldError<'_>) -> Result<Option<Duration>, SpecError> {
        let kind = self.kind;
        match &self.duration {
            Some(_) if kind.is_instant() => Err(fail.at(
                "duration",
                if kind.is_deployment() {
                    format!("a {kind} fault lasts until every replica is replaced and takes no duration")
                } else {
                    format!("a {kind} fault is instantaneous and takes no duration")
                },
            )),
            Some(text) => {
                let duration = parse_duration(text).map_err(|e| fail.at("duration", e))?;
                if duration.is_zero() {
                    return Err(fail.at("duration", "must be longer than zero".into()));
                }
                Ok(Some(duration))
            }
            None => Ok(None),
        }
    }

    fn action(&self, fail: &FieldError<'_>) -> Result<FaultAction, SpecError> {
        let direction = self.direction.unwrap_or_default();
        Ok(match self.kind {
            FaultKind::Kill => FaultAction::Kill,
            FaultKind::Terminate => FaultAction::Terminate,
            FaultKind::Pause => FaultAction::Pause,
            FaultKind::Restart => FaultAction::Restart,
            FaultKind::Partition => FaultAction::Partition,
            FaultKind::Reset => FaultAction::Reset,
            FaultKind::Latency => {
                let text = fail.required("latency", &self.latency, "\"200ms\"")?;
                let delay = parse_duration(text).map_err(|e| fail.at("latency", e))?;
                let jitter = fail.duration_or_zero("jitter", &self.jitter)?;
                if delay.is_zero() && jitter.is_zero() {
                    return Err(fail.at("latency", "must be longer than zero".into()));
                }
                FaultAction::Latency {
                    direction,
                    latency: Latency { delay, jitter },
                }
            }
            FaultKind::Bandwidth => {
                let amount = fail.required("bandwidth", &self.bandwidth, "\"1MB/s\"")?;
                FaultAction::Bandwidth {
                    direction,
                    bytes_per_second: amount_value(amount, parse_byte_rate)
                        .map_err(|e| fail.at("bandwidth", e))?,
                }
            }
            FaultKind::Slicer => FaultAction::Slicer {
                direction,
                slicer: self.slicer(fail)?,
            },
            FaultKind::Timeout => {
                let text = fail.required("timeout", &self.timeout, "\"2s\"")?;
                let timeout = parse_duration(text).map_err(|e| fail.at("timeout", e))?;
                if timeout.is_zero() {
                    return Err(fail.at("timeout", "must be longer than zero".into()));
                }
                FaultAction::Timeout { timeout }
            }
            FaultKind::Rollout => FaultAction::Rollout {
                pause: fail.duration_or(&self.pause, "pause", DEFAULT_PAUSE)?,
                drain: fail.duration_or(&self.drain, "drain", DEFAULT_DRAIN)?,
            },
            FaultKind::BlueGreen => FaultAction::BlueGreen {
                drain: fail.duration_or(&self.drain, "drain", DEFAULT_DRAIN)?,
            },
        })
    }

    fn slicer(&self, fail: &FieldError<'_>) -> Result<Slicer, SpecError> {
        let size = fail.required("size", &self.size, "\"64B\"")?;
        let size = amount_value(size, parse_bytes).map_err(|e| fail.at("size", e))?;
        let size_variation = match &self.size_variation {
            // Zero variation is the natural "no variation".
            Some(Amount::Integer(0)) | None => 0,
            Some(amount) => {
                amount_value(amount, parse_bytes).map_err(|e| fail.at("size_variation", e))?
            }
        };
        if size_variation >= size {
            return Err(fail.at(
                "size_variation",
                format!("must be smaller than size ({size} bytes)"),
            ));
        }
        let too_big = |field| fail.at(field, "is too large".into());
        Ok(Slicer {
            size: usize::try_from(size).map_err(|_| too_big("size"))?,
            size_variation: usize::try_from(size_variation)
                .map_err(|_| too_big("size_variation"))?,
            delay: fail.duration_or_zero("delay", &self.delay)?,
        })
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    quantity::parse_duration(text).map_err(|e| e.to_string())
}

/// A size or rate from a number (bytes) or text with a unit.
fn amount_value(
    amount: &Amount,
    parse: fn(&str) -> Result<u64, QuantityError>,
) -> Result<u64, String> {
    match amount {
        Amount::Integer(n) if *n > 0 => Ok(n.unsigned_abs()),
        Amount::Integer(n) => Err(format!("{n}: must be greater than zero")),
        Amount::Float(x) => parse(&x.to_string()).map_err(|e| e.to_string()),
        Amount::Text(text) => parse(text).map_err(|e| e.to_string()),
    }
}
