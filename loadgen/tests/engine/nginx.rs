//! The load engine against a real nginx (`/usr/sbin/nginx`, or `$NGINX`) started by
//! the test, where the hyper and rustls servers of the other modules could only agree
//! with our own client: nginx's OpenSSL judges our TLS, and nginx's access log, not our
//! counters, says what was sent.
//!
//! [`Nginx::start`] writes a config into a temporary directory (certificate and key
//! from the test's [`Pki`], every temp and log path inside the directory), runs nginx
//! in the foreground as one process on a free loopback port, and stops it and removes
//! the directory when dropped. Each test starts its own, so they run in parallel.

use std::{
    collections::BTreeMap,
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use faultline_loadgen::{
    cli::run_load, engine, LoadConfig, LoadError, RequestSpec, Schedule, Target,
};
use faultline_results::{Arrivals, Results, RunInfo};
use http::Method;

use crate::{cli::load_args, tls::Pki};

/// nginx serving HTTPS with a certificate of the test's CA; stopped when dropped.
pub(crate) struct Nginx {
    process: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The access log's lines: method, path and query, status; and the timed log's: when
/// the request ended (Unix seconds, to the millisecond), method, path and query.
const LOG_FORMATS: &str = "log_format counted '$request_method $request_uri $status';
                           log_format timed '$msec $request_method $request_uri';";

impl Nginx {
    /// nginx on 127.0.0.1 with a certificate for 127.0.0.1 signed by `pki`'s CA,
    /// answering 200 to everything; with `mtls`, asking for a client certificate
    /// signed by the same CA (`ssl_verify_client on`).
    pub(crate) fn start(pki: &Pki, name: &str, mtls: bool) -> Nginx {
        let binary = std::env::var("NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into());
        assert!(
            std::path::Path::new(&binary).exists(),
            "{binary} not found: scripts/setup installs nginx (or set NGINX)"
        );
        let dir =
            std::env::temp_dir().join(format!("faultline-nginx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let leaf = pki.sign(&["127.0.0.1"]);
        let cert = pki.file(&format!("{name}-server.pem"), &leaf.cert);
        let key = pki.file(&format!("{name}-server-key.pem"), &leaf.key);
        let client_ca = if mtls {
            format!(
                "ssl_client_certificate {}; ssl_verify_client on;",
                pki.ca_file().display()
            )
        } else {
            String::new()
        };
        // A port that was free a moment ago can be taken before nginx binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            let d = dir.display();
            let config = format!(
                "daemon off; master_process off; worker_processes 1;
                 pid {d}/nginx.pid; error_log {d}/error.log warn;
                 events {{ worker_connections 1024; }}
                 http {{
                     {LOG_FORMATS}
                     access_log {d}/access.log counted;
                     access_log {d}/timed.log timed;
                     client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
                     fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi;
                     scgi_temp_path {d}/scgi;
                     keepalive_requests 100000;
                     server {{
                         listen 127.0.0.1:{port} ssl http2;
                         ssl_certificate {cert}; ssl_certificate_key {key};
                         ssl_protocols TLSv1.2 TLSv1.3;
                         {client_ca}
                         location / {{ return 200 \"ok\"; }}
                     }}
                 }}",
                cert = cert.display(),
                key = key.display(),
            );
            std::fs::write(dir.join("nginx.conf"), config).unwrap();
            let mut process = Command::new(&binary)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            for _ in 0..100 {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx { process, dir, port };
                }
                if process.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = process.kill();
            let _ = process.wait();
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        panic!("nginx did not start: {log}");
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// How often each `METHOD /path status` line is in the access log.
    pub(crate) fn counted(&self) -> BTreeMap<String, u64> {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in log.lines() {
            *counts.entry(line.to_string()).or_default() += 1;
        }
        counts
    }

    fn total(&self) -> u64 {
        self.counted().values().sum()
    }

    /// Each request in the order nginx finished them: when (Unix milliseconds) and
    /// `METHOD path`.
    pub(crate) fn timed(&self) -> Vec<(u64, String)> {
        let log = std::fs::read_to_string(self.dir.join("timed.log")).unwrap_or_default();
        log.lines()
            .map(|line| {
                let (msec, request) = line.split_once(' ').unwrap();
                let (seconds, millis) = msec.split_once('.').unwrap();
                let at = seconds.parse::<u64>().unwrap() * 1000 + millis.parse::<u64>().unwrap();
                (at, request.to_string())
            })
            .collect()
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `faultline load` run from its command line, with `args` after the URL.
async fn load(url: &str, args: &[&str]) -> Result<Results, LoadError> {
    let argv: Vec<&str> = [url, "-q"].iter().chain(args).copied().collect();
    run_load(load_args(&argv), RunInfo::default()).await
}

/// `rate` a second for `duration` against `nginx`, trusting `pki`, in which no arrival
/// is dropped however busy the machine is (the counts must be whole).
fn config(nginx: &Nginx, pki: &Pki, rate: f64, duration: Duration) -> LoadConfig {
    let schedule = Schedule::constant(rate, duration, Arrivals::Uniform).unwrap();
    let mut config = LoadConfig::new(Target::parse(&nginx.url("/")).unwrap(), schedule);
    config.connections = 8;
    config.max_send_delay = Some(Duration::from_secs(30));
    config.timeout = Duration::from_secs(30);
    config.tls.cacert = Some(pki.ca_file());
    config
}

fn get(nginx: &Nginx, path: &str) -> RequestSpec {
    let target = Target::parse(&nginx.url(path)).unwrap();
    RequestSpec::for_target(&target, Method::GET, Default::default(), Bytes::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_over_https_is_refused_without_its_ca_naming_the_unknown_ca_and_passes_with_cacert() {
    let pki = Pki::new("nginx-cacert");
    let nginx = Nginx::start(&pki, "cacert", false);
    let url = nginx.url("/");

    let refused = load(&url, &["--rate", "100", "--duration", "1s"])
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LoadError::TlsHandshake { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("unknown CA"), "{refused}");
    assert_eq!(refused.exit_code(), 2);
    assert_eq!(nginx.total(), 0, "nothing reached nginx");

    let ca = pki.ca_file().display().to_string();
    let passed = load(
        &url,
        &[
            "--cacert",
            &ca,
            "--rate",
            "100",
            "--duration",
            "1s",
            "-c",
            "2",
        ],
    )
    .await
    .unwrap();
    assert_eq!(passed.totals.ok, 100, "{:?}", passed.totals.errors);
    assert_eq!(nginx.counted().get("GET / 200"), Some(&100));
    let tls = passed.tls.expect("an https run records its handshakes");
    assert_eq!(tls.handshakes, 2, "one per connection: {tls:?}");
}

/// nginx never fails the handshake for a missing client certificate: its OpenSSL
/// verify callback accepts, and nginx answers the request 400 ("No required SSL
/// certificate was sent"). So against nginx the refusal counts as 4xx, not `tls`
/// (the rustls server of module `tls` refuses in the handshake, and is counted `tls`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_with_mtls_answers_400_without_a_client_certificate_and_200_with_one() {
    let pki = Pki::new("nginx-mtls");
    let nginx = Nginx::start(&pki, "mtls", true);
    let url = nginx.url("/");
    let ca = pki.ca_file().display().to_string();
    let run = [
        "--cacert",
        &ca,
        "--rate",
        "50",
        "--duration",
        "1s",
        "-c",
        "2",
    ];

    let refused = load(&url, &run).await.unwrap();
    assert_eq!(refused.totals.ok, 0, "{:?}", refused.totals.errors);
    assert_eq!(
        refused.totals.errors.http_4xx, 50,
        "{:?}",
        refused.totals.errors
    );
    assert_eq!(refused.totals.errors.tls, 0, "the handshake itself passed");
    assert_eq!(nginx.counted().get("GET / 400"), Some(&50));

    let client = pki.sign(&["faultline-client"]);
    let cert = pki
        .file("nginx-client.pem", &client.cert)
        .display()
        .to_string();
    let key = pki
        .file("nginx-client-key.pem", &client.key)
        .display()
        .to_string();
    let with_certificate: Vec<&str> = run
        .iter()
        .copied()
        .chain(["--cert", &cert, "--key", &key])
        .collect();
    let accepted = load(&url, &with_certificate).await.unwrap();
    assert_eq!(accepted.totals.ok, 50, "{:?}", accepted.totals.errors);
    assert_eq!(nginx.counted().get("GET / 200"), Some(&50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randint_in_the_path_reaches_all_hundred_values_in_nginxs_access_log() {
    let pki = Pki::new("nginx-randint");
    let nginx = Nginx::start(&pki, "randint", false);
    let mut config = config(&nginx, &pki, 5000.0, Duration::from_secs(2));
    config.requests = vec![get(&nginx, "/n/{{randint 1 100}}")];
    let results = engine::run(config, |_| {}).await.unwrap();

    let counted = nginx.counted();
    assert_eq!(nginx.total(), 10_000, "{:?}", results.generator.message);
    // The band of the hyper-server test (module `templates`), for the same reason:
    // ±50% is ±5 sd of a binomial(10,000, 1/100), and still catches a skewed generator.
    for value in 1..=100 {
        let count = counted
            .get(&format!("GET /n/{value} 200"))
            .copied()
            .unwrap_or(0);
        assert!((50..=150).contains(&count), "/n/{value}: {count} of 10,000");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_to_one_mix_is_three_quarters_and_one_quarter_in_nginxs_access_log() {
    let pki = Pki::new("nginx-mix");
    let nginx = Nginx::start(&pki, "mix", false);
    let mut config = config(&nginx, &pki, 2000.0, Duration::from_secs(2));
    let mut orders = get(&nginx, "/orders");
    orders.method = Method::POST;
    orders.body = Bytes::from_static(b"{}");
    orders.weight = 3;
    config.requests = vec![orders, get(&nginx, "/products")];
    engine::run(config, |_| {}).await.unwrap();

    let counted = nginx.counted();
    let total = nginx.total() as f64;
    assert!(total >= 3900.0, "{total} of 4000 arrived");
    let share = |line: &str| counted.get(line).copied().unwrap_or(0) as f64 / total;
    assert!(
        (share("POST /orders 200") - 0.75).abs() <= 0.02,
        "{counted:?}"
    );
    assert!(
        (share("GET /products 200") - 0.25).abs() <= 0.02,
        "{counted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keepalive_disabled_every_request_to_nginx_makes_its_own_handshake() {
    let pki = Pki::new("nginx-no-keepalive");
    let nginx = Nginx::start(&pki, "no-keepalive", false);
    let ca = pki.ca_file().display().to_string();
    // The temporary directory's path has no space.
    let argv = format!("--cacert {ca} --disable-keepalive --rate 100 --duration 1s -c 2");
    let argv: Vec<&str> = argv.split(' ').collect();
    let results = load(&nginx.url("/"), &argv).await.unwrap();
    assert_eq!(results.totals.ok, 100, "{:?}", results.totals.errors);
    assert_eq!(nginx.counted().get("GET / 200"), Some(&100));
    let tls = results.tls.expect("an https run records its handshakes");
    // One per request (the connections opened before the clock carry the first two).
    assert!(tls.handshakes >= 100, "{tls:?}");
}
