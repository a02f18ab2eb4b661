//! The event log, webhooks and automations in SQLite. State-change events
//! are written by a trigger on `states` (`migrations.rs`), emitted ones by
//! the writer with the rest of a run's records; this file reads them, and
//! keeps webhooks (their HMAC keys sealed by the service), deliveries seen
//! (for dedupe: a key is taken once, atomically) and automations with the
//! recent matches of those that count.

use super::writer::timestamp;
use super::{SqliteStore, StoreError};
use crate::core::events::{Automation, EventFilter, EventRow, NewEvent, SealedWebhook, Webhook};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

/// The columns of an event, in the order [`event_row`] reads them.
pub(super) const EVENT_COLUMNS: &str = "seq, tenant, name, time, flow_run, task_run, flow, deployment, tags, payload";

fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    let tags: String = row.get(8)?;
    let payload: String = row.get(9)?;
    Ok(EventRow {
        seq: row.get(0)?,
        tenant: row.get(1)?,
        name: row.get(2)?,
        time: super::sqlite::time_column(row, "time")?,
        flow_run: row.get(4)?,
        task_run: row.get(5)?,
        flow: row.get(6)?,
        deployment: row.get(7)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
    })
}

fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|_| super::sqlite::bad_column(column, text))
}

/// Adds `now` to the recent matches `hits` (JSON times), dropping those
/// older than `window`; whether they reach `threshold` (then they are
/// cleared: the next firing needs as many new matches). The new list.
pub(super) fn count_hit(hits: &str, now: DateTime<Utc>, window: chrono::Duration, threshold: u32) -> (bool, String) {
    let mut times: Vec<DateTime<Utc>> = serde_json::from_str(hits).unwrap_or_default();
    times.retain(|t| *t > now - window);
    times.push(now);
    if times.len() >= threshold as usize {
        return (true, "[]".into());
    }
    (false, serde_json::to_string(&times).expect("times serialize"))
}

impl SqliteStore {
    /// A tenant's events, newest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ?1
                 AND (?2 IS NULL OR substr(name, 1, length(?2)) = ?2) AND (?3 IS NULL OR deployment = ?3)
                 AND (?4 IS NULL OR flow_run = ?4) AND (?5 IS NULL OR time >= ?5) AND (?6 IS NULL OR seq < ?6)
                 ORDER BY seq DESC LIMIT ?7"
            ))?
            .query_map(
                params![
                    filter.tenant,
                    filter.name_prefix,
                    filter.deployment,
                    filter.flow_run,
                    filter.since.map(timestamp),
                    filter.before,
                    filter.limit as i64
                ],
                event_row,
            )?
            .collect()
        })
    }

    /// Records an event that no run record carries (a webhook delivery); its `seq`.
    pub fn insert_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO events (tenant, name, time, flow_run, deployment, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                event.tenant,
                event.name,
                timestamp(event.time),
                event.flow_run,
                event.deployment,
                event.payload.to_string()
            ])?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Stores a new webhook with its sealed HMAC key.
    pub fn create_webhook(&self, hook: &Webhook, sealed: Option<&[u8]>) -> Result<(), StoreError> {
        let body = serde_json::to_string(hook).expect("a webhook serializes");
        self.write(|tx| {
            tx.execute(
                "INSERT INTO webhooks (id, tenant, body, sealed) VALUES (?1, ?2, ?3, ?4)",
                params![hook.id, hook.tenant, body, sealed],
            )
        })?;
        Ok(())
    }

    /// A webhook by id, whatever its tenant (ids are unguessable), with its sealed key.
    pub fn webhook(&self, id: &str) -> Result<Option<SealedWebhook>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT body, sealed FROM webhooks WHERE id = ?1")?
                .query_row([id], |row| Ok((json("webhooks.body", &row.get::<_, String>(0)?)?, row.get(1)?)))
                .optional()
        })
    }

    /// A tenant's webhooks, oldest first.
    pub fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT body FROM webhooks WHERE tenant = ?1 ORDER BY rowid")?
                .query_map([tenant], |row| json("webhooks.body", &row.get::<_, String>(0)?))?
                .collect()
        })
    }

    /// Deletes a tenant's webhook and its deliveries; false when it has none of that id.
    pub fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM webhook_deliveries WHERE tenant = ?1 AND hook = ?2", [tenant, id])?;
            Ok(tx.execute("DELETE FROM webhooks WHERE tenant = ?1 AND id = ?2", [tenant, id])? == 1)
        })
    }

    /// Takes delivery `key` of a hook; false when it was taken before (a redelivery).
    pub fn first_delivery(&self, tenant: &str, hook: &str, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (hook, key, tenant, time) VALUES (?1, ?2, ?3, ?4)",
                params![hook, key, tenant, timestamp(now)],
            )?;
            Ok(inserted == 1)
        })
    }

    /// Stores a new automation; false when its tenant has one of that name.
    pub fn create_automation(&self, automation: &Automation) -> Result<bool, StoreError> {
        let body = serde_json::to_string(automation).expect("an automation serializes");
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO automations (id, tenant, name, body) VALUES (?1, ?2, ?3, ?4)",
                params![automation.id, automation.tenant, automation.name, body],
            )?;
            Ok(inserted == 1)
        })
    }

    /// A tenant's automations by name.
    pub fn automations(&self, tenant: &str) -> Result<Vec<Automation>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT body FROM automations WHERE tenant = ?1 ORDER BY name")?
                .query_map([tenant], |row| json("automations.body", &row.get::<_, String>(0)?))?
                .collect()
        })
    }

    /// Deletes a tenant's automation by id or name; false when there is none.
    pub fn delete_automation(&self, tenant: &str, id_or_name: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM automations WHERE tenant = ?1 AND (id = ?2 OR name = ?2)",
                [tenant, id_or_name],
            )? > 0)
        })
    }

    /// Counts a match of automation `id` at `now`; true when it reaches
    /// `threshold` within `window` (and so fires: the count starts again).
    pub fn automation_hit(
        &self,
        id: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
        threshold: u32,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let hits: Option<String> =
                tx.query_row("SELECT hits FROM automations WHERE id = ?1", [id], |row| row.get(0)).optional()?;
            let Some(hits) = hits else { return Ok(false) };
            let (fires, hits) = count_hit(&hits, now, window, threshold);
            tx.execute("UPDATE automations SET hits = ?2 WHERE id = ?1", [id, &hits])?;
            Ok(fires)
        })
    }
}
