//! The `tooljet-gitsync-operator` binary: `run` the operator, or print the `crd`s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{extract::State, http::StatusCode, routing::get, Router};
use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use tooljet_gitsync_operator::controller::{self, Context, Options};
use tooljet_gitsync_operator::leader;

#[derive(Parser)]
#[command(
    name = "tooljet-gitsync-operator",
    version,
    about = "ToolJet GitSync for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (both controllers).
    // Boxed: the flags outweigh the other variant (clippy::large_enum_variant).
    Run(Box<RunArgs>),
    /// Print both CustomResourceDefinitions as YAML.
    Crd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Where git mirrors and short-lived key files live.
    #[arg(long, default_value = "/var/lib/tooljet-gitsync")]
    data_dir: PathBuf,
    /// Elect a leader on a Lease so only one replica reconciles.
    #[arg(long)]
    leader_elect: bool,
    /// Lease name.
    #[arg(long, default_value = "tooljet-gitsync-operator")]
    lease_name: String,
    /// Lease namespace (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long the Lease stays valid without renewal; a standby takes over after it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    lease_duration: Duration,
    /// The leader stops reconciling this long after its last successful renewal; below
    /// --lease-duration, so it has stopped before a standby can take over.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    lease_renew_deadline: Duration,
    /// How often the leader renews and a standby retries; also each Lease request's timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    lease_retry_period: Duration,
    /// Only watch this namespace.
    #[arg(long)]
    watch_namespace: Option<String>,
    /// Only reconcile objects matching this label selector (sharding).
    #[arg(long)]
    label_selector: Option<String>,
    /// Let AppSyncs reference GitSyncConfigs in other namespaces.
    #[arg(long)]
    allow_cross_namespace_refs: bool,
    /// Accept file:// repository URLs (tests, local setups; never one inside --data-dir).
    /// Off: whoever may create a GitSyncConfig could reach any repository on the operator's
    /// filesystem.
    #[arg(long)]
    allow_file_urls: bool,
    /// Reconciles running at once per kind.
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
    /// Deadline of one git command (ls-remote, push); a fetch gets five times as long. A
    /// repository that stops answering fails after it instead of holding its worker.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    git_timeout: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Serve the webhook receiver (`POST /hook/<id>`, one path per GitSyncConfig with
    /// `spec.webhook`) on this address. Off by default.
    #[arg(long)]
    webhook_addr: Option<SocketAddr>,
    /// The receiver's public base URL (e.g. `https://gitsync-hooks.example.com`), to show each
    /// config's full webhook URL in its status.
    #[arg(long, requires = "webhook_addr")]
    webhook_url: Option<String>,
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match tooljet_gitsync_operator::api::crds_yaml() {
            Ok(docs) => {
                for (_, yaml) in docs {
                    print!("---\n{yaml}");
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot render CRDs: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            init_tracing(args.log_format);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(*args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "operator stopped");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

/// glibc gives threads their own malloc arenas; under a multi-threaded runtime that
/// fragmentation, not live data, dominated RSS (82 MiB against 58 MiB at 1,000 AppSyncs, see
/// `benches/scale.rs`). Two arenas, unless `MALLOC_ARENA_MAX` says otherwise.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: first thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// glibc returns freed memory to the kernel only from the top of each arena: after the first
/// passes (exports, pushes, status writes of every AppSync) most of the heap is free chunks
/// between live ones, which stay resident. `malloc_trim(0)` releases those pages too
/// (`madvise(MADV_DONTNEED)`). At 1,000 AppSyncs (`benches/scale.rs`) one trim took the RSS from
/// 78.9 to 59.7 MiB, and the idle RSS went from 68.3 to 61.6-64.3 MiB. A few milliseconds every
/// 30 s, on a runtime thread; live data is never touched.
fn spawn_malloc_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // SAFETY: malloc_trim only gives free pages of the allocator's own arenas back to
            // the kernel; it takes the arena locks like malloc itself and is thread-safe.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

struct Health {
    ready: AtomicBool,
    ctx: Arc<Context>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics(State(h): State<Arc<Health>>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.ctx.metrics.encode(),
    )
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutdown requested");
}

async fn wait_for_crds(client: &Client) -> Result<(), kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "gitsyncconfigs.gitsync.tooljet.io",
        "appsyncs.gitsync.tooljet.io",
    ] {
        loop {
            let established = api
                .get_opt(name)
                .await?
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            tracing::info!(
                crd = name,
                "waiting for the CRD to be installed and established"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    leader::validate_timing(
        args.lease_duration,
        args.lease_renew_deadline,
        args.lease_retry_period,
    )?;
    let client = Client::try_default().await?;
    let options = Options {
        data_dir: args.data_dir.clone(),
        watch_namespace: args.watch_namespace.clone(),
        label_selector: args.label_selector.clone(),
        allow_cross_namespace_refs: args.allow_cross_namespace_refs,
        allow_file_urls: args.allow_file_urls,
        concurrency: args.concurrency.max(1),
        git_timeout: args.git_timeout.max(Duration::from_secs(1)),
        webhook_enabled: args.webhook_addr.is_some(),
        webhook_url: args.webhook_url.clone(),
        ..Options::default()
    };
    let ctx = Arc::new(Context::new(client.clone(), options));
    spawn_malloc_trim();
    let health = Arc::new(Health {
        ready: AtomicBool::new(false),
        ctx: ctx.clone(),
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health.clone());
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    tracing::info!(addr = %args.http_addr, "serving /metrics, /healthz, /readyz");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await;
    });
    let hooks = match args.webhook_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(addr = %addr, "serving the webhook receiver");
            let mut stop = stop_rx.clone();
            let ctx = ctx.clone();
            Some(tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) =
                    tooljet_gitsync_operator::webhook::serve(listener, ctx, stopped).await
                {
                    tracing::error!(error = %e, "the webhook receiver stopped");
                }
            }))
        }
        None => None,
    };
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signal_tx.send(true);
    });

    wait_for_crds(&client).await?;
    let lease = args.leader_elect.then(|| leader::LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity: std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id())),
        duration: args.lease_duration,
        renew_deadline: args.lease_renew_deadline,
        renew_every: args.lease_retry_period,
    });
    let lost = match &lease {
        Some(cfg) => match lead(&client, cfg, ctx, &stop_tx, &stop_rx, &health).await {
            Some(lost) => lost,
            None => {
                let _ = server.await;
                if let Some(h) = hooks {
                    let _ = h.await;
                }
                return Ok(());
            }
        },
        None => {
            health.ready.store(true, Ordering::Relaxed);
            run_controllers(ctx, &stop_rx).await;
            false
        }
    };
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(h) = hooks {
        let _ = h.await;
    }
    if lost {
        return Err("leadership lost".into());
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs the controllers until a stop is signalled.
async fn run_controllers(ctx: Arc<Context>, stop: &tokio::sync::watch::Receiver<bool>) {
    let mut stop = stop.clone();
    controller::run(ctx, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await;
}

/// Waits for the Lease, then runs the controllers while holding it. `None`: stopped before
/// becoming leader; otherwise whether leadership was lost (rather than given up on stop).
/// Renewal keeps running during a graceful stop and ends before the Lease is released. On a
/// lost lease, reconciles still running when the Lease may expire for others are dropped.
async fn lead(
    client: &kube::Client,
    cfg: &leader::LeaseConfig,
    ctx: Arc<Context>,
    stop_tx: &tokio::sync::watch::Sender<bool>,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
    health: &Health,
) -> Option<bool> {
    let mut wait_stop = stop_rx.clone();
    let acquired = tokio::select! {
        at = leader::acquire(client, cfg) => at,
        _ = wait_stop.wait_for(|s| *s) => return None,
    };
    health.ready.store(true, Ordering::Relaxed);
    let controllers = run_controllers(ctx, stop_rx);
    tokio::pin!(controllers);
    // Its own task, so a busy controller cannot delay renewals.
    let (c, held) = (client.clone(), cfg.clone());
    let mut renewer = tokio::spawn(async move { leader::hold(&c, &held, acquired).await });
    let expires = tokio::select! {
        _ = &mut controllers => {
            renewer.abort();
            // Gone before the release, so no renewal can take the Lease back.
            let _ = (&mut renewer).await;
            leader::release(client, cfg).await;
            return Some(false);
        }
        expires = &mut renewer => expires.unwrap_or_else(|_| tokio::time::Instant::now()),
    };
    health.ready.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    if tokio::time::timeout_at(expires, &mut controllers)
        .await
        .is_err()
    {
        tracing::error!("controllers did not stop before the lease could expire; abandoning them");
    }
    Some(true)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "tooljet-gitsync-operator".into())
}
