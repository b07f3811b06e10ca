//! The proxy's control API (`faultline proxy --control ADDR`): faults added and healed
//! over HTTP while traffic flows, as with Toxiproxy's API, in the vocabulary of a
//! scenario's `[[faults]]`, so a test or a script can break a link at the moment it
//! chooses.
//!
//! ```text
//! GET    /faults         the faults in force and the proxy's counters
//! POST   /faults         add one: {"kind": "latency", "latency": "100ms", "jitter": "10ms"}
//!                        ("duration": "5s" heals it after that long)
//! DELETE /faults         heal everything
//! DELETE /faults/{kind}  heal one kind: latency, bandwidth, slicer, partition, reset, timeout
//! ```
//!
//! A fault's fields are those of `[[faults]]` without `at` and `target` (it applies now,
//! to this proxy). Bad input is a 400 whose text names the field; a process fault is
//! refused, since a proxy cannot kill anything.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::proxy::{Direction, Faults, LinkFaults, ProxyError, ProxyHandle, ProxyHeal};
use crate::spec::{FaultKind, FaultSpec, SpecError};
use crate::units::{format_duration, format_rate};
use crate::Fault;

/// The kinds a proxy takes.
const PROXY_KINDS: [FaultKind; 6] = [
    FaultKind::Latency,
    FaultKind::Bandwidth,
    FaultKind::Slicer,
    FaultKind::Partition,
    FaultKind::Reset,
    FaultKind::Timeout,
];

#[derive(Clone)]
struct Control {
    proxy: ProxyHandle,
    /// Bumped by every change of a kind, so that a fault's timed heal does not undo a
    /// later change of the same kind.
    generations: Arc<Mutex<HashMap<FaultKind, u64>>>,
}

impl Control {
    fn bump(&self, kind: FaultKind) -> u64 {
        let mut generations = self
            .generations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = generations.entry(kind).or_default();
        *generation += 1;
        *generation
    }

    fn generation(&self, kind: FaultKind) -> u64 {
        self.generations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&kind)
            .copied()
            .unwrap_or_default()
    }
}

/// The control API's routes for `proxy`.
pub fn router(proxy: ProxyHandle) -> Router {
    let control = Control {
        proxy,
        generations: Arc::default(),
    };
    Router::new()
        .route("/faults", get(show).post(add).delete(heal_all))
        .route("/faults/{kind}", delete(heal_kind))
        .with_state(control)
}

/// Serves [`router`] on `listen` until `shutdown` is cancelled; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    proxy: ProxyHandle,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ProxyError> {
    let (listener, bound) = crate::proxy::bind(listen).await?;
    let app = router(proxy);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "the proxy's control API stopped");
        }
    });
    Ok(bound)
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, format!("{}\n", message.into())).into_response()
}

async fn show(State(control): State<Control>) -> Json<Value> {
    Json(state_json(&control.proxy))
}

async fn add(State(control): State<Control>, body: Bytes) -> Response {
    let fault = match fault_of(&body) {
        Ok(fault) => fault,
        Err(message) => return bad_request(message),
    };
    let kind = fault.kind();
    let generation = control.bump(kind);
    let heal = control.proxy.apply(fault.action, fault.duration.is_some());
    if let (Some(heal), Some(duration)) = (heal, fault.duration) {
        tokio::spawn(heal_after(
            control.clone(),
            kind,
            generation,
            heal,
            duration,
        ));
    }
    tracing::info!(fault = %fault.label(), "fault added through the control API");
    Json(state_json(&control.proxy)).into_response()
}

/// The proxy fault a `POST /faults` body asks for, or the 400's text naming the field
/// at fault (kept apart from the handler so that it can be tested on any bytes).
fn fault_of(body: &[u8]) -> Result<Fault, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?;
    let Value::Object(fields) = value else {
        return Err(
            r#"expected a JSON object such as {"kind": "latency", "latency": "100ms"}"#.into(),
        );
    };
    for key in ["at", "target"] {
        if fields.contains_key(key) {
            return Err(format!(
                "{key}: not taken here; the fault applies now, to this proxy (\"duration\" heals it later)"
            ));
        }
    }
    let spec = spec_of(&fields).map_err(|error| match field_at_fault(&fields) {
        Some(field) => format!("{field}: {error}"),
        None => error.to_string(),
    })?;
    let fault = match spec.validate(1) {
        Ok(fault) => fault,
        // Without the scenario's "fault #1 on target" framing: this request is the fault.
        Err(SpecError::Invalid { field, problem, .. }) => {
            return Err(format!("{field}: {problem}"))
        }
        Err(error) => return Err(error.to_string()),
    };
    let kind = fault.kind();
    if kind.is_process() || kind.is_deployment() {
        let what = if kind.is_process() {
            "a process fault"
        } else {
            "a deployment of a service"
        };
        return Err(format!(
            "kind: {} is {what}; a proxy takes {}",
            kind.name(),
            PROXY_KINDS.map(FaultKind::name).join(", ")
        ));
    }
    Ok(fault)
}

/// `fields` as a fault of this proxy, applying now.
fn spec_of(fields: &Map<String, Value>) -> Result<FaultSpec, serde_json::Error> {
    let mut fields = fields.clone();
    fields.insert("at".into(), Value::from("0s"));
    fields.insert("target".into(), Value::from("proxy"));
    serde_json::from_value(Value::Object(fields))
}

/// The field whose value does not read (or that a fault does not have), found by reading
/// each alone, since serde_json names the type it expected but not the field: `kind`
/// first, since every other field is read with a kind that is known to be good.
fn field_at_fault(fields: &Map<String, Value>) -> Option<&str> {
    let alone = |name: &str, value: &Value| {
        let mut one = Map::new();
        one.insert("kind".into(), Value::from("latency"));
        one.insert(name.to_string(), value.clone());
        spec_of(&one).is_err()
    };
    if fields.get("kind").is_some_and(|kind| alone("kind", kind)) {
        return Some("kind");
    }
    fields
        .iter()
        .find(|(name, value)| alone(name, value))
        .map(|(name, _)| name.as_str())
}

async fn heal_after(
    control: Control,
    kind: FaultKind,
    generation: u64,
    heal: ProxyHeal,
    after: Duration,
) {
    tokio::time::sleep(after).await;
    if control.generation(kind) == generation {
        control.proxy.heal(heal);
    }
}

async fn heal_all(State(control): State<Control>) -> Json<Value> {
    for kind in PROXY_KINDS {
        control.bump(kind);
    }
    control.proxy.clear();
    Json(state_json(&control.proxy))
}

async fn heal_kind(State(control): State<Control>, Path(name): Path<String>) -> Response {
    let found = PROXY_KINDS
        .into_iter()
        .find(|k| k.name() == name)
        .and_then(|kind| heal_of(kind).map(|heal| (kind, heal)));
    let Some((kind, heal)) = found else {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "no fault kind {name:?} on a proxy; kinds: {}\n",
                PROXY_KINDS.map(FaultKind::name).join(", ")
            ),
        )
            .into_response();
    };
    control.bump(kind);
    control.proxy.heal(heal);
    Json(state_json(&control.proxy)).into_response()
}

/// What heals every fault of `kind` on a proxy: both directions, and for a reset the
/// refusal of new connections; `None` for a fault on a service.
fn heal_of(kind: FaultKind) -> Option<ProxyHeal> {
    match kind {
        FaultKind::Latency => Some(ProxyHeal::Latency(Direction::Both)),
        FaultKind::Bandwidth => Some(ProxyHeal::Bandwidth(Direction::Both)),
        FaultKind::Slicer => Some(ProxyHeal::Slicer(Direction::Both)),
        FaultKind::Partition => Some(ProxyHeal::Partition),
        FaultKind::Reset => Some(ProxyHeal::RefuseNew),
        FaultKind::Timeout => Some(ProxyHeal::Timeout),
        FaultKind::Kill
        | FaultKind::Terminate
        | FaultKind::Pause
        | FaultKind::Restart
        | FaultKind::Rollout
        | FaultKind::BlueGreen => None,
    }
}

/// The faults in force, in the units a scenario file uses, and the counters.
fn state_json(proxy: &ProxyHandle) -> Value {
    let faults: Faults = proxy.faults();
    let stats = proxy.stats();
    json!({
        "listen": proxy.local_addr().to_string(),
        "upstream": proxy.upstream().to_string(),
        "faults": {
            "upstream": link_json(&faults.upstream),
            "downstream": link_json(&faults.downstream),
            "partition": faults.partition,
            "refuse_new": faults.refuse_new,
            "timeout": faults.timeout.map(format_duration),
        },
        "stats": {
            "connections_accepted": stats.connections_accepted,
            "connections_active": stats.connections_active,
            "connections_reset": stats.connections_reset,
            "connections_timed_out": stats.connections_timed_out,
            "bytes_upstream": stats.bytes_upstream,
            "bytes_downstream": stats.bytes_downstream,
        },
    })
}

fn link_json(link: &LinkFaults) -> Value {
    json!({
        "latency": link.latency.map(|l| format_duration(l.delay)),
        "jitter": link.latency.map(|l| format_duration(l.jitter)),
        "bandwidth": link.bandwidth.map(format_rate),
        "slicer": link.slicer.map(|s| json!({
            "size": s.size,
            "size_variation": s.size_variation,
            "delay": format_duration(s.delay),
        })),
    })
}

#[cfg(test)]
#[path = "control_props.rs"]
mod props;
