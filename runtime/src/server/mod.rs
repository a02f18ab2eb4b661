//! `sluice server`: the HTTP API, the scheduler, crash detection and (by
//! default) embedded workers, in one process over the embedded stores.

mod api;
mod automations;
mod dispatch;
mod openapi;
mod ui;
mod wakeups;

pub use api::router;
pub use dispatch::{Asked, ClaimedRun, Dispatch};

use crate::core::tenant::{DEFAULT_TENANT, Role};
use crate::service::{Service, TokenRequest};
use chrono::Utc;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Address to listen on.
    pub address: SocketAddr,
    /// Embedded workers (runs executed in this process at once).
    pub workers: usize,
    /// A worker silent this long has its runs marked `Crashed`.
    pub heartbeat_timeout: Duration,
    /// Where the first admin token is written (readable by its owner only).
    pub admin_token_file: PathBuf,
    /// Flow runs are deleted this long after they ended (`None`: kept for ever).
    pub keep_runs: Option<Duration>,
    /// Where `GET /metrics` is served (never on `address`: see `observe/endpoint.rs`); none when `None`.
    pub metrics_address: Option<SocketAddr>,
}

/// Serves until the process is stopped; prints the bound address first.
pub async fn serve(service: Service, options: ServerOptions) -> anyhow::Result<()> {
    let admin_token = first_admin_token(&service, &options.admin_token_file)?;
    let dispatch = Arc::new(Dispatch::new(Arc::new(service), options.heartbeat_timeout));
    let listener = tokio::net::TcpListener::bind(options.address).await?;
    let address = listener.local_addr()?;
    tokio::spawn(crate::observe::run_events::RunCounter::new(dispatch.service.store.clone()).run());
    let metrics_address = match options.metrics_address {
        Some(metrics_address) => {
            let (store, sandbox) = (dispatch.service.store.clone(), dispatch.service.sandbox.clone());
            let slots = crate::sandbox::engine::EngineSettings::default().pool_instances;
            let before = Arc::new(move || {
                crate::observe::queue_depth::refresh(store.as_ref());
                crate::observe::pool::refresh(sandbox.engine(), slots);
            });
            Some(crate::observe::endpoint::serve(metrics_address, Some(before)).await?)
        }
        None => None,
    };
    // Whoever started the server may have stopped reading its output: that
    // must not take the server down, so nothing here panics on a closed pipe.
    say(&format!("Sluice server listening on http://{address} (web UI at /, API under /api/v1)"));
    tracing::info!(%address, metrics = ?metrics_address, "server listening");
    if let Some(metrics_address) = metrics_address {
        say(&format!("Metrics at http://{metrics_address}/metrics"));
    }
    say(&admin_token);
    // Runs this server's previous process held are dead now: say so at once.
    match dispatch.crash_dead_embedded_runs() {
        Ok(crashed) => {
            for id in crashed {
                say(&format!("Flow run {id} was running in this server's previous process: it ended Crashed"));
            }
        }
        Err(err) => tracing::warn!("cannot look for runs of a previous server process: {err}"),
    }
    tokio::spawn(housekeeping(dispatch.clone(), options.keep_runs));
    tokio::spawn(automations::watch(dispatch.clone()));
    if options.workers > 0 {
        tokio::spawn(dispatch::embedded_worker(dispatch.clone(), options.workers));
    }
    let app = router(dispatch).layer(axum::middleware::from_fn(crate::observe::http::record));
    axum::serve(listener, app).await?;
    Ok(())
}

/// Prints a line on stdout, ignoring a closed or full pipe.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Makes sure an operator can get in: on first start (or when the file's
/// token no longer works) an admin token of the default tenant is made and
/// written to `file`, readable by its owner only. Says where it is.
fn first_admin_token(service: &Service, file: &Path) -> anyhow::Result<String> {
    let existing = std::fs::read_to_string(file).ok();
    if let Some(token) = existing.as_deref().map(str::trim)
        && service.authenticate(token).is_ok_and(|who| who.is_operator())
    {
        return Ok(format!("Admin token: in {} (log in with `sluice login --api URL --token …`)", file.display()));
    }
    let made = service.create_token(TokenRequest {
        tenant: DEFAULT_TENANT.to_string(),
        role: Role::Admin,
        name: Some("first admin (made by the server)".into()),
        expires: None,
    })?;
    crate::secret_file::write_private(file, format!("{}\n", made.token).as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write the admin token to {}: {e}", file.display()))?;
    Ok(format!(
        "Admin token: created and written to {} (mode 0600); log in with `sluice login --api URL --token $(cat {})`",
        file.display(),
        file.display()
    ))
}

/// The lease naming the one server that runs the scheduler and the crash detector.
const HOUSEKEEPING_LEASE: &str = "housekeeping";

/// How long the housekeeping lease lasts unrenewed: another server (or the
/// same one restarted) takes over within this, plus a tick, of the holder's death.
const HOUSEKEEPING_LEASE_TERM: Duration = Duration::from_secs(5);

/// The scheduler, the crash detector and retention, once a second, by
/// whichever of the servers on this database holds the housekeeping lease.
async fn housekeeping(dispatch: Arc<Dispatch>, keep_runs: Option<Duration>) {
    // Named down to the process: two servers sharing a home (and a database)
    // must not both think they hold it; a restarted one waits out at most a term.
    let me = format!(
        "server {} on {} in {}",
        std::process::id(),
        crate::service::hostname(),
        dispatch.service.home().display()
    );
    let term = chrono::Duration::from_std(HOUSEKEEPING_LEASE_TERM).expect("a short term");
    let mut leading = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Utc::now();
        let holds = match dispatch.service.store.hold_lease(HOUSEKEEPING_LEASE, &me, now, now + term) {
            Ok(holds) => holds,
            Err(err) => {
                tracing::warn!("housekeeping: cannot renew its lease: {err}");
                false
            }
        };
        if holds != leading {
            leading = holds;
            let role = if holds { "runs" } else { "no longer runs" };
            say(&format!("This server {role} the scheduler and crash detection."));
        }
        if !holds {
            continue;
        }
        match dispatch.service.schedule(now) {
            Ok(pass) => {
                for problem in pass.problems {
                    tracing::warn!("scheduler: {problem}");
                }
                if pass.created > 0 || pass.late > 0 || pass.resumed > 0 {
                    dispatch.work_available();
                }
            }
            Err(err) => tracing::error!("scheduler: {err}"),
        }
        if let Err(err) = dispatch.detect_crashes(now) {
            tracing::error!("crash detection: {err}");
        }
        if let Some(keep) = keep_runs {
            purge_expired(&dispatch, now, keep).await;
        }
    }
}

/// How long one tick may spend deleting old runs: a large backlog drains
/// over several ticks instead of holding up the scheduler.
const PURGE_TIME_PER_TICK: Duration = Duration::from_millis(250);

/// Deletes runs that ended more than `keep` before `now`, a bounded batch
/// per transaction, off the async threads, so runs being recorded in the
/// meantime wait for one batch at most.
async fn purge_expired(dispatch: &Arc<Dispatch>, now: chrono::DateTime<Utc>, keep: Duration) {
    let Ok(keep) = chrono::Duration::from_std(keep) else { return };
    let Some(cutoff) = now.checked_sub_signed(keep) else { return };
    let started = std::time::Instant::now();
    while started.elapsed() < PURGE_TIME_PER_TICK {
        let store = dispatch.service.store.clone();
        let batch = tokio::task::spawn_blocking(move || store.purge_ended(cutoff, crate::store::PURGE_BATCH)).await;
        match batch {
            Ok(Ok(deleted)) if deleted == crate::store::PURGE_BATCH => tokio::task::yield_now().await,
            Ok(Ok(_)) => return,
            Ok(Err(err)) => return tracing::warn!("retention: cannot delete old runs: {err}"),
            Err(err) => return tracing::warn!("retention: {err}"),
        }
    }
}
