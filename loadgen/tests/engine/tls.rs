//! HTTPS and HTTP/2 multiplexing against a tokio-rustls + hyper server in the test,
//! with a CA and certificates made at test time (rcgen).
//!
//! [`Pki`] is the test's CA, the server certificates it signs and a client
//! certificate; [`TlsServer`] serves them on 127.0.0.1 port 0, optionally requiring
//! a client certificate, and counts the requests in flight on `/slow` (its gauge's
//! maximum is what proves HTTP/2 streams run at once).

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use faultline_loadgen::{engine, LoadConfig, LoadError, Schedule, Target, TlsSettings, TlsVersion};
use faultline_results::{Arrivals, HttpVersion, Results};
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::{
    crypto::aws_lc_rs,
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use crate::support::TestServer;

/// How long `/slow` takes: long enough for every stream to be in flight at once.
const SLOW: Duration = Duration::from_millis(50);

/// A CA made for one test, its PEM file, and what it signs (the nginx tests use it too).
pub(crate) struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

/// A certificate and its key, as PEM.
pub(crate) struct Leaf {
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("faultline-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "faultline test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki {
            dir,
            ca: Issuer::new(params, key),
            ca_pem,
        }
    }

    /// A certificate signed by the CA, valid for `names` (IP addresses or DNS names).
    pub(crate) fn sign(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes `text` to a file of this test's directory and returns its path.
    pub(crate) fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        self.file("ca.pem", &self.ca_pem)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTPS server (HTTP/1.1 and HTTP/2 by ALPN) on 127.0.0.1; stopped when dropped.
struct TlsServer {
    port: u16,
    /// The most requests `/slow` had in flight at once.
    max_in_flight: Arc<AtomicUsize>,
    accept_loop: JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// How the test server speaks TLS.
struct ServerTls<'a> {
    leaf: &'a Leaf,
    /// Require a client certificate signed by this CA.
    client_ca: Option<&'a Pki>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    /// Offer HTTP/2 by ALPN (and HTTP/1.1); otherwise HTTP/1.1 only.
    h2: bool,
}

impl<'a> ServerTls<'a> {
    /// A server certificate and no client certificate asked for.
    fn plain(
        leaf: &'a Leaf,
        versions: &'static [&'static rustls::SupportedProtocolVersion],
    ) -> ServerTls<'a> {
        ServerTls {
            leaf,
            client_ca: None,
            versions,
            h2: true,
        }
    }
}

impl TlsServer {
    async fn start(tls: ServerTls<'_>) -> TlsServer {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(tls.versions)
            .unwrap();
        let builder = match tls.client_ca {
            Some(pki) => {
                let mut roots = RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
                    .unwrap();
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain = vec![CertificateDer::from_pem_slice(tls.leaf.cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(tls.leaf.key.as_bytes()).unwrap();
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if tls.h2 {
            config.alpn_protocols.insert(0, b"h2".to_vec());
        }
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let gauge = (in_flight, max_in_flight.clone());
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let gauge = gauge.clone();
                tokio::spawn(async move {
                    // A refused handshake ends here: the client sees the alert.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request| respond(request, gauge.clone()));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TlsServer {
            port,
            max_in_flight,
            accept_loop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

/// `/slow` answers after [`SLOW`], counting requests in flight; `/close` answers
/// and closes the connection; anything else answers at once.
async fn respond(
    request: Request<Incoming>,
    (in_flight, max): (Arc<AtomicUsize>, Arc<AtomicUsize>),
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
    match request.uri().path() {
        "/slow" => {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(SLOW).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        "/close" => {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, "close".parse().unwrap());
        }
        _ => {}
    }
    Ok(response)
}

/// A CA made for test `name`, and a server with a certificate it signed for `names`.
async fn serving(
    name: &str,
    names: &[&str],
    versions: &'static [&'static rustls::SupportedProtocolVersion],
) -> (Pki, TlsServer) {
    let pki = Pki::new(name);
    let leaf = pki.sign(names);
    let server = TlsServer::start(ServerTls::plain(&leaf, versions)).await;
    (pki, server)
}

const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12_AND_13: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// 100 requests in one second over `connections` connections.
fn config(url: &str, connections: usize, tls: TlsSettings) -> LoadConfig {
    let schedule = Schedule::constant(100.0, Duration::from_secs(1), Arrivals::Uniform).unwrap();
    let mut config = LoadConfig::new(Target::parse(url).unwrap(), schedule);
    config.connections = connections;
    config.tls = tls;
    config
}

fn trusting(pki: &Pki) -> TlsSettings {
    TlsSettings {
        cacert: Some(pki.ca_file()),
        ..TlsSettings::default()
    }
}

async fn run(config: LoadConfig) -> Result<Results, LoadError> {
    engine::run(config, |_| {}).await
}

#[tokio::test]
async fn https_without_a_trusted_ca_fails_before_the_run_naming_the_unknown_ca() {
    let (_pki, server) = serving("unknown-ca", &["127.0.0.1"], TLS12_AND_13).await;
    let err = run(config(&server.url("/"), 2, TlsSettings::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::TlsHandshake { .. }), "{err}");
    assert!(err.to_string().contains("unknown CA"), "{err}");
    assert!(err.to_string().contains(&server.url("/")), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn https_with_the_ca_file_passes_and_counts_one_handshake_per_connection() {
    let (pki, server) = serving("cacert", &["127.0.0.1"], TLS12_AND_13).await;
    let results = run(config(&server.url("/"), 4, trusting(&pki)))
        .await
        .unwrap();
    assert_eq!(results.totals.requests, 100);
    assert_eq!(results.totals.ok, 100, "{:?}", results.totals.errors);
    let tls = results.tls.expect("an https run records its handshakes");
    assert_eq!(tls.handshakes, 4, "one per connection: {tls:?}");
    assert_eq!(tls.handshake_summary.count, 4);
    assert!(tls.failures.is_empty(), "{tls:?}");
}

#[tokio::test]
async fn https_with_insecure_accepts_a_certificate_no_one_trusts() {
    let (_pki, server) = serving("insecure", &["127.0.0.1"], TLS12_AND_13).await;
    let insecure = TlsSettings {
        insecure: true,
        ..TlsSettings::default()
    };
    let results = run(config(&server.url("/"), 2, insecure)).await.unwrap();
    assert_eq!(results.totals.ok, 100, "{:?}", results.totals.errors);
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_naming_the_name_mismatch() {
    let (pki, server) = serving("mismatch", &["other.example"], TLS12_AND_13).await;
    let err = run(config(&server.url("/"), 2, trusting(&pki)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("name mismatch"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn a_tls_version_the_server_does_not_speak_fails_naming_the_protocol_version() {
    let (pki, server) = serving("version", &["127.0.0.1"], TLS13_ONLY).await;
    let tls12 = TlsSettings {
        version: Some(TlsVersion::Tls12),
        ..trusting(&pki)
    };
    let err = run(config(&server.url("/"), 1, tls12)).await.unwrap_err();
    assert!(err.to_string().contains("protocol version"), "{err}");
}

#[tokio::test]
async fn an_mtls_server_refuses_a_client_without_a_certificate_and_accepts_one_with_it() {
    let pki = Pki::new("mtls");
    let leaf = pki.sign(&["127.0.0.1"]);
    let server = TlsServer::start(ServerTls {
        leaf: &leaf,
        client_ca: Some(&pki),
        versions: TLS13_ONLY,
        h2: true,
    })
    .await;

    // TLS 1.3: the client's side of the handshake ends before the server judges its
    // (missing) certificate, so the refusal arrives with the first request.
    let refused = run(config(&server.url("/"), 2, trusting(&pki)))
        .await
        .unwrap();
    assert_eq!(refused.totals.ok, 0);
    assert_eq!(
        refused.totals.errors.tls, refused.totals.requests,
        "{:?}",
        refused.totals.errors
    );
    let refused_tls = refused.tls.clone().unwrap();
    let refusals = refused_tls.failures.get("client_certificate").copied();
    assert!(refusals.unwrap_or(0) > 0, "{refused_tls:?}");

    let client = pki.sign(&["faultline-client"]);
    let with_certificate = TlsSettings {
        cert: Some(pki.file("client.pem", &client.cert)),
        key: Some(pki.file("client-key.pem", &client.key)),
        ..trusting(&pki)
    };
    let accepted = run(config(&server.url("/"), 2, with_certificate))
        .await
        .unwrap();
    assert_eq!(accepted.totals.ok, 100, "{:?}", accepted.totals.errors);

    // Both runs' TLS results, and their merge, keep to the committed schema.
    let validator = crate::schema::validator();
    let merged = Results::merge(&refused, &accepted).unwrap();
    for results in [&refused, &accepted, &merged] {
        crate::schema::assert_valid(&validator, results);
    }
    let merged_tls = merged.tls.unwrap();
    let accepted_tls = accepted.tls.unwrap();
    assert_eq!(
        merged_tls.handshakes,
        refused_tls.handshakes + accepted_tls.handshakes
    );
    assert_eq!(merged_tls.failures, refused_tls.failures);
}

#[tokio::test]
async fn a_reconnect_resumes_the_tls_session() {
    let (pki, server) = serving("resume", &["127.0.0.1"], TLS12_AND_13).await;
    // `/close` ends every connection after its answer: one handshake per request.
    let results = run(config(&server.url("/close"), 1, trusting(&pki)))
        .await
        .unwrap();
    assert_eq!(results.totals.ok, 100, "{:?}", results.totals.errors);
    let tls = results.tls.unwrap();
    assert_eq!(tls.handshakes, 100, "{tls:?}");
    // Every reconnect can resume the session of the connection before it.
    assert!(tls.resumed >= 95, "{tls:?}");
}

#[tokio::test]
async fn many_connections_reconnecting_at_once_all_resume_after_their_first_handshake() {
    let (pki, server) = serving("resume-many", &["127.0.0.1"], TLS13_ONLY).await;
    // 32 connections, each ending after its answer: a TLS 1.3 ticket is used once, and
    // rustls's own store keeps 8, so most reconnects would find none.
    let connections = 32;
    let mut config = config(&server.url("/close"), connections, trusting(&pki));
    config.schedule = Schedule::closed(Duration::from_secs(1)).unwrap();
    let results = run(config).await.unwrap();
    let tls = results.tls.unwrap();
    let first = connections as u64;
    assert!(
        tls.handshakes >= 3 * first,
        "too few reconnects to judge: {tls:?}"
    );
    // Only the first handshake of each connection has no ticket to resume with.
    assert!(
        tls.resumed * 10 >= (tls.handshakes - first) * 9,
        "{} of {} handshakes resumed",
        tls.resumed,
        tls.handshakes
    );
}

#[tokio::test]
async fn a_bad_ca_file_is_a_usage_error_naming_the_option_and_the_file() {
    let pki = Pki::new("bad-ca-file");
    let not_pem = pki.file("not-a-ca.pem", "hello");
    let err = TlsSettings {
        cacert: Some(not_pem.clone()),
        ..TlsSettings::default()
    }
    .client_config(&[])
    .unwrap_err();
    assert!(err.to_string().contains("--cacert"), "{err}");
    assert!(
        err.to_string().contains(&not_pem.display().to_string()),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
}

/// Runs 1 s closed against `/slow` on one HTTP/2 connection with `streams`, and
/// returns the most requests the server had in flight at once.
async fn most_in_flight(url: &str, tls: TlsSettings, streams: usize, max: &AtomicUsize) -> usize {
    let mut config = config(url, 1, tls);
    config.schedule = Schedule::closed(Duration::from_secs(1)).unwrap();
    config.http_version = HttpVersion::Http2;
    config.streams = streams;
    let results = run(config).await.unwrap();
    assert!(results.totals.ok > 0, "{:?}", results.totals.errors);
    assert_eq!(
        results.totals.errors.total(),
        0,
        "{:?}",
        results.totals.errors
    );
    max.swap(0, Ordering::SeqCst)
}

#[tokio::test]
async fn http2_over_tls_with_8_streams_has_8_requests_in_flight_on_one_connection() {
    let (pki, server) = serving("h2-streams", &["127.0.0.1"], TLS12_AND_13).await;
    let url = server.url("/slow");
    let one = most_in_flight(&url, trusting(&pki), 1, &server.max_in_flight).await;
    assert_eq!(one, 1, "one stream is one request at a time");
    let eight = most_in_flight(&url, trusting(&pki), 8, &server.max_in_flight).await;
    assert_eq!(eight, 8, "8 streams on the one connection");
}

#[tokio::test]
async fn streams_without_http2_are_refused() {
    let server = TestServer::start().await;
    let mut config = server.config("/", Schedule::closed(Duration::from_secs(1)).unwrap());
    config.streams = 4;
    let err = engine::run(config, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("--http2"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn the_command_line_runs_https_over_http2_with_streams_and_its_tls_options() {
    let (pki, server) = serving("cli", &["127.0.0.1"], TLS12_AND_13).await;
    let ca = pki.ca_file();
    let url = server.url("/");
    let args = crate::cli::load_args(&[
        &url,
        "--cacert",
        ca.to_str().unwrap(),
        "--tls-version",
        "1.3",
        "--http2",
        "--streams",
        "4",
        "-c",
        "2",
        "--rate",
        "100",
        "--duration",
        "1s",
        "-q",
    ]);
    let results = faultline_loadgen::cli::run_load(args, Default::default())
        .await
        .unwrap();
    assert_eq!(results.totals.ok, 100, "{:?}", results.totals.errors);
    assert_eq!(results.metadata.http_version, HttpVersion::Http2);
    // The streams a run used are in its results and its summary, beside the connections.
    assert_eq!(results.metadata.streams, 4);
    let summary = faultline_loadgen::summary::summary_table(&results);
    assert!(summary.contains("2 connections × 4 streams"), "{summary}");
    assert_eq!(results.tls.unwrap().handshakes, 2, "one per connection");
}

#[tokio::test]
async fn a_scenario_file_gives_its_tls_settings_in_load_tls() {
    let (pki, server) = serving("scenario", &["127.0.0.1"], TLS12_AND_13).await;
    let ca = pki.ca_file();
    let scenario = pki.file(
        "scenario.toml",
        &format!(
            "[load]\ntarget = \"{}\"\nrate = 50\nduration = \"1s\"\nconnections = 2\n\
             [load.tls]\ncacert = \"{}\"\nversion = \"1.2\"\n",
            server.url("/"),
            ca.display()
        ),
    );
    let results = crate::cli::run_load_table(&scenario).await.unwrap();
    assert_eq!(results.totals.ok, 50, "{:?}", results.totals.errors);

    let bad = pki.file(
        "bad.toml",
        "[load]\ntarget = \"https://127.0.0.1:1/\"\nrate = 5\nduration = \"1s\"\n\
         [load.tls]\nversion = \"1.1\"\n",
    );
    let err = crate::cli::run_load_table(&bad).await.unwrap_err();
    assert!(err.to_string().contains("load.tls.version"), "{err}");
    assert!(err.to_string().contains("bad.toml"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn http2_against_a_tls_server_without_h2_is_refused_before_the_run() {
    let pki = Pki::new("no-h2");
    let leaf = pki.sign(&["127.0.0.1"]);
    let server = TlsServer::start(ServerTls {
        h2: false,
        ..ServerTls::plain(&leaf, TLS12_AND_13)
    })
    .await;
    let mut config = config(&server.url("/"), 1, trusting(&pki));
    config.http_version = HttpVersion::Http2;
    let err = run(config).await.unwrap_err();
    assert!(err.to_string().contains("HTTP/2"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn an_unreadable_ca_file_is_named_before_the_target_is_connected_to() {
    // Nothing listens on port 1: the CA file is what is reported, as it is checked first.
    let missing = std::env::temp_dir().join("faultline-no-such-ca.pem");
    let settings = TlsSettings {
        cacert: Some(missing.clone()),
        ..TlsSettings::default()
    };
    let err = run(config("https://127.0.0.1:1/", 1, settings))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::InvalidArgument { .. }), "{err}");
    assert!(err.to_string().contains("--cacert"), "{err}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
}

/// Both features at once: two `https://` hosts, a weighted mix with a templated
/// path, over HTTP/1.1 and over HTTP/2 with two streams per connection.
#[tokio::test]
async fn templated_mixes_over_two_https_hosts_work_on_http1_and_on_http2_streams() {
    let pki = Pki::new("hosts-and-templates");
    let leaf = pki.sign(&["127.0.0.1"]);
    let a = TlsServer::start(ServerTls::plain(&leaf, TLS12_AND_13)).await;
    let b = TlsServer::start(ServerTls::plain(&leaf, TLS12_AND_13)).await;
    for (version, streams) in [(HttpVersion::Http1, 1), (HttpVersion::Http2, 2)] {
        let mut config = config(&a.url("/"), 2, trusting(&pki));
        config.hosts =
            faultline_loadgen::target::Host::parse_list([
                format!("{},{}", a.url("/"), b.url("/")).as_str()
            ])
            .unwrap();
        let target = Target::parse(&a.url("/n/{{randint 1 9}}")).unwrap();
        let mut templated = faultline_loadgen::RequestSpec::for_target(
            &target,
            http::Method::GET,
            Default::default(),
            Bytes::new(),
        );
        templated.weight = 3;
        let plain = faultline_loadgen::RequestSpec::for_target(
            &Target::parse(&a.url("/")).unwrap(),
            http::Method::GET,
            Default::default(),
            Bytes::new(),
        );
        config.requests = vec![templated, plain];
        config.http_version = version;
        config.streams = streams;
        let results = run(config).await.unwrap();
        assert_eq!(results.totals.requests, 100, "{version:?}");
        assert_eq!(results.totals.ok, 100, "{:?}", results.totals.errors);
        assert_eq!(results.endpoints.len(), 4, "2 requests x 2 hosts");
        let tls = results.tls.expect("an https run records its handshakes");
        // One connection per group and host: 2 groups x 2 hosts, whatever the streams.
        assert_eq!(tls.handshakes, 4, "{version:?}: {tls:?}");
        assert!(tls.failures.is_empty(), "{tls:?}");
    }
}
