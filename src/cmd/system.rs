//! `faultline system ...`: the whole reference system on this machine (`up`), or its
//! catalogue (`seed`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use faultline_system::platform::migrate;
use faultline_system::services::inventory;
use faultline_system::services::ServiceKind;
use faultline_system::supervisor::{System, SystemError, SystemSpec};
use faultline_system::topology::Topology;

use super::stack::StackArgs;

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Bring the stack up (or use external components: flags, or the KAFKA_BOOTSTRAP,
    /// DATABASE_URL and REDIS_URL that `stack up` prints), start every service as a
    /// supervised process (restarted with backoff if it dies), wait until all are ready,
    /// seed the catalogue, and print the stack's three lines, GATEWAY_URL (with --tls,
    /// GATEWAY_CA_FILE too; with --mtls, MESH_CA_FILE, MESH_CLIENT_CERT, MESH_CLIENT_KEY) and one
    /// SERVICE_<NAME>_<replica>=URL pid=PID line per process. Stays up until Ctrl-C.
    Up(Box<UpArgs>),
    /// Create products 1..=N with the given stock in an inventory database.
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,

    /// Replicas per service, e.g. `orders=2,inventory=2` (the gateway runs one).
    #[arg(long, value_delimiter = ',', value_name = "SERVICE=N")]
    replicas: Vec<String>,

    /// Probability that a payment fails (the saga then compensates).
    #[arg(long, default_value_t = 0.0)]
    payments_fail_rate: f64,

    /// Time each payment takes, in milliseconds.
    #[arg(long, default_value_t = 0)]
    payments_latency_ms: u64,

    /// Probability that scheduling a shipment fails.
    #[arg(long, default_value_t = 0.0)]
    shipping_fail_rate: f64,

    /// Products in the seeded catalogue.
    #[arg(long, default_value_t = 100)]
    products: i64,

    /// Units in stock of each product.
    #[arg(long, default_value_t = 1_000_000)]
    stock: i32,

    /// Gateway rate limit, requests per second per user (0: off).
    #[arg(long, default_value_t = 1000.0)]
    rate_limit: f64,

    /// HS256 secret for tokens (random when not given).
    #[arg(long, env = "FAULTLINE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,

    /// Notifications also POST to this URL.
    #[arg(long)]
    webhook_url: Option<String>,

    /// Orders: take a new order only while the pending sagas can finish within this time
    /// at the recent completion rate; otherwise 503 with Retry-After. 0s takes every order
    /// (e.g. to pile up a backlog on purpose).
    #[arg(long, value_name = "DURATION")]
    saga_deadline: Option<String>,

    /// The gateway serves HTTPS (TLS 1.3 only) with a certificate for 127.0.0.1 and
    /// localhost from a throwaway CA; GATEWAY_CA_FILE= names the CA for clients to trust.
    #[arg(long)]
    tls: bool,

    /// Mutual TLS between the services: a CA made for this system signs a certificate per
    /// service (and for the supervisor and Prometheus), written next to the services' logs;
    /// every service behind the gateway then serves HTTPS (TLS 1.3) only to clients holding
    /// one, and answers 403 to a valid certificate of a service that may not call it (only
    /// the gateway calls services; /health/* and /metrics take any certificate of the CA).
    /// MESH_CA_FILE= names the CA; MESH_CLIENT_CERT= and MESH_CLIENT_KEY= the supervisor's
    /// certificate, for calling a service directly (e.g. curl --cacert --cert --key).
    #[arg(long)]
    mtls: bool,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The inventory service's database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[arg(long, default_value_t = 100)]
    products: i64,
    #[arg(long, default_value_t = 1_000_000)]
    stock: i32,
}

pub async fn run(command: SystemCommand) -> anyhow::Result<ExitCode> {
    match command {
        SystemCommand::Up(args) => up(*args).await,
        SystemCommand::Seed(args) => seed(args).await,
    }
}

/// `SERVICE=N` pairs; [`Topology::apply`] checks the services and counts.
fn parse_replicas(values: &[String]) -> Result<BTreeMap<String, usize>, String> {
    let mut replicas = BTreeMap::new();
    for value in values {
        let (name, count) = value
            .split_once('=')
            .ok_or_else(|| format!("--replicas {value:?}: expected SERVICE=N"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("--replicas {value:?}: {count:?} is not a number"))?;
        replicas.insert(name.trim().to_string(), count);
    }
    Ok(replicas)
}

async fn up(mut args: UpArgs) -> anyhow::Result<ExitCode> {
    args.stack.use_env_file_variables();
    let mut spec =
        SystemSpec::new(std::env::current_exe().context("finding the faultline binary")?);
    spec.stack = args.stack.spec();
    let topology = parse_replicas(&args.replicas).map(|replicas| Topology {
        replicas,
        payments_fail_rate: Some(args.payments_fail_rate),
        payments_latency_ms: Some(args.payments_latency_ms),
        shipping_fail_rate: Some(args.shipping_fail_rate),
        products: Some(args.products),
        stock: Some(args.stock),
        rate_limit: Some(args.rate_limit),
        kafka_brokers: None,
        // `--tracing` and `--prometheus` (stack flags) already set them.
        tracing: None,
        // The flag is applied below.
        mtls: None,
        trace_sample_ratio: None,
        prometheus: None,
    });
    if let Err(message) = topology.and_then(|topology| topology.apply(&mut spec)) {
        eprintln!("error: {message}");
        return Ok(ExitCode::from(2));
    }
    spec.jwt_secret = args.jwt_secret;
    spec.gateway_tls = args.tls;
    spec.mtls = args.mtls;
    if let Some(url) = args.webhook_url {
        spec.extra_args.insert(
            ServiceKind::Notifications,
            vec!["--webhook-url".into(), url],
        );
    }
    if let Some(deadline) = args.saga_deadline {
        if let Err(error) = humantime::parse_duration(&deadline) {
            eprintln!("error: --saga-deadline {deadline:?}: {error}");
            return Ok(ExitCode::from(2));
        }
        spec.extra_args.insert(
            ServiceKind::Orders,
            vec!["--saga-deadline".into(), deadline],
        );
    }
    let started = std::time::Instant::now();
    let system = match System::start(spec).await {
        Ok(system) => system,
        Err(error) => {
            eprintln!("error: {error}");
            let code = match error {
                SystemError::Stack(ref stack) => super::stack::exit_code_for(stack),
                SystemError::Invalid(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            };
            return Ok(code);
        }
    };
    tracing::info!(
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "the system is up"
    );
    {
        let mut stdout = std::io::stdout().lock();
        if let Some(stack) = system.stack() {
            for line in stack.endpoints().env_lines() {
                writeln!(stdout, "{line}")?;
            }
        }
        writeln!(stdout, "GATEWAY_URL={}", system.gateway_url)?;
        if let Some(ca) = &system.gateway_ca_file {
            writeln!(stdout, "GATEWAY_CA_FILE={}", ca.display())?;
        }
        if let Some(mesh) = &system.mesh {
            let supervisor = faultline_system::platform::mesh::SUPERVISOR;
            writeln!(stdout, "MESH_CA_FILE={}", mesh.ca.display())?;
            writeln!(
                stdout,
                "MESH_CLIENT_CERT={}",
                mesh.cert(supervisor).display()
            )?;
            writeln!(stdout, "MESH_CLIENT_KEY={}", mesh.key(supervisor).display())?;
        }
        for (name, url, pid) in system.services() {
            writeln!(
                stdout,
                "{name}={url} pid={}",
                pid.map_or("-".to_string(), |p| p.to_string())
            )?;
        }
        stdout.flush()?;
    }
    tracing::info!("press Ctrl-C (or send SIGTERM) to stop");
    super::terminated().await;
    system.stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn seed(args: SeedArgs) -> anyhow::Result<ExitCode> {
    if args.products < 1 || args.stock < 0 {
        eprintln!("error: --products must be at least 1 and --stock at least 0");
        return Ok(ExitCode::from(2));
    }
    let pool = migrate::pool(&args.database_url, 2)?;
    let mut client = tokio::time::timeout(Duration::from_secs(10), pool.get())
        .await
        .context("connecting to the inventory database timed out")?
        .context("connecting to the inventory database")?;
    migrate::migrate(&mut client, inventory::NAME, inventory::MIGRATIONS).await?;
    drop(client);
    let created = inventory::seed(&pool, args.products, args.stock)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "created {created} products ({} requested), {} units each where new",
        args.products, args.stock
    );
    Ok(ExitCode::SUCCESS)
}
