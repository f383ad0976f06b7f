//! The `herald` command line: subcommands and their execution.

use std::{collections::BTreeMap, io::Read as _, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use herald_core::{
    auth::PasswordHasher,
    broker::Broker,
    clock::{Clock, SystemClock},
    metrics::Metrics,
    new_account::{NewAccount, create_user},
    store::Store,
    user::{Email, Password, Role, UserName},
};

use crate::{
    app,
    config::{self, Flags, Loaded, SETTINGS},
    logging,
    telemetry::Telemetry,
};

/// Herald: self-hosted notification and real-time event delivery.
#[derive(Debug, Parser)]
#[command(name = "herald", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    /// TOML file of settings (`setting_name = value`); also HERALD_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: Flags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Herald in one process: migrations, then the HTTP API until SIGINT or SIGTERM.
    Serve,
    /// Run only the API: REST, gRPC and (on NATS) commands over request-reply, no workers (needs
    /// a networked broker; run relay, scheduler and sender beside it).
    Api,
    /// Run only the real-time gateway: Socket.io, /ws and /demo sessions, fed by the broker's
    /// fan-out (needs a networked broker; run several behind any load balancer).
    Gateway,
    /// Run only the outbox relay: committed events to the broker (needs a networked broker).
    Relay,
    /// Run only the delivery scheduler: due deliveries to the senders' queue, lapsed claims back
    /// to pending, periodic jobs (needs a networked broker).
    Scheduler,
    /// Run only a delivery sender: queued deliveries to their channels (needs a networked broker).
    Sender,
    /// Apply the store's migrations and exit.
    Migrate,
    /// Print every setting: name, env var, flag, default and effective value (secrets redacted).
    Config {
        /// Only validate: exit 0 when the configuration is usable, 2 naming each bad setting.
        #[arg(long)]
        check: bool,
    },
    /// Manage accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Collect garbage once.
    Gc {
        #[command(subcommand)]
        command: GcCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum GcCommand {
    /// Remove attachment files that no attachment references and that are older than the grace period.
    Files,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an account; with --admin, an administrator (how the first one is made).
    Create {
        #[arg(long)]
        email: String,
        /// The password (8 to 128 characters). Prefer --password-stdin: flags show up in `ps`.
        #[arg(long, required_unless_present = "password_stdin", conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Display name; defaults to the part of the email before `@`.
        #[arg(long)]
        name: Option<String>,
        /// Give the account the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// Change an account's role (refused for the only administrator's demotion).
    SetRole {
        #[command(flatten)]
        which: crate::accounts::Which,
        #[arg(long, value_enum)]
        role: crate::accounts::RoleArg,
    },
    /// Delete an account with everything that is theirs (not the only administrator).
    Delete {
        #[command(flatten)]
        which: crate::accounts::Which,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Before any HTTP client (the OTLP exporter's, the channels') is built.
    herald_egress::install_ring_provider();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let file = cli.config.clone().or_else(|| env.get("HERALD_CONFIG").map(PathBuf::from));
    let loaded = config::load(file.as_deref(), &env, &cli.flags);

    if let Command::Config { check } = cli.command {
        return Ok(print_config(loaded, check));
    }
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            eprint!("{err}");
            return Ok(ExitCode::from(2));
        }
    };
    let config = loaded.config;
    // Traces only from the long-running roles; one-shot commands have nothing to trace.
    let telemetry = match role_name(&cli.command) {
        Some(role) => Telemetry::from_env(&env, role, crate::app::egress(&config).open().clone())?,
        None => None,
    };
    logging::init(config.log_format, &config.log_level, telemetry.as_ref());
    for name in &loaded.unknown_env {
        tracing::warn!(variable = %name, "unknown HERALD_ variable ignored (see `herald config`)");
    }
    if telemetry.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    let result = execute(cli.command, &config).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    result
}

/// The role a command runs as, for the `herald.role` trace attribute; `None` for one-shot commands.
fn role_name(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Serve => "serve",
        Command::Api => "api",
        Command::Gateway => "gateway",
        Command::Relay => "relay",
        Command::Scheduler => "scheduler",
        Command::Sender => "sender",
        _ => return None,
    })
}

async fn execute(command: Command, config: &config::Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let stop = shutdown_signal();
            return serve_until_signal(stop, app::start(config).await?, config).await;
        }
        Command::Api => {
            needs_networked_broker(config, "api")?;
            let stop = shutdown_signal();
            return serve_until_signal(stop, app::start_api(config).await?, config).await;
        }
        Command::Gateway => {
            needs_networked_broker(config, "gateway")?;
            let stop = shutdown_signal();
            return serve_until_signal(stop, app::start_gateway(config).await?, config).await;
        }
        Command::Relay => {
            run_role(config, "relay", |store, broker, _, metrics, stop| {
                let relay = app::relay(config, store, broker, metrics);
                async move { relay.run(stop).await }
            })
            .await?;
        }
        Command::Scheduler => {
            // The orphan-file collector is one of its jobs: this role needs the files store (the
            // directory or bucket shared with the API processes that store uploads).
            let files = app::open_files(config).await?;
            run_role(config, "scheduler", |store, broker, clock, metrics, stop| {
                let scheduler = app::scheduler_with_collector(config, store, broker, clock, metrics, files);
                async move { scheduler.run(stop).await }
            })
            .await?;
        }
        Command::Sender => {
            run_role(config, "sender", |store, broker, clock, metrics, stop| {
                // Senders also route calendar reminders from the `notifications` queue.
                let router = app::reminder_router(store.clone(), broker.clone(), clock.clone(), metrics.clone());
                let sender = app::sender(config, store, broker, clock, metrics);
                async move {
                    tokio::join!(sender.run(stop.clone()), router.run(stop));
                }
            })
            .await?;
        }
        Command::Migrate => {
            let store = app::open_store(config).await?;
            store.close().await;
            tracing::info!(store = %config.store_url, "migrations applied");
        }
        Command::Users { command: UsersCommand::Create { email, password, password_stdin, name, admin } } => {
            let password = match (password, password_stdin) {
                (Some(password), _) => password,
                (None, _) => read_password_line()?,
            };
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let name = name.unwrap_or_else(|| email.as_str().split('@').next().unwrap_or_default().to_owned());
            let name = UserName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let password = Password::new_secret(password).map_err(|e| anyhow::anyhow!("--password: {e}"))?;
            let role = if admin { Role::Admin } else { Role::User };
            let store = app::open_store(config).await?;
            let account = NewAccount { email, name, password, role };
            let created = create_user(store.as_ref(), &PasswordHasher::default(), &SystemClock, account).await;
            store.close().await;
            let user = created
                .map_err(|e| anyhow::anyhow!("{}", e.public_detail().to_owned() + " (" + e.code().as_str() + ")"))?;
            println!("created {} {} ({})", user.role.as_str(), user.email, user.id);
        }
        Command::Users { command: UsersCommand::SetRole { which, role } } => {
            let store = app::open_store(config).await?;
            let done = crate::accounts::run_set_role(store.as_ref(), which, role).await;
            store.close().await;
            done?;
        }
        Command::Users { command: UsersCommand::Delete { which } } => {
            let store = app::open_store(config).await?;
            let done = crate::accounts::run_delete(store.as_ref(), which).await;
            store.close().await;
            done?;
        }
        Command::Gc { command: GcCommand::Files } => {
            let store = app::open_store(config).await?;
            let files = app::open_files(config).await?;
            let collector = app::collector(config, store.clone(), files, Default::default());
            let outcome = collector.tick().await.map_err(|e| anyhow::anyhow!("collecting files: {e}"));
            store.close().await;
            let outcome = outcome?;
            println!(
                "scanned {} files: removed {}, referenced {}, younger than the grace period {}, failed {}",
                outcome.scanned, outcome.removed, outcome.referenced, outcome.fresh, outcome.failed
            );
            if outcome.failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Config { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Serves until SIGINT or SIGTERM, then drains; a server that stops by itself is a failure.
async fn serve_until_signal(
    stop: impl std::future::Future<Output = ()>,
    mut running: app::Running,
    config: &config::Config,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        () = stop => tracing::info!("shutting down"),
        result = running.stopped() => return result.map(|()| ExitCode::FAILURE),
    }
    running.stop(config.shutdown_timeout.0).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Runs one background role on its own until SIGINT or SIGTERM, then lets it finish its pass.
async fn run_role<F, Fut>(config: &config::Config, role: &str, make: F) -> anyhow::Result<()>
where
    F: FnOnce(
        Arc<dyn Store>,
        Arc<dyn Broker>,
        Arc<dyn Clock>,
        Arc<Metrics>,
        tokio_util::sync::CancellationToken,
    ) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    needs_networked_broker(config, role)?;
    let store = app::open_store(config).await?;
    let metrics = Arc::new(Metrics::default());
    let broker = app::open_broker(config, &metrics).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    // The role's own /healthz, /readyz and /metrics.
    let admin = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding the admin port to {}", config.admin_addr))?;
    let admin_addr = admin.local_addr()?;
    let probes = herald_http::Probes {
        store: store.clone(),
        broker: broker.clone(),
        metrics: metrics.clone(),
        ready_timeout: std::time::Duration::from_secs(2),
        // A background role's work is its loops over the store and the broker: no transport.
        readiness: Default::default(),
    };
    let admin = tokio::spawn(herald_http::serve(
        admin,
        herald_http::admin_router(probes),
        config.server_limits(),
        shutdown.clone(),
    ));
    let stop = shutdown_signal();
    tracing::info!(role, %admin_addr, store = %config.store_url, broker = %config.broker_url, "{role} starting");
    let work = make(store.clone(), broker.clone(), Arc::new(SystemClock), metrics, shutdown.clone());
    let task = tokio::spawn(work);
    stop.await;
    shutdown.cancel();
    match tokio::time::timeout(config.shutdown_timeout.0, task).await {
        Ok(joined) => joined.with_context(|| format!("{role} task"))?,
        Err(_) => tracing::warn!(role, "did not finish its pass in time; stopped anyway"),
    }
    if let Ok(Err(err)) = admin.await {
        tracing::warn!(error = %err, "the admin server failed");
    }
    broker.close().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// A role of a split deployment refuses the in-process broker, which only `serve` can share.
fn needs_networked_broker(config: &config::Config, role: &str) -> anyhow::Result<()> {
    if config.broker_url == herald_broker::BrokerUrl::Memory {
        bail!(
            "herald {role} needs a broker other processes can reach: set HERALD_BROKER_URL to amqp://…, \
             nats://… or redis://… (memory:// only works inside `herald serve`)"
        );
    }
    Ok(())
}

fn read_password_line() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin().take(4096).read_to_string(&mut input).context("reading the password from stdin")?;
    let line = input.lines().next().unwrap_or_default().to_owned();
    if line.is_empty() {
        bail!("--password-stdin: standard input held no password");
    }
    Ok(line)
}

fn print_config(loaded: Result<Loaded, config::ConfigError>, check: bool) -> ExitCode {
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            eprint!("{err}");
            return ExitCode::from(2);
        }
    };
    for name in &loaded.unknown_env {
        eprintln!("warning: {name} is not a Herald setting and is ignored");
    }
    if check {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let mut out = String::new();
    for s in SETTINGS {
        let value = loaded.config.display(s.name);
        let shown = if s.secret && value.is_empty() { "(unset)".to_owned() } else { value };
        out += &format!("{} = {}    ({})\n", s.name, shown, loaded.sources[s.name]);
        out += &format!("    env {}, flag --{}, default {:?}\n", s.env, s.flag, s.default);
        out += &format!("    {}\n", s.doc);
    }
    // A closed pipe (`herald config | head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when it
/// is first awaited: a signal that comes once the process said it started is never the default
/// action (an exit without draining).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|err| tracing::error!(%err, "cannot listen for {name}")).ok()
    };
    let (mut terminate, mut interrupt) =
        (listen(SignalKind::terminate(), "SIGTERM"), listen(SignalKind::interrupt(), "SIGINT"));
    async move {
        tokio::select! {
            () = received(terminate.as_mut()) => {}
            () = received(interrupt.as_mut()) => {}
        }
    }
}

/// Resolves when `signal` is received; never without one.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => drop(signal.recv().await),
        None => std::future::pending::<()>().await,
    }
}
