//! The state store on PostgreSQL, chosen with `SLUICE_DATABASE_URL`: the
//! same contract as SQLite (the store suite runs over both), for several
//! servers sharing one database.
//!
//! The trait stays synchronous. Its calls block their caller for a round
//! trip or two on a pooled connection (see `conn` for why this neither
//! panics nor stalls a tokio worker), while recording, the hot path, is
//! queued and committed by a background task in groups (`writer`).
//! Workers claim with `FOR UPDATE SKIP LOCKED` (`claim`), and a commit that
//! makes work available wakes idle workers on every server (`notify`),
//! which also tells the other servers' web UI streams which runs changed.

mod claim;
mod conn;
mod events;
mod notify;
mod queries;
mod retention;
mod rows;
mod schema;
mod sessions;
mod writer;

#[cfg(test)]
mod tests;

use crate::core::record::{Barrier, Event, Recorder, ResultCache};
use crate::runner::MemoryCache;
use crate::store::changes::RunsChanged;
use crate::store::writer::{Write, timestamp};
use crate::store::{SecretInfo, StoreError};
use chrono::{DateTime, Utc};
use conn::{IoRuntime, Pool, Target, wait};
use notify::{Listening, Waiters};
use std::sync::Arc;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_postgres::{Client, Transaction};
use writer::PgWriter;

pub(super) use schema::refuse_newer;

/// The state store on a PostgreSQL database.
pub struct PgStore {
    writer: PgWriter,
    pool: Pool,
    waiters: Arc<Waiters>,
    /// What other servers say they changed.
    changes: broadcast::Sender<Arc<RunsChanged>>,
    // Results put but maybe not yet committed, so the next task sees them.
    recent_cache: MemoryCache,
    /// Where it is, for messages (`host:port/database`, never a password).
    server: String,
    // Dropped last: the connections and the writer run on it.
    _runtime: Arc<IoRuntime>,
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL), migrating
    /// it to this version's schema; refuses one migrated by a newer Sluice.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let target = Target::parse(url)?;
        let runtime = Arc::new(IoRuntime::start()?);
        let mut migrator = target.connect(&runtime)?;
        wait(schema::migrate(&mut migrator, &target.name))?;
        drop(migrator);
        let origin = uuid::Uuid::now_v7().to_string();
        let writer = PgWriter::start(&target, &runtime, origin.clone())?;
        let pool = Pool::open(target.clone(), runtime.clone(), conn::POOL_SIZE)?;
        let waiters = Arc::new(Waiters::default());
        let (changes, _) = broadcast::channel(1_024);
        let (announce, outgoing) = mpsc::channel(notify::OUTGOING);
        runtime.handle().spawn(notify::gather(writer.subscribe(), origin.clone(), announce));
        let listening = Listening { waiters: waiters.clone(), changes: changes.clone(), outgoing };
        runtime.handle().spawn(notify::listen(target.clone(), origin, listening));
        Ok(Self {
            writer,
            pool,
            waiters,
            changes,
            recent_cache: MemoryCache::bounded(10_000),
            server: target.name,
            _runtime: runtime,
        })
    }

    /// `host:port/database` of the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Commits everything recorded so far.
    pub async fn flush(&self) {
        self.writer.barrier().await;
    }

    /// Committed events as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.writer.subscribe()
    }

    /// The runs other servers sharing this database change, as they announce them.
    pub fn subscribe_other_servers(&self) -> broadcast::Receiver<Arc<RunsChanged>> {
        self.changes.subscribe()
    }

    /// Tells idle workers of every server sharing this database that work
    /// may be available, once everything recorded so far is committed.
    pub fn announce_work(&self) {
        self.writer.announce_work();
    }

    /// Wakes `waiter` (`notify_waiters`) whenever another server announces work.
    pub fn on_work_announced(&self, waiter: Arc<Notify>) {
        self.waiters.add(waiter);
    }

    /// Runs `work` on a pooled connection.
    pub(crate) fn read<T>(&self, work: impl AsyncFnOnce(&Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        wait(async {
            let client = self.pool.get()?;
            work(&client).await
        })
    }

    /// Runs `work` in a transaction, after every queued write, for writes
    /// whose outcome the caller needs.
    pub(crate) fn transaction<T>(
        &self,
        work: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        wait(async {
            self.writer.barrier().await;
            let mut client = self.pool.get()?;
            let tx = client.transaction().await?;
            let value = work(&tx).await?;
            tx.commit().await?;
            Ok(value)
        })
    }

    /// Records `events` and commits them before returning; an error says
    /// some were not (a batch of up to 500 writes commits whole or not at all).
    pub fn record_durably(&self, events: &[Event]) -> Result<(), StoreError> {
        let writes = self.writer.send_all(events.iter().map(|event| Write::Event(event.clone())));
        wait(async { Ok::<_, StoreError>(self.writer.commit_writes(writes).await) })?.map_err(StoreError::Database)
    }

    /// Stores a sealed secret value; true when it was new.
    pub fn put_secret(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<bool, StoreError> {
        let now = timestamp(Utc::now());
        self.read(async |c| {
            // xmax is 0 for a row this statement inserted, not for one it updated.
            let row = c
                .query_one(
                    "INSERT INTO secrets (tenant, name, sealed, created, updated) VALUES ($1, $2, $3, $4, $4)
                     ON CONFLICT (tenant, name) DO UPDATE SET sealed = excluded.sealed, updated = excluded.updated
                     RETURNING (xmax = 0) AS inserted",
                    &[&tenant, &name, &sealed, &now],
                )
                .await?;
            Ok(row.try_get("inserted")?)
        })
    }

    /// A tenant's secrets, by name.
    pub fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>, StoreError> {
        self.read(async |c| {
            let rows = c
                .query("SELECT name, created, updated FROM secrets WHERE tenant = $1 ORDER BY name", &[&tenant])
                .await?;
            rows::all(rows, |row| {
                Ok(SecretInfo {
                    name: row.try_get("name")?,
                    created: rows::time(row, "created")?,
                    updated: rows::time(row, "updated")?,
                })
            })
        })
    }

    /// The sealed value of a secret, if it exists.
    pub fn sealed_secret(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(async |c| {
            let row =
                c.query_opt("SELECT sealed FROM secrets WHERE tenant = $1 AND name = $2", &[&tenant, &name]).await?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    /// Deletes a secret; true when it existed.
    pub fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.read(async |c| {
            Ok(c.execute("DELETE FROM secrets WHERE tenant = $1 AND name = $2", &[&tenant, &name]).await? > 0)
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.writer.stop();
    }
}

impl Recorder for PgStore {
    fn record(&self, event: &Event) {
        self.record_owned(event.clone());
    }

    fn record_owned(&self, event: Event) {
        self.writer.send(Write::Event(event));
    }

    fn barrier(&self) -> Option<Barrier> {
        Some(Box::pin(self.writer.barrier()))
    }

    fn failure(&self) -> Option<String> {
        self.writer.failure()
    }
}

impl ResultCache for PgStore {
    fn get(&self, tenant: &str, key: &str, now: DateTime<Utc>) -> Option<Arc<str>> {
        if let Some(result) = self.recent_cache.get(tenant, key, now) {
            return Some(result);
        }
        let row = self
            .read(async |c| {
                Ok(c.query_opt(
                    "SELECT result, expires FROM task_cache WHERE tenant = $1 AND key = $2",
                    &[&tenant, &key],
                )
                .await?)
            })
            .ok()
            .flatten()?;
        let result: String = row.get("result");
        let expires = rows::optional_time(&row, "expires").ok()?;
        expires.is_none_or(|at| at > now).then(|| Arc::from(result.as_str()))
    }

    fn put(&self, tenant: &str, key: &str, result: Arc<str>, expires: Option<DateTime<Utc>>) {
        self.recent_cache.put(tenant, key, result.clone(), expires);
        self.writer.send(Write::CachePut { tenant: tenant.to_string(), key: key.to_string(), result, expires });
    }
}
