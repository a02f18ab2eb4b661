//! The `sluice` command line: parsing, and one module per command.

mod backend;
mod build;
mod closed_pipe;
mod console;
mod context;
mod deploy;
mod deployment;
mod events;
mod exec;
mod flow_run;
mod home;
mod inspect;
mod pools;
mod profile;
mod push;
mod remote_watch;
mod run;
mod secret;
mod serve;
mod serve_remote;
mod server;
mod shared_args;
mod starter;
mod tenants;
mod terminal;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Sluice: run flows compiled to WebAssembly components, every task in its own sandbox.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Builds a component from a Python flow module (componentize-py, installed on first use).
    Build(build::BuildArgs),
    /// Runs one flow of a component locally, with no server.
    Exec(exec::ExecArgs),
    /// Shows what a component declares: flows, parameter schemas, tasks and their policies, imports.
    Inspect(inspect::InspectArgs),
    /// Stores a component in the artifact store under its sha256 and prints the digest.
    Push(push::PushArgs),
    /// Pushed artifacts.
    #[command(subcommand)]
    Artifact(push::ArtifactCommand),
    /// Creates or updates a deployment (flow/name), from flags or from sluice.yaml with --all.
    Deploy(Box<deploy::DeployArgs>),
    /// Writes a commented starter sluice.yaml.
    Init(deploy::InitArgs),
    /// Deployments: ls, inspect, pause, resume, delete.
    #[command(subcommand)]
    Deployment(deployment::DeploymentCommand),
    /// Creates a flow run of a deployment and, with no server, runs it here.
    Run(run::RunArgs),
    /// Deploys one flow (here, or to the configured server) and runs its runs in this process until
    /// stopped (like Prefect's flow.serve).
    Serve(Box<serve::ServeArgs>),
    /// Serves the HTTP API with the scheduler and an embedded worker.
    Server(server::ServerArgs),
    /// Takes flow runs from a server and runs them, on any host.
    Worker(server::WorkerArgs),
    /// Tenants (the operator's): create, ls, update, delete.
    #[command(subcommand)]
    Tenant(tenants::TenantCommand),
    /// API tokens: create (shown once), ls, revoke.
    #[command(subcommand)]
    Token(tenants::TokenCommand),
    /// Saves a server URL and token: later commands go to that server.
    Login(profile::LoginArgs),
    /// Forgets the saved server.
    Logout,
    /// Work pools: create, ls, inspect, pause, resume, delete.
    #[command(subcommand, name = "work-pool")]
    WorkPool(pools::PoolCommand),
    /// Work queues: create, ls, pause, resume, delete.
    #[command(subcommand, name = "work-queue")]
    WorkQueue(pools::QueueCommand),
    /// Flow runs: ls, inspect, logs.
    #[command(subcommand, name = "flow-run")]
    FlowRun(flow_run::FlowRunCommand),
    /// Secrets granted to deployments as environment variables: set, ls, rm.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// The event log: ls.
    #[command(subcommand)]
    Event(events::EventCommand),
    /// Webhooks that start deployments: create, ls, rm.
    #[command(subcommand)]
    Webhook(events::WebhookCommand),
    /// Automations that act on events: create, ls, rm.
    #[command(subcommand)]
    Automation(events::AutomationCommand),
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// One JSON document on stdout, for programs.
    Json,
}

/// A failure of a command: the message for the user and the exit code.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// Bad input from the user (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: 2 }
    }

    /// Something failed while running (exit code 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: 1 }
    }

    /// The same error, its message prefixed with what was being done.
    pub fn context(self, doing: &str) -> Self {
        Self { message: format!("{doing}: {}", self.message), code: self.code }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(err: anyhow::Error) -> Self {
        // An unusable operator setting is bad input, like a bad flag.
        if err.downcast_ref::<crate::sandbox::egress::TlsConfigError>().is_some() {
            return Self::usage(format!("{err:#}"));
        }
        Self::failure(format!("{err:#}"))
    }
}

/// Reads a component file, naming it in the error.
/// Reads a component file, refusing one larger than any store accepts
/// before reading (or uploading) a byte of it.
pub fn read_component(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    let unreadable = |e: std::io::Error| CliError::usage(format!("cannot read `{}`: {e}", path.display()));
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    let limit = crate::service::MAX_ARTIFACT_BYTES as u64;
    if size > limit {
        return Err(CliError::usage(format!(
            "`{}` is {} MiB; components are limited to {} MiB (servers refuse larger uploads)",
            path.display(),
            size.div_ceil(1 << 20),
            limit >> 20
        )));
    }
    std::fs::read(path).map_err(unreadable)
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Server(_) | Command::Worker(_) | Command::Serve(_)) {
        closed_pipe::exit_quietly_on_closed_stdout();
    }
    let logs = match &cli.command {
        Command::Server(args) => crate::observe::host_logs::init(args.log_format, true),
        Command::Worker(args) => crate::observe::host_logs::init(args.log_format, true),
        Command::Serve(_) => crate::observe::host_logs::init(Default::default(), true),
        _ => crate::observe::host_logs::init(Default::default(), false),
    };
    if let Err(problem) = logs {
        eprintln!("error: {problem}");
        return ExitCode::from(2);
    }
    // Before any TLS: two crypto providers are compiled in, so rustls cannot choose one by itself.
    crate::sandbox::egress::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Build(args) => build::run(args),
            Command::Exec(args) => exec::run(args).await,
            Command::Inspect(args) => inspect::run(args).await,
            Command::Push(args) => push::push(args).await,
            Command::Artifact(command) => push::artifact(command).await,
            Command::Deploy(args) => deploy::run(*args).await,
            Command::Init(args) => deploy::init(args),
            Command::Deployment(command) => deployment::run(command).await,
            Command::Run(args) => run::run(args).await,
            Command::FlowRun(command) => flow_run::run(command).await,
            Command::Serve(args) => serve::run(*args).await,
            Command::WorkPool(command) => pools::pool(command).await,
            Command::Login(args) => profile::login(args).await,
            Command::Logout => profile::logout(),
            Command::Tenant(command) => tenants::tenant(command).await,
            Command::Token(command) => tenants::token(command).await,
            Command::WorkQueue(command) => pools::queue(command).await,
            Command::Server(args) => server::server(args).await,
            Command::Worker(args) => server::worker(args).await,
            Command::Secret(command) => secret::run(command).await,
            Command::Event(command) => events::event(command).await,
            Command::Webhook(command) => events::webhook(command).await,
            Command::Automation(command) => events::automation(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}
