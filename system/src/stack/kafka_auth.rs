//! Who may talk to the local Kafka cluster, and how every client of the project says who
//! it is.
//!
//! - [`KafkaClient`] is the one place a Kafka client's settings come from: bootstrap
//!   servers plus, for a secured cluster, SASL/SCRAM-SHA-512 credentials ([`KafkaAuth`]).
//!   Services, the smoke test, readiness probes and test helpers all start from
//!   [`KafkaClient::config`], so nothing connects anonymously by accident.
//! - [`KafkaPrincipals`] are a local cluster's principals, random passwords per stack: an
//!   `admin` super user, and one principal per service named after it. The brokers learn
//!   the SCRAM credentials when their storage is formatted (`--add-scram`, KRaft's way of
//!   bootstrapping them) and the ACLs once the cluster is up ([`grant_acls`]), made from
//!   [`crate::topology::KAFKA_ACCESS`].
//!
//! Listeners: clients use SCRAM-SHA-512 (the client listener also takes SASL/PLAIN from
//! `admin` alone, for kcat builds too old for SCRAM against Kafka 4, see
//! [`KafkaClient::kcat_properties`]); brokers replicate over SCRAM-SHA-512 as `admin`;
//! the KRaft controller listener uses SASL/PLAIN with `admin`'s password in the broker's
//! JAAS settings, since SCRAM credentials live in the metadata log the controller serves
//! and so cannot authenticate the controllers themselves.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use rdkafka::ClientConfig;

use super::process::{self, ProcessSpec};
use super::ready::{self, Where};
use super::StackError;
use crate::topology::KAFKA_ACCESS;

/// The SASL mechanism of every client connection.
pub const SASL_MECHANISM: &str = "SCRAM-SHA-512";

/// The mechanism of the super user's kcat file (see [`KafkaClient::kcat_properties`]).
pub const ADMIN_KCAT_MECHANISM: &str = "PLAIN";

/// The super user's principal name.
pub const ADMIN_USER: &str = "admin";

/// SASL/SCRAM credentials of one principal. The password is not printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaAuth {
    pub username: String,
    password: String,
}

impl KafkaAuth {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> KafkaAuth {
        KafkaAuth {
            username: username.into(),
            password: password.into(),
        }
    }

    /// A principal with a fresh random password: 122 random bits, hex, so that it needs no
    /// quoting in JAAS settings, property files or `--add-scram` arguments.
    fn random(username: &str) -> KafkaAuth {
        KafkaAuth::new(username, uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for KafkaAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How a client reaches Kafka: the bootstrap servers and, for a secured cluster, whose
/// credentials it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaClient {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// `None` for a cluster that takes anonymous clients (an external one given without
    /// credentials).
    pub auth: Option<KafkaAuth>,
}

impl KafkaClient {
    pub fn new(bootstrap: impl Into<String>, auth: Option<KafkaAuth>) -> KafkaClient {
        KafkaClient {
            bootstrap: bootstrap.into(),
            auth,
        }
    }

    /// librdkafka's settings: every client the project builds starts from these.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in self.librdkafka_settings(SASL_MECHANISM) {
            config.set(key, value);
        }
        config
    }

    fn librdkafka_settings(&self, mechanism: &str) -> Vec<(&'static str, String)> {
        let mut settings = vec![("bootstrap.servers", self.bootstrap.clone())];
        if let Some(auth) = &self.auth {
            settings.extend([
                ("security.protocol", "SASL_PLAINTEXT".to_string()),
                ("sasl.mechanisms", mechanism.to_string()),
                ("sasl.username", auth.username.clone()),
                ("sasl.password", auth.password.clone()),
            ]);
        }
        settings
    }

    /// A librdkafka property file for `kcat -F`. It says SASL/PLAIN, which the client
    /// listener takes from the super user alone: librdkafka before 2.6.1 (Debian 12's kcat
    /// has 2.0.2) computes SCRAM proofs that Kafka 4 rejects (librdkafka#4895).
    pub fn kcat_properties(&self) -> String {
        self.librdkafka_settings(ADMIN_KCAT_MECHANISM)
            .into_iter()
            .map(|(key, value)| format!("{key}={value}\n"))
            .collect()
    }

    /// A Java client property file (`--command-config` of Kafka's CLI tools). It cannot be
    /// the librdkafka file: librdkafka refuses `sasl.jaas.config`, and Java clients need it.
    pub fn java_properties(&self) -> String {
        let mut text = format!("bootstrap.servers={}\n", self.bootstrap);
        if let Some(auth) = &self.auth {
            text.push_str(&format!(
                "security.protocol=SASL_PLAINTEXT\n\
                 sasl.mechanism={SASL_MECHANISM}\n\
                 sasl.jaas.config={}\n",
                scram_jaas(auth)
            ));
        }
        text
    }
}

fn scram_jaas(auth: &KafkaAuth) -> String {
    format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"{}\" password=\"{}\";",
        auth.username, auth.password
    )
}

/// The principals of a local cluster: the super user and one per service that uses Kafka.
#[derive(Debug, Clone)]
pub struct KafkaPrincipals {
    pub admin: KafkaAuth,
    services: BTreeMap<&'static str, KafkaAuth>,
}

impl KafkaPrincipals {
    /// Fresh random passwords for `admin` and every service in [`KAFKA_ACCESS`].
    pub fn generate() -> KafkaPrincipals {
        KafkaPrincipals {
            admin: KafkaAuth::random(ADMIN_USER),
            services: KAFKA_ACCESS
                .iter()
                .map(|access| {
                    let name = access.service.name();
                    (name, KafkaAuth::random(name))
                })
                .collect(),
        }
    }

    /// The credentials of service `name`, `None` for one that uses no Kafka.
    pub fn service(&self, name: &str) -> Option<&KafkaAuth> {
        self.services.get(name)
    }

    /// `kafka-storage format` arguments that bootstrap every principal's SCRAM credentials.
    pub(crate) fn scram_format_args(&self) -> Vec<String> {
        std::iter::once(&self.admin)
            .chain(self.services.values())
            .map(|auth| {
                format!(
                    "--add-scram={SASL_MECHANISM}=[name={},password={}]",
                    auth.username, auth.password
                )
            })
            .collect()
    }

    /// The security part of a broker's `server.properties`; `listener.security.protocol.map`
    /// names the listeners of [`super::kafka`].
    pub(crate) fn server_properties(&self) -> String {
        let admin = &self.admin;
        format!(
            "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\n\
             sasl.enabled.mechanisms={SASL_MECHANISM}\n\
             sasl.mechanism.inter.broker.protocol={SASL_MECHANISM}\n\
             listener.name.client.sasl.enabled.mechanisms={SASL_MECHANISM},{ADMIN_KCAT_MECHANISM}\n\
             listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}=\"{password}\";\n\
             listener.name.internal.scram-sha-512.sasl.jaas.config={internal}\n\
             sasl.mechanism.controller.protocol=PLAIN\n\
             listener.name.controller.sasl.enabled.mechanisms=PLAIN\n\
             listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"{user}\" password=\"{password}\" user_{user}=\"{password}\";\n\
             authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             allow.everyone.if.no.acl.found=false\n\
             super.users=User:{user}\n",
            internal = scram_jaas(admin),
            user = admin.username,
            password = admin.password,
        )
    }
}

/// One ACL line for the Java helper: principal, resource type, pattern type, resource
/// name, operation (all allowed, from any host).
fn acl_line(service: &str, resource: &str, pattern: &str, name: &str, operation: &str) -> String {
    format!("User:{service} {resource} {pattern} {name} {operation}\n")
}

/// Every ACL of the local cluster, from [`KAFKA_ACCESS`]: `Write` on what a service writes,
/// `Read` on what it reads, `Create` on its topics, `Read` on its groups (prefixed).
pub(crate) fn acl_lines() -> String {
    let mut lines = String::new();
    for access in KAFKA_ACCESS {
        let service = access.service.name();
        for topic in access.all_writes() {
            lines.push_str(&acl_line(service, "topic", "LITERAL", topic, "write"));
        }
        for topic in access.reads {
            lines.push_str(&acl_line(service, "topic", "LITERAL", topic, "read"));
        }
        for topic in access.creates() {
            lines.push_str(&acl_line(service, "topic", "LITERAL", topic, "create"));
        }
        if !access.reads.is_empty() {
            let prefix = access.group_prefix();
            lines.push_str(&acl_line(service, "group", "PREFIXED", prefix, "read"));
        }
    }
    lines
}

/// Creates the ACLs through Kafka's own Admin client in one JVM: a single-file Java
/// program run by the `java` launcher, since librdkafka (and so rust-rdkafka) has no
/// binding for CreateAcls that safe Rust can call, and `kafka-acls` would take a JVM per
/// combination of resource and pattern.
pub(crate) async fn grant_acls(
    java: &Path,
    classpath: &str,
    dir: &Path,
    admin: &KafkaClient,
    timeout: Duration,
) -> Result<(), StackError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| StackError::io(format!("creating {}", dir.display()), source))?;
    let program = dir.join("GrantAcls.java");
    let acls = dir.join("acls.txt");
    let properties = dir.join("admin.properties");
    write_private(&program, GRANT_ACLS_JAVA)?;
    write_private(&acls, &acl_lines())?;
    write_private(&properties, &admin.java_properties())?;
    let mut grant = process::spawn(&ProcessSpec {
        name: "kafka-grant-acls".into(),
        program: java.to_path_buf(),
        args: vec![
            "-Xmx256m".into(),
            // A short-lived JVM: the quick JIT tier only.
            "-XX:TieredStopAtLevel=1".into(),
            "-cp".into(),
            classpath.to_string(),
            program.display().to_string(),
            properties.display().to_string(),
            acls.display().to_string(),
        ],
        env: Vec::new(),
        cwd: Some(dir.to_path_buf()),
        log_path: dir.join("grant-acls.log"),
        run_as: None,
    })?;
    let place = Where {
        component: "Kafka ACLs",
        port: 0,
        data_dir: dir,
    };
    match grant.wait_exit(timeout).await {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(ready::failed(
            &mut grant,
            &place,
            format!("creating the ACLs exited with {status} (the `java` launcher needs a JDK to run a .java file)"),
        )),
        None => Err(ready::failed(
            &mut grant,
            &place,
            format!("creating the ACLs did not finish within {timeout:?}"),
        )),
    }
}

/// Writes a file only its owner can read: these hold passwords.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), StackError> {
    crate::platform::files::write_owner_only(path, contents)
        .map_err(|source| StackError::io(format!("writing {}", path.display()), source))
}

/// Reads Admin client properties and ACL lines (see [`acl_line`]) and creates them all.
const GRANT_ACLS_JAVA: &str = r#"
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class GrantAcls {
    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        try (var in = Files.newInputStream(Path.of(args[0]))) {
            properties.load(in);
        }
        List<AclBinding> bindings = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[1]))) {
            if (line.isBlank()) continue;
            String[] f = line.trim().split(" ");
            bindings.add(new AclBinding(
                new ResourcePattern(ResourceType.fromString(f[1]), f[3], PatternType.fromString(f[2])),
                new AccessControlEntry(f[0], "*", AclOperation.fromString(f[4]), AclPermissionType.ALLOW)));
        }
        try (Admin admin = Admin.create(properties)) {
            admin.createAcls(bindings).all().get();
        }
        System.out.println("created " + bindings.size() + " ACLs");
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secured_client_config_carries_its_credentials_and_an_open_one_none() {
        let auth = KafkaAuth::new("orders", "secret-1");
        let secured = KafkaClient::new("127.0.0.1:1", Some(auth.clone()));
        let config = secured.config();
        assert_eq!(config.get("sasl.username"), Some("orders"));
        assert_eq!(config.get("sasl.password"), Some("secret-1"));
        assert_eq!(config.get("sasl.mechanisms"), Some(SASL_MECHANISM));
        let open = KafkaClient::new("127.0.0.1:1", None).config();
        assert_eq!(open.get("security.protocol"), None);
        assert!(!format!("{auth:?}").contains("secret-1"));
        assert!(secured.java_properties().contains("password=\"secret-1\""));
        assert!(!secured.kcat_properties().contains("jaas"));
    }

    #[test]
    fn every_stack_has_its_own_passwords() {
        let (one, two) = (KafkaPrincipals::generate(), KafkaPrincipals::generate());
        assert_ne!(one.admin.password(), two.admin.password());
        let orders = |p: &KafkaPrincipals| p.service("orders").map(|a| a.password().to_string());
        assert!(orders(&one).is_some());
        assert_ne!(orders(&one), orders(&two));
        assert!(one.service("gateway").is_none());
        // SASL/PLAIN knows the super user alone.
        let server = one.server_properties();
        assert!(server.contains(&format!("user_admin=\"{}\"", one.admin.password())));
        assert!(!server.contains("user_orders"));
    }

    #[test]
    fn orders_may_write_its_commands_but_not_inventory_replies() {
        let lines = acl_lines();
        assert!(lines.contains("User:orders topic LITERAL inventory.commands write\n"));
        assert!(lines.contains("User:orders topic LITERAL inventory.replies read\n"));
        assert!(!lines.contains("User:orders topic LITERAL inventory.replies write\n"));
        assert!(lines.contains("User:orders group PREFIXED orders read\n"));
        assert!(!lines.contains("User:users group"));
    }
}
