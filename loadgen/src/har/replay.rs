//! The timing of a recording, for `--har-replay ordered`: when each kept entry started
//! and how long it took, turned into the think time before each step of the replay.
//!
//! The think time before an entry is the gap from the end of the entry kept before it
//! (its `startedDateTime` plus its `time`) to this entry's start: the time the user
//! spent reading or typing, not the server's, which a replay spends itself. A browser
//! sends many requests at once; those overlap, and their gap is zero. An entry without
//! times (HAR 1.2 requires them, some tools leave them out) has no think time.

use std::time::{Duration, SystemTime};

/// One step of an ordered replay: a request (an index into the requests) and how long
/// a virtual user waits before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStep {
    pub request: usize,
    pub think: Duration,
}

/// An entry's recorded times, in Unix milliseconds and milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Recorded {
    started_ms: Option<f64>,
    time_ms: Option<f64>,
}

impl Recorded {
    /// An entry's `startedDateTime` and `time`; `Err` says what is wrong with them.
    pub(super) fn of(started: Option<&str>, time: Option<f64>) -> Result<Recorded, String> {
        let started_ms = started.map(unix_ms).transpose()?;
        Ok(Recorded {
            started_ms,
            // -1 is HAR's "not known"; a time cannot be negative otherwise.
            time_ms: time.filter(|t| t.is_finite() && *t >= 0.0),
        })
    }
}

/// The end of the last kept entry, as the think times are measured from it.
#[derive(Debug, Default)]
pub(super) struct Timings {
    last_end_ms: Option<f64>,
}

impl Timings {
    /// The step of a kept entry that is request `request`, recorded at `recorded`.
    pub(super) fn step(&mut self, request: usize, recorded: Recorded) -> ReplayStep {
        let gap_ms = match (self.last_end_ms, recorded.started_ms) {
            (Some(end), Some(start)) => (start - end).max(0.0),
            _ => 0.0,
        };
        if let Some(start) = recorded.started_ms {
            let end = start + recorded.time_ms.unwrap_or(0.0);
            // Overlapping entries: the user's pause starts when the last of them ends.
            self.last_end_ms = Some(self.last_end_ms.map_or(end, |last| last.max(end)));
        }
        ReplayStep {
            request,
            think: Duration::from_secs_f64(gap_ms / 1000.0),
        }
    }
}

/// An ISO 8601 time with its offset (`2024-01-12T12:58:45.717Z`,
/// `2024-01-12T13:58:45.717+01:00`) as Unix milliseconds.
fn unix_ms(text: &str) -> Result<f64, String> {
    let bad = |why: &str| format!("startedDateTime {text:?} is not an ISO 8601 time ({why})");
    let (local, offset_minutes) = match text.strip_suffix(['Z', 'z']) {
        Some(local) => (local, 0),
        None => {
            let time_at = text.find('T').ok_or_else(|| bad("no T before the time"))?;
            let sign_at = text[time_at..]
                .rfind(['+', '-'])
                .map(|at| time_at + at)
                .ok_or_else(|| bad("no Z or UTC offset"))?;
            let (local, offset) = text.split_at(sign_at);
            let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
            let (hours, minutes) = match (digits.len(), digits.get(..2), digits.get(2..)) {
                (4, Some(h), Some(m)) => (h.parse::<i64>(), m.parse::<i64>()),
                _ => return Err(bad("the offset is not ±HH:MM")),
            };
            let (Ok(hours), Ok(minutes)) = (hours, minutes) else {
                return Err(bad("the offset is not ±HH:MM"));
            };
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            (local, sign * (hours * 60 + minutes))
        }
    };
    let utc =
        humantime::parse_rfc3339_weak(&format!("{local}Z")).map_err(|e| bad(&e.to_string()))?;
    let since_epoch = utc
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| bad("before 1970"))?;
    Ok(since_epoch.as_secs_f64() * 1000.0 - (offset_minutes * 60_000) as f64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn times_with_z_and_with_an_offset_are_the_same_instant() {
        let utc = unix_ms("2024-01-12T12:58:45.717Z").unwrap();
        assert_eq!(unix_ms("2024-01-12T13:58:45.717+01:00").unwrap(), utc);
        assert_eq!(unix_ms("2024-01-12T07:28:45.717-0530").unwrap(), utc);
        assert_eq!(unix_ms("2024-01-12T12:58:46Z").unwrap() - utc, 283.0);
        for bad in [
            "yesterday",
            "2024-01-12T12:58:45",
            "2024-01-12T12:58:45+1",
            "2024-13-12T00:00:00Z",
        ] {
            let error = unix_ms(bad).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn think_times_are_the_gaps_after_the_last_response_ended() {
        let at = |ms: u64, time: f64| Recorded {
            started_ms: Some(ms as f64),
            time_ms: Some(time),
        };
        let mut timings = Timings::default();
        let steps: Vec<u128> = [
            at(1_000, 100.0), // the page
            at(1_050, 300.0), // overlaps it: no pause, and it ends last, at 1,350
            at(1_200, 50.0),  // overlaps both
            at(3_350, 10.0),  // two seconds after the last response ended
            Recorded::of(None, None).unwrap(),
            at(3_400, 0.0),
        ]
        .into_iter()
        .enumerate()
        .map(|(request, recorded)| timings.step(request, recorded).think.as_millis())
        .collect();
        assert_eq!(steps, [0, 0, 0, 2_000, 0, 40]);
    }
}
