//! Connections to PostgreSQL from a synchronous trait.
//!
//! The `StateStore` trait is synchronous and is called from async handlers.
//! tokio-postgres splits a connection in two: a `Connection` future that owns
//! the socket, and a `Client` that only talks to it over channels. The
//! `Connection`s run on a small runtime of the store's own (on threads of its
//! own, so a busy server never starves them), and a caller waits for its
//! `Client` futures with [`wait`], which needs no runtime at all: it parks the
//! calling thread, and on a multi-threaded tokio runtime it first hands that
//! worker's other tasks to another thread (`block_in_place`). Nothing here
//! starts a runtime inside a runtime, so nothing panics where the sync
//! `postgres` crate would.

use crate::store::StoreError;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// How long a connection attempt may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections kept for queries; each is held for one call at a time.
pub const POOL_SIZE: usize = 8;

/// Runs `future` to completion on the calling thread, without a runtime.
pub fn wait<F: Future>(future: F) -> F::Output {
    let on_worker = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if on_worker { tokio::task::block_in_place(|| park_on(future)) } else { park_on(future) }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn park_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// The store's own runtime, on a thread that owns it, so it is never
/// dropped inside an async context (tokio forbids that).
pub struct IoRuntime {
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IoRuntime {
    /// Starts the runtime.
    pub fn start() -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start the PostgreSQL I/O threads: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-postgres-owner".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .map_err(|e| StoreError::Database(format!("cannot start the PostgreSQL I/O threads: {e}")))?;
        Ok(Self { handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Where connections and the writer run.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `future` on the runtime and waits for it from any thread.
    pub fn run<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> T {
        let (done, result) = tokio::sync::oneshot::channel();
        self.handle.spawn(async move {
            let _ = done.send(future.await);
        });
        wait(result).expect("the PostgreSQL runtime stopped while a call was waiting")
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A parsed `SLUICE_DATABASE_URL`, and how to name its server in errors
/// (never with its password).
#[derive(Clone)]
pub struct Target {
    config: Config,
    /// `host:port/database`, for messages.
    pub name: String,
}

impl Target {
    /// Parses a `postgres://` URL.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Database(format!(
                "SLUICE_DATABASE_URL must be a postgres:// (or postgresql://) URL, not `{}`; unset it to keep \
                 the state in the SQLite file in SLUICE_HOME",
                redact(url)
            )));
        }
        let mut config = Config::from_str(url).map_err(|e| {
            StoreError::Database(format!("SLUICE_DATABASE_URL `{}` is not a valid PostgreSQL URL: {e}", redact(url)))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("sluice");
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let host = if hosts.is_empty() { "localhost".to_string() } else { hosts.join(",") };
        let database = config.get_dbname().or(config.get_user()).unwrap_or("postgres").to_string();
        let name = format!("{host}:{port}/{database}");
        Ok(Self { config, name })
    }

    /// Opens one connection, its socket driven on `runtime`.
    pub fn connect(&self, runtime: &IoRuntime) -> Result<Client, StoreError> {
        let target = self.clone();
        runtime.run(async move { target.connect_here().await })
    }

    /// Opens one connection, its socket driven on the current runtime.
    pub async fn connect_here(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| connect_error(&self.name, &e))?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the
            // pool notices a closed client and connects again.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Opens a connection, on the current runtime, whose notifications
    /// (`LISTEN`) go to `notifications`.
    pub async fn connect_listening(
        &self,
        notifications: tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>,
    ) -> Result<Client, StoreError> {
        let (client, mut connection) = self.config.connect(NoTls).await.map_err(|e| connect_error(&self.name, &e))?;
        tokio::spawn(async move {
            while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                if let tokio_postgres::AsyncMessage::Notification(note) = message
                    && notifications.send(note).is_err()
                {
                    break;
                }
            }
        });
        Ok(client)
    }
}

fn connect_error(name: &str, err: &tokio_postgres::Error) -> StoreError {
    let cause = std::error::Error::source(err).map(|s| format!(": {s}")).unwrap_or_default();
    StoreError::Database(format!(
        "cannot connect to the PostgreSQL server at {name} ({err}{cause}); check SLUICE_DATABASE_URL and that the \
         server is running and reachable"
    ))
}

/// A URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Up to `size` connections, opened as callers need them (a short CLI
/// command opens one), each lent to one caller at a time; a connection the
/// server closed is replaced when it is next lent.
pub struct Pool {
    state: Mutex<PoolState>,
    returned: Condvar,
    size: usize,
    target: Target,
    runtime: Arc<IoRuntime>,
}

struct PoolState {
    idle: Vec<Client>,
    /// Connections open or being opened, lent or idle.
    opened: usize,
}

/// A connection on loan; it goes back to the pool when dropped.
pub struct Lent<'a> {
    client: Option<Client>,
    pool: &'a Pool,
}

impl std::ops::Deref for Lent<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a lent client")
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a lent client")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.state.lock().expect("pool lock").idle.push(client);
            self.pool.returned.notify_one();
        }
    }
}

impl Pool {
    /// A pool of up to `size` connections to `target`, with one opened now
    /// (so a wrong URL fails here).
    pub fn open(target: Target, runtime: Arc<IoRuntime>, size: usize) -> Result<Self, StoreError> {
        let first = target.connect(&runtime)?;
        let state = PoolState { idle: vec![first], opened: 1 };
        Ok(Self { state: Mutex::new(state), returned: Condvar::new(), size, target, runtime })
    }

    /// Lends a connection: an idle one, a new one while fewer than `size`
    /// are open, else the first one to come back.
    pub fn get(&self) -> Result<Lent<'_>, StoreError> {
        let mut state = self.state.lock().expect("pool lock");
        let idle = loop {
            if let Some(client) = state.idle.pop() {
                break Some(client);
            }
            if state.opened < self.size {
                state.opened += 1;
                break None;
            }
            state = self.returned.wait(state).expect("pool lock");
        };
        drop(state);
        let client = match idle {
            Some(client) if !client.is_closed() => client,
            // Closed by the server (or never opened): a fresh one; on failure its place is given back.
            _ => match self.target.connect(&self.runtime) {
                Ok(client) => client,
                Err(err) => {
                    self.state.lock().expect("pool lock").opened -= 1;
                    self.returned.notify_one();
                    return Err(err);
                }
            },
        };
        Ok(Lent { client: Some(client), pool: self })
    }
}
