//! `faultline load --har FILE --har-replay ordered`: each connection a virtual user
//! replaying the recording in order with its think times, each entry to the host it was
//! recorded at. Two nginx servers (module `nginx`) stand for a site's `www.` and `api.`,
//! and their access logs, not our counters, say what arrived where and when.

use std::path::PathBuf;

use faultline_loadgen::{cli::run_load, LoadError};
use faultline_results::{Results, RunInfo};

use crate::{cli::load_args, nginx::Nginx, tls::Pki};

/// A recording of four entries over two hosts: the page on `www`, an API call on `api`
/// 50 ms after the page's response, a POST on `www` whose body holds `{{` after 400 ms
/// of thinking, and another API call at once.
fn recording(www: &Nginx, api: &Nginx) -> String {
    let entry = |url: String, method: &str, started: &str, time: u32, body: Option<&str>| {
        let post = body.map_or(String::new(), |text| {
            format!(r#", "postData": {{"mimeType": "application/json", "text": {text:?}}}"#)
        });
        format!(
            r#"{{"startedDateTime": "2026-12-01T10:00:{started}Z", "time": {time},
                 "request": {{"method": "{method}", "url": "{url}", "headers": []{post}}}}}"#
        )
    };
    let entries = [
        entry(www.url("/page"), "GET", "00.000", 100, None),
        entry(api.url("/api/items"), "GET", "00.150", 50, None),
        entry(
            www.url("/api/cart"),
            "POST",
            "00.600",
            20,
            Some(r#"{"note": "{{not a placeholder}}"}"#),
        ),
        entry(api.url("/api/items?page=2"), "GET", "00.620", 10, None),
    ];
    format!(r#"{{"log": {{"entries": [{}]}}}}"#, entries.join(",\n"))
}

/// The two hosts of a site, and its recording written with their addresses.
struct Site {
    pki: Pki,
    www: Nginx,
    api: Nginx,
    har: PathBuf,
}

impl Site {
    fn start(name: &str) -> Site {
        let pki = Pki::new(name);
        let www = Nginx::start(&pki, &format!("{name}-www"), false);
        let api = Nginx::start(&pki, &format!("{name}-api"), false);
        let har = pki.file("replay.har", &recording(&www, &api));
        Site { pki, www, api, har }
    }

    /// `faultline load --har … --har-replay ordered` with `argv` added.
    async fn replay(&self, argv: &[&str]) -> Result<Results, LoadError> {
        let har = self.har.display().to_string();
        let ca = self.pki.ca_file().display().to_string();
        let mut all = vec![
            "--har",
            &har,
            "--har-replay",
            "ordered",
            "--cacert",
            &ca,
            "-q",
        ];
        all.extend(argv);
        run_load(load_args(&all), RunInfo::default()).await
    }

    /// A replay that must pass without an error.
    async fn replayed(&self, argv: &[&str]) -> Results {
        let results = self.replay(argv).await.unwrap();
        let errors = &results.totals.errors;
        assert_eq!(errors.total(), 0, "{errors:?}");
        results
    }
}

/// `METHOD path` of every request `nginx` served, in order.
fn requests(nginx: &Nginx) -> Vec<String> {
    nginx.timed().into_iter().map(|(_, r)| r).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_replay_sends_each_entry_to_its_own_host_in_order_after_its_think_time() {
    let site = Site::start("har-replay");
    let results = site
        .replayed(&["--closed", "--duration", "2s", "-c", "1"])
        .await;

    // Each host got its own entries only, in recorded order, pass after pass.
    let (www_log, api_log) = (requests(&site.www), requests(&site.api));
    let passes = www_log.len() / 2;
    assert!(passes >= 1, "at least one whole pass: {www_log:?}");
    for (index, request) in www_log.iter().enumerate() {
        let expected = ["GET /page", "POST /api/cart"][index % 2];
        assert_eq!(request, expected, "www, request {index}: {www_log:?}");
    }
    for (index, request) in api_log.iter().enumerate() {
        let expected = ["GET /api/items", "GET /api/items?page=2"][index % 2];
        assert_eq!(request, expected, "api, request {index}: {api_log:?}");
    }
    // Results keep each request under its own name and host.
    let names: Vec<&str> = results.endpoints.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let cart = |name: &&str| name.starts_with("POST /api/cart @ 127.0.0.1:");
    assert!(names.iter().any(cart), "{names:?}");

    // The cart is sent at least the recorded 50 + 400 ms of thinking after the page
    // ended (a sleep is never shorter; nginx's times are to the millisecond).
    let www_times = site.www.timed();
    for pair in www_times.chunks_exact(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= 449, "page to cart in {gap} ms: {www_times:?}");
    }
    // So one user cannot make more than 2 s / 450 ms passes.
    assert!(passes <= 5, "{passes} passes in 2 s: {www_log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn think_times_scale_with_the_factor_and_an_ordered_replay_needs_the_closed_model() {
    let site = Site::start("har-replay-factor");
    // Ten times the thinking: the API call 500 ms after the page, the cart 4 s after the
    // API call, which is past the run's end, so the user stops there. (2 s of margin on
    // each side: a busy machine may answer the page late.)
    let factor = ["--har-think-factor", "10"];
    site.replayed(&[&["--closed", "--duration", "2.5s", "-c", "1"][..], &factor].concat())
        .await;
    assert_eq!(requests(&site.www), ["GET /page"]);
    assert_eq!(requests(&site.api), ["GET /api/items"]);

    for (argv, expected) in [
        (&["--rate", "10", "--duration", "1s"][..], "--closed"),
        (
            &["--closed", "--har-think-factor", "-1"][..],
            "--har-think-factor",
        ),
    ] {
        let error = site.replay(argv).await.unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
        assert_eq!(error.exit_code(), 2, "{error}");
    }
}
