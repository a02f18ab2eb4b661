//! The store a service runs on, chosen by `SLUICE_DATABASE_URL`: SQLite in
//! `SLUICE_HOME` by default, PostgreSQL for a `postgres://` URL. What the
//! service needs beyond the `StateStore` contract (watching commits, its
//! own and other servers', secrets, waking workers on other servers) is
//! here, so callers never need to know which database they are on.

use super::postgres::PgStore;
use super::sessions::StoredSession;
use super::{Claim, FlowRunRow, RunsChanged, SecretInfo, SqlValue, SqliteStore, StateStore, StoreError};
use crate::core::events::{Automation, EventFilter, EventRow, NewEvent, SealedWebhook, Webhook};
use crate::core::record::{Barrier, Event, Recorder};
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, broadcast};

/// The variable that names the database.
pub const DATABASE_URL_VARIABLE: &str = "SLUICE_DATABASE_URL";

/// A state store with what the service needs around the contract.
pub trait Backend: StateStore {
    /// Resolves once everything recorded so far is committed.
    fn flush(&self) -> Barrier {
        Recorder::barrier(self).unwrap_or_else(|| Box::pin(std::future::ready(())))
    }
    /// Commits everything recorded so far and, in the same transaction,
    /// takes due runs for `claim`, at most `free` of them: `free` is counted
    /// down by those taken under the write lock, so claims sharing the count
    /// never take more between them. `None` when that cannot be done at
    /// once (the write connection is busy, or the database has no single
    /// writer to do it under: PostgreSQL); the caller then flushes as usual.
    fn try_flush_claiming(
        &self,
        _claim: &Claim<'_>,
        _free: &AtomicUsize,
    ) -> Option<Result<Vec<FlowRunRow>, StoreError>> {
        None
    }
    /// [`StateStore::claim_due`], at most `free` runs, counted down as in
    /// [`Backend::try_flush_claiming`].
    fn claim_due_within(&self, claim: &Claim<'_>, free: &AtomicUsize) -> Result<Vec<FlowRunRow>, StoreError> {
        let limit = free.load(Ordering::SeqCst).min(claim.limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let runs = self.claim_due(&Claim { limit, ..*claim })?;
        free.fetch_sub(runs.len(), Ordering::SeqCst);
        Ok(runs)
    }
    /// Committed events as they are committed (for `--watch` and the UI's live updates).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
    /// The runs other servers sharing the database change, as they announce
    /// them (`None` for a database only this server uses: SQLite).
    fn subscribe_other_servers(&self) -> Option<broadcast::Receiver<Arc<RunsChanged>>> {
        None
    }
    /// Stores a sealed secret value; true when it was new.
    fn put_secret(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<bool, StoreError>;
    /// A tenant's secrets, by name.
    fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>, StoreError>;
    /// The sealed value of a secret, if it exists.
    fn sealed_secret(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes a secret; true when it existed.
    fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;
    /// Tells waiting workers of other servers on the same database that work may be available.
    fn announce_work(&self) {}
    /// Wakes `waiter` when another server announces work.
    fn on_work_announced(&self, _waiter: Arc<Notify>) {}
    /// Runs a read-only listing query of the web UI, written in SQLite's
    /// dialect (see `listing`); each row's columns in order.
    fn listing(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError>;
    /// Where the state is, for messages.
    fn location(&self) -> String;
    /// Records `events` and commits them before returning; an error says they were not recorded.
    fn record_durably(&self, events: &[Event]) -> Result<(), StoreError>;
    /// Records a new web UI session (see `store/sessions.rs`).
    fn create_session(
        &self,
        hash: &[u8; 32],
        token: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The web UI session whose id hashes to `hash`, if there is one.
    fn session(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>, StoreError>;
    /// Ends one web UI session; true when it existed.
    fn delete_session(&self, hash: &[u8; 32]) -> Result<bool, StoreError>;
    /// Ends every web UI session a token signed in; how many there were.
    fn delete_sessions_of_token(&self, token: &str) -> Result<usize, StoreError>;
    /// A tenant's events, newest first (see `store/events.rs`).
    fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError>;
    /// Records an event no run record carries (a webhook delivery); its `seq`.
    fn insert_event(&self, event: &NewEvent) -> Result<i64, StoreError>;
    /// Stores a new webhook with its sealed HMAC key.
    fn create_webhook(&self, hook: &Webhook, sealed: Option<&[u8]>) -> Result<(), StoreError>;
    /// A webhook by id, whatever its tenant, with its sealed key.
    fn webhook(&self, id: &str) -> Result<Option<SealedWebhook>, StoreError>;
    /// A tenant's webhooks.
    fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError>;
    /// Deletes a tenant's webhook; false when it has none of that id.
    fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
    /// Takes delivery `key` of a hook; false when it was taken before.
    fn first_delivery(&self, tenant: &str, hook: &str, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Stores a new automation; false when its tenant has one of that name.
    fn create_automation(&self, automation: &Automation) -> Result<bool, StoreError>;
    /// A tenant's automations by name.
    fn automations(&self, tenant: &str) -> Result<Vec<Automation>, StoreError>;
    /// Deletes a tenant's automation by id or name; false when there is none.
    fn delete_automation(&self, tenant: &str, id_or_name: &str) -> Result<bool, StoreError>;
    /// Counts a match of an automation; true when it reaches `threshold` within `window`.
    fn automation_hit(
        &self,
        id: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
        threshold: u32,
    ) -> Result<bool, StoreError>;
}

/// The methods both stores have under the same names, delegated.
macro_rules! shared_methods {
    ($store:ty) => {
        fn record_durably(&self, events: &[Event]) -> Result<(), StoreError> {
            <$store>::record_durably(self, events)
        }
        fn create_session(
            &self,
            hash: &[u8; 32],
            token: &str,
            now: DateTime<Utc>,
            expires: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            <$store>::create_session(self, hash, token, now, expires)
        }
        fn session(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>, StoreError> {
            <$store>::session(self, hash)
        }
        fn delete_session(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
            <$store>::delete_session(self, hash)
        }
        fn delete_sessions_of_token(&self, token: &str) -> Result<usize, StoreError> {
            <$store>::delete_sessions_of_token(self, token)
        }
        fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
            <$store>::events(self, filter)
        }
        fn insert_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
            <$store>::insert_event(self, event)
        }
        fn create_webhook(&self, hook: &Webhook, sealed: Option<&[u8]>) -> Result<(), StoreError> {
            <$store>::create_webhook(self, hook, sealed)
        }
        fn webhook(&self, id: &str) -> Result<Option<SealedWebhook>, StoreError> {
            <$store>::webhook(self, id)
        }
        fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
            <$store>::webhooks(self, tenant)
        }
        fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
            <$store>::delete_webhook(self, tenant, id)
        }
        fn first_delivery(&self, tenant: &str, hook: &str, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
            <$store>::first_delivery(self, tenant, hook, key, now)
        }
        fn create_automation(&self, automation: &Automation) -> Result<bool, StoreError> {
            <$store>::create_automation(self, automation)
        }
        fn automations(&self, tenant: &str) -> Result<Vec<Automation>, StoreError> {
            <$store>::automations(self, tenant)
        }
        fn delete_automation(&self, tenant: &str, id_or_name: &str) -> Result<bool, StoreError> {
            <$store>::delete_automation(self, tenant, id_or_name)
        }
        fn automation_hit(
            &self,
            id: &str,
            now: DateTime<Utc>,
            window: chrono::Duration,
            threshold: u32,
        ) -> Result<bool, StoreError> {
            <$store>::automation_hit(self, id, now, window, threshold)
        }
    };
}

/// Opens the store `SLUICE_DATABASE_URL` names, or the SQLite file in `home`.
pub fn open(home: &Path) -> Result<Arc<dyn Backend>, StoreError> {
    match std::env::var(DATABASE_URL_VARIABLE).ok().filter(|url| !url.trim().is_empty()) {
        Some(url) => open_url(url.trim(), home),
        None => Ok(Arc::new(SqliteStore::open(&home.join("sluice.db"))?)),
    }
}

/// Opens the store at `url`: `postgres://` or `postgresql://` (an
/// `sqlite:` path is accepted too, for symmetry).
pub fn open_url(url: &str, home: &Path) -> Result<Arc<dyn Backend>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = if path.is_empty() { home.join("sluice.db") } else { path.into() };
        return Ok(Arc::new(SqliteStore::open(&path)?));
    }
    Ok(Arc::new(PgStore::open(url)?))
}

impl Backend for SqliteStore {
    fn try_flush_claiming(&self, claim: &Claim<'_>, free: &AtomicUsize) -> Option<Result<Vec<FlowRunRow>, StoreError>> {
        SqliteStore::try_flush_claiming(self, claim, free)
    }
    fn claim_due_within(&self, claim: &Claim<'_>, free: &AtomicUsize) -> Result<Vec<FlowRunRow>, StoreError> {
        SqliteStore::claim_due_within(self, claim, free)
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        SqliteStore::subscribe(self)
    }
    fn put_secret(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<bool, StoreError> {
        SqliteStore::put_secret(self, tenant, name, sealed)
    }
    fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>, StoreError> {
        SqliteStore::secrets(self, tenant)
    }
    fn sealed_secret(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        SqliteStore::sealed_secret(self, tenant, name)
    }
    fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        SqliteStore::delete_secret(self, tenant, name)
    }
    fn listing(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        super::listing::on_sqlite(self, sql, params)
    }
    fn location(&self) -> String {
        "SQLite".into()
    }
    shared_methods!(SqliteStore);
}

impl Backend for PgStore {
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        PgStore::subscribe(self)
    }
    fn subscribe_other_servers(&self) -> Option<broadcast::Receiver<Arc<RunsChanged>>> {
        Some(PgStore::subscribe_other_servers(self))
    }
    fn put_secret(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<bool, StoreError> {
        PgStore::put_secret(self, tenant, name, sealed)
    }
    fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>, StoreError> {
        PgStore::secrets(self, tenant)
    }
    fn sealed_secret(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        PgStore::sealed_secret(self, tenant, name)
    }
    fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        PgStore::delete_secret(self, tenant, name)
    }
    fn announce_work(&self) {
        PgStore::announce_work(self);
    }
    fn on_work_announced(&self, waiter: Arc<Notify>) {
        PgStore::on_work_announced(self, waiter);
    }
    fn listing(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        super::listing::on_postgres(self, sql, params)
    }
    fn location(&self) -> String {
        format!("PostgreSQL at {}", self.server())
    }
    shared_methods!(PgStore);
}
