//! Mutual TLS between the services (`faultline system up --mtls`), as a service mesh's
//! sidecars would do it, but in process.
//!
//! - **Identities.** [`write_mesh`] makes one CA per system and one leaf per identity (each
//!   service, the supervisor, Prometheus), written to the system's directory. A leaf names
//!   its identity as the DNS name `<identity>.faultline.local` (and is valid for 127.0.0.1,
//!   where every service listens). A DNS name rather than a SPIFFE URI: rustls' own
//!   verifier (webpki) can check a certificate against a DNS name, so reading the identity
//!   needs no X.509 parser of our own, and the name is never resolved, only compared.
//! - **Servers.** With [`MeshArgs`] given, a service serves HTTPS and requires a client
//!   certificate from the system CA (no certificate, or one from another CA: the handshake
//!   fails). The connection's [`Caller`] is then checked per request by [`admit`] against
//!   who may call the service ([`callers_of`]): a valid certificate of the wrong caller gets
//!   403 naming that caller.
//! - **Operational routes** (`/health/*`, `/metrics`) admit any identity of the CA, on the
//!   one listener: the supervisor probes readiness with its own certificate, a gateway its
//!   replicas with the gateway's, Prometheus scrapes with `prometheus.pem`. A second plain
//!   listener per service would leave a port that needs no certificate at all, and a
//!   second port for every replica to hand around. `/admin/*` (faults set by an operator)
//!   admits the supervisor's identity, which the operator's tools use.
//! - **Clients.** [`MeshIdentity::client_config`] presents the process' certificate and
//!   trusts only the system CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use clap::Args;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::http::ApiError;
use super::tls::{self, Ca, TlsError};
use crate::services::ServiceKind;

/// The domain of every identity's DNS name.
pub const DOMAIN: &str = "faultline.local";
/// The supervisor's identity: readiness probes, and operators' calls to `/admin/*`.
pub const SUPERVISOR: &str = "supervisor";
/// Prometheus' identity, for scraping `/metrics`.
pub const PROMETHEUS: &str = "prometheus";

/// The DNS name `identity`'s certificate bears, `<identity>.faultline.local`.
pub fn dns_name(identity: &str) -> String {
    format!("{identity}.{DOMAIN}")
}

/// Whether `service` serves mutual TLS under a mesh: all but the gateway, whose front
/// door is public (plain HTTP, or HTTPS with `--tls`) and which is a client of the mesh.
pub fn serves_mesh(service: ServiceKind) -> bool {
    service != ServiceKind::Gateway
}

/// Every identity the system CA signs a leaf for.
pub fn identities() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ServiceKind::ALL.iter().map(|k| k.name()).collect();
    names.extend([SUPERVISOR, PROMETHEUS]);
    names
}

/// Who may call `service`'s own routes. Only the gateway calls services over HTTP (its
/// upstreams); everything else between services travels through Kafka, so services that
/// are not upstreams of the gateway take no calls at all.
pub fn callers_of(service: ServiceKind) -> &'static [&'static str] {
    match service {
        ServiceKind::Users
        | ServiceKind::Inventory
        | ServiceKind::Orders
        | ServiceKind::Analytics
        | ServiceKind::Ingest => &["gateway"],
        ServiceKind::Gateway
        | ServiceKind::Payments
        | ServiceKind::Shipping
        | ServiceKind::Notifications => &[],
    }
}

/// The files [`write_mesh`] wrote: `mesh-ca.pem`, and `mesh-<identity>.pem` with
/// `mesh-<identity>-key.pem` for each identity.
#[derive(Debug, Clone)]
pub struct MeshFiles {
    pub dir: PathBuf,
    pub ca: PathBuf,
}

impl MeshFiles {
    pub fn cert(&self, identity: &str) -> PathBuf {
        self.dir.join(format!("mesh-{identity}.pem"))
    }

    pub fn key(&self, identity: &str) -> PathBuf {
        self.dir.join(format!("mesh-{identity}-key.pem"))
    }

    /// The `serve` flags that give `identity` its certificate.
    pub fn serve_args(&self, identity: &str) -> Vec<String> {
        [
            ("--mesh-ca", self.ca.clone()),
            ("--mesh-cert", self.cert(identity)),
            ("--mesh-key", self.key(identity)),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }
}

/// Makes the system CA and a leaf for every one of [`identities`] in `dir`. The CA's key
/// is dropped on return: nothing else can join the system afterwards.
pub fn write_mesh(dir: &Path) -> Result<MeshFiles, TlsError> {
    let ca = Ca::new("faultline system CA")?;
    let files = MeshFiles {
        dir: dir.to_path_buf(),
        ca: dir.join("mesh-ca.pem"),
    };
    tls::write_public("--mesh-ca", &files.ca, &ca.pem)?;
    for identity in identities() {
        let names = vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            dns_name(identity),
        ];
        let leaf = ca.leaf(&format!("faultline {identity}"), names)?;
        tls::write_public("--mesh-cert", &files.cert(identity), &leaf.cert_pem)?;
        tls::write_private("--mesh-key", &files.key(identity), &leaf.key_pem)?;
    }
    Ok(files)
}

/// Mutual TLS between the services (flags of `faultline serve`; the supervisor gives
/// them with `system up --mtls`).
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct MeshArgs {
    /// Mutual TLS: the system CA. Serve HTTPS (TLS 1.3) requiring a client certificate it
    /// signed, and call other services presenting --mesh-cert and trusting only this CA.
    #[arg(long, value_name = "FILE", requires_all = ["mesh_cert", "mesh_key"])]
    pub mesh_ca: Option<PathBuf>,

    /// Mutual TLS: this service's certificate (PEM), naming it as `<service>.faultline.local`.
    #[arg(long, value_name = "FILE", requires = "mesh_ca")]
    pub mesh_cert: Option<PathBuf>,

    /// Mutual TLS: the private key of --mesh-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "mesh_ca")]
    pub mesh_key: Option<PathBuf>,
}

impl MeshArgs {
    /// The identity the flags give, `None` without mutual TLS.
    pub fn identity(&self) -> Result<Option<MeshIdentity>, TlsError> {
        match (&self.mesh_ca, &self.mesh_cert, &self.mesh_key) {
            (Some(ca), Some(cert), Some(key)) => MeshIdentity::load(ca, cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

/// One process' place in the mesh: the system CA and its own certificate.
#[derive(Clone)]
pub struct MeshIdentity {
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl MeshIdentity {
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<MeshIdentity, TlsError> {
        Ok(MeshIdentity {
            roots: tls::read_roots("--mesh-ca", ca)?,
            chain: tls::read_chain("--mesh-cert", cert)?,
            key: Arc::new(tls::read_key("--mesh-key", key)?),
        })
    }

    /// `identity`'s files of a mesh [`write_mesh`] made.
    pub fn of(files: &MeshFiles, identity: &str) -> Result<MeshIdentity, TlsError> {
        MeshIdentity::load(&files.ca, &files.cert(identity), &files.key(identity))
    }

    /// Serving this identity, to clients holding a certificate of the system CA only.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let key = self.key.clone_key();
        tls::server_config(self.chain.clone(), key, Some(self.roots.clone()))
    }

    /// Calling as this identity, trusting servers of the system CA only.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let identity = (self.chain.clone(), self.key.clone_key());
        tls::client_config(self.roots.clone(), Some(identity))
    }
}

/// The identity of the client at the other end of a mutual-TLS connection, put into each
/// of its requests' extensions by the server loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

impl Caller {
    /// The identity the client's (already verified) certificate names, among
    /// [`identities`]; `None` when it presented none or names none of them.
    pub fn of(connection: &rustls::ServerConnection) -> Option<Caller> {
        let leaf = connection.peer_certificates()?.first()?;
        let leaf = webpki::EndEntityCert::try_from(leaf).ok()?;
        identities().into_iter().find_map(|identity| {
            let name = ServerName::try_from(dns_name(identity)).ok()?;
            leaf.verify_is_valid_for_subject_name(&name)
                .is_ok()
                .then(|| Caller(identity.to_string()))
        })
    }
}

/// Middleware of a service under mutual TLS (install with `Router::layer`, so that it also
/// sees paths no route matches): admits a request by its connection's [`Caller`] and the
/// route class (see the module documentation), or answers 403 naming the caller.
pub async fn admit(State(service): State<ServiceKind>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path.starts_with("/health/") || path == "/metrics" {
        return next.run(request).await;
    }
    let allowed: &[&str] = if path.starts_with("/admin/") {
        &[SUPERVISOR]
    } else {
        callers_of(service)
    };
    let caller = request.extensions().get::<Caller>().cloned();
    match caller {
        Some(Caller(name)) if allowed.contains(&name.as_str()) => next.run(request).await,
        caller => {
            let who = caller.map_or("a caller with no known identity".to_string(), |c| c.0);
            let takes = if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            };
            ApiError::Forbidden(format!(
                "{} does not take calls to {path} from {who} (it takes them from: {takes})",
                service.name()
            ))
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_leaf_names_its_own_identity_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_mesh(dir.path()).unwrap();
        let mesh = MeshIdentity::of(&files, "payments").unwrap();
        let leaf = webpki::EndEntityCert::try_from(&mesh.chain[0]).unwrap();
        let names = |identity: &str| ServerName::try_from(format!("{identity}.{DOMAIN}")).unwrap();
        assert!(leaf
            .verify_is_valid_for_subject_name(&names("payments"))
            .is_ok());
        assert!(leaf
            .verify_is_valid_for_subject_name(&names("orders"))
            .is_err());
        let loopback = ServerName::try_from("127.0.0.1").unwrap();
        assert!(leaf.verify_is_valid_for_subject_name(&loopback).is_ok());
        mesh.server_config().unwrap();
        mesh.client_config().unwrap();
    }

    #[test]
    fn only_the_gateway_calls_the_gateways_upstreams() {
        assert_eq!(callers_of(ServiceKind::Orders), ["gateway"]);
        assert!(callers_of(ServiceKind::Payments).is_empty());
    }

    #[test]
    fn mesh_flags_come_together_or_not_at_all() {
        let args = MeshArgs {
            mesh_ca: Some(PathBuf::from("/nonexistent/mesh-ca.pem")),
            mesh_cert: Some(PathBuf::from("/nonexistent/mesh-orders.pem")),
            mesh_key: Some(PathBuf::from("/nonexistent/mesh-orders-key.pem")),
        };
        let error = args.identity().err().unwrap();
        assert!(error.to_string().starts_with("--mesh-ca "), "{error}");
        assert!(MeshArgs::default().identity().unwrap().is_none());
    }
}
