//! The load that was asked for, as results record it: open (an arrival rate made of
//! linear [`Stage`]s, with uniform or Poisson [`Arrivals`]) or closed.
//!
//! These are the schedule's data; how a schedule yields send times is the load
//! engine's (`faultline_loadgen::schedule`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One linear piece of an open schedule: the rate goes from `from_rate` to `to_rate`
/// (requests per second) over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    #[serde(with = "secs_f64")]
    #[serde(rename = "duration_secs")]
    pub duration: Duration,
    pub from_rate: f64,
    pub to_rate: f64,
}

impl Stage {
    /// A stage at a constant rate.
    pub fn constant(duration: Duration, rate: f64) -> Stage {
        Stage {
            duration,
            from_rate: rate,
            to_rate: rate,
        }
    }

    /// The number of requests this stage asks for (the area under its rate line).
    pub fn expected_requests(&self) -> f64 {
        (self.from_rate + self.to_rate) / 2.0 * self.duration.as_secs_f64()
    }

    /// The target rate `offset` seconds into the stage.
    pub fn rate_at(&self, offset: f64) -> f64 {
        let length = self.duration.as_secs_f64();
        if length <= 0.0 {
            return self.to_rate;
        }
        self.from_rate + (self.to_rate - self.from_rate) * (offset / length).clamp(0.0, 1.0)
    }
}

/// How requests arrive within a rate: evenly spaced or as a Poisson process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arrivals {
    Uniform,
    /// Exponential gaps with the target mean rate; the seed makes runs repeatable.
    Poisson {
        seed: u64,
    },
}

/// The load that was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSchedule {
    pub model: LoadModel,
    /// Arrival process of an open schedule (`null` for closed).
    pub arrivals: Option<Arrivals>,
    pub duration_secs: f64,
    /// Rate stages of an open schedule (empty for closed).
    pub stages: Vec<Stage>,
}

/// Open (arrival rate) or closed (fixed connections, no pacing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    Open,
    Closed,
}

impl TargetSchedule {
    /// An open schedule of these stages.
    pub fn open(stages: Vec<Stage>, arrivals: Arrivals) -> TargetSchedule {
        TargetSchedule {
            model: LoadModel::Open,
            arrivals: Some(arrivals),
            duration_secs: stages
                .iter()
                .map(|s| s.duration)
                .sum::<Duration>()
                .as_secs_f64(),
            stages,
        }
    }

    /// A closed schedule of this length.
    pub fn closed(duration: Duration) -> TargetSchedule {
        TargetSchedule {
            model: LoadModel::Closed,
            arrivals: None,
            duration_secs: duration.as_secs_f64(),
            stages: Vec::new(),
        }
    }
}

/// Serde helper: a `Duration` as fractional seconds.
pub(crate) mod secs_f64 {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}
