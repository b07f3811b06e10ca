//! The proxy's control API: faults added over HTTP act on the traffic at once, timed ones
//! heal themselves (unless changed since), and bad requests are 400s that name the field.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faultline_chaos::{control, FaultProxy};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::{echo_server, round_trip, within};

/// One HTTP/1.1 request with `Connection: close`; the status and the body.
async fn call(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(api).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {api}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within(
        "the control API's answer",
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn faults(api: SocketAddr) -> Value {
    let (status, body) = call(api, "GET", "/faults", "").await;
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).unwrap();
    state["faults"].clone()
}

async fn started() -> (FaultProxy, SocketAddr, CancellationToken) {
    let upstream = echo_server().await;
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let api = control::serve("127.0.0.1:0".parse().unwrap(), proxy.handle(), stop.clone())
        .await
        .unwrap();
    (proxy, api, stop)
}

#[tokio::test]
async fn a_latency_added_over_http_delays_traffic_until_it_is_healed() {
    let (proxy, api, stop) = started().await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut client, b"warm").await;

    let (status, body) = call(
        api,
        "POST",
        "/faults",
        r#"{"kind": "latency", "latency": "150ms", "direction": "upstream"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let state = faults(api).await;
    assert_eq!(state["upstream"]["latency"], "150ms", "{state}");
    assert!(state["downstream"]["latency"].is_null(), "{state}");

    let sent = Instant::now();
    within("a delayed round trip", round_trip(&mut client, b"slow")).await;
    assert!(
        sent.elapsed() >= Duration::from_millis(150),
        "the round trip took {:?}",
        sent.elapsed()
    );

    let (status, _) = call(api, "DELETE", "/faults/latency", "").await;
    assert_eq!(status, 200);
    assert!(faults(api).await["upstream"]["latency"].is_null());
    stop.cancel();
}

#[tokio::test]
async fn a_timed_fault_heals_itself_unless_the_kind_changed_since() {
    let (_proxy, api, stop) = started().await;
    let (status, body) = call(
        api,
        "POST",
        "/faults",
        r#"{"kind": "partition", "duration": "200ms"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(faults(api).await["partition"], true);
    within("the timed heal", async {
        while faults(api).await["partition"] == true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A timed partition replaced by an open-ended one: the first one's heal is stale.
    call(
        api,
        "POST",
        "/faults",
        r#"{"kind": "partition", "duration": "200ms"}"#,
    )
    .await;
    call(api, "POST", "/faults", r#"{"kind": "partition"}"#).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        faults(api).await["partition"],
        true,
        "a stale heal ended it"
    );

    call(
        api,
        "POST",
        "/faults",
        r#"{"kind": "timeout", "timeout": "5s"}"#,
    )
    .await;
    let (status, body) = call(api, "DELETE", "/faults", "").await;
    assert_eq!(status, 200, "{body}");
    let state = faults(api).await;
    assert_eq!(state["partition"], false, "{state}");
    assert!(state["timeout"].is_null(), "{state}");
    stop.cancel();
}

#[tokio::test]
async fn bad_requests_are_400s_naming_the_problem() {
    let (_proxy, api, stop) = started().await;
    for (body, expected) in [
        ("latency please", "not JSON"),
        ("[1]", "JSON object"),
        (r#"{"kind": "kill"}"#, "process fault"),
        (r#"{"kind": "latency"}"#, "latency"),
        (r#"{"kind": "partition", "bogus": 1}"#, "bogus"),
        (r#"{"kind": "partition", "at": "1s"}"#, "at:"),
        (r#"{"kind": "bandwidth", "bandwidth": 0}"#, "bandwidth"),
    ] {
        let (status, text) = call(api, "POST", "/faults", body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(
            text.contains(expected),
            "{body}: expected {expected:?} in {text:?}"
        );
    }
    let (status, text) = call(api, "DELETE", "/faults/nope", "").await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("latency"), "{text}");
    assert_eq!(faults(api).await["partition"], false, "nothing was applied");
    stop.cancel();
}
