//! The event log, webhooks and automations on PostgreSQL: the same
//! contract as `store/events.rs`. Counting an automation's matches locks
//! its row (`FOR UPDATE`), so of several servers counting at once each
//! match is counted once and a firing happens once.

use super::{PgStore, rows};
use crate::core::events::{Automation, EventFilter, EventRow, NewEvent, SealedWebhook, Webhook};
use crate::store::StoreError;
use crate::store::events::{EVENT_COLUMNS, count_hit};
use crate::store::writer::timestamp;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

fn event_row(row: &Row) -> Result<EventRow, StoreError> {
    let tags: String = row.try_get("tags")?;
    let payload: String = row.try_get("payload")?;
    Ok(EventRow {
        seq: row.try_get("seq")?,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        time: rows::time(row, "time")?,
        flow_run: row.try_get("flow_run")?,
        task_run: row.try_get("task_run")?,
        flow: row.try_get("flow")?,
        deployment: row.try_get("deployment")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
    })
}

fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

impl PgStore {
    /// A tenant's events, newest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        let since = filter.since.map(timestamp);
        let limit = filter.limit as i64;
        self.read(async |c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = $1
                         AND ($2::text IS NULL OR left(name, length($2::text)) = $2::text)
                         AND ($3::text IS NULL OR deployment = $3::text) AND ($4::text IS NULL OR flow_run = $4::text)
                         AND ($5::text IS NULL OR time >= $5::text) AND ($6::bigint IS NULL OR seq < $6::bigint)
                         ORDER BY seq DESC LIMIT $7"
                    ),
                    &[
                        &filter.tenant,
                        &filter.name_prefix,
                        &filter.deployment,
                        &filter.flow_run,
                        &since,
                        &filter.before,
                        &limit,
                    ],
                )
                .await?;
            rows::all(rows, event_row)
        })
    }

    /// Records an event that no run record carries (a webhook delivery); its `seq`.
    pub fn insert_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        let time = timestamp(event.time);
        let payload = event.payload.to_string();
        self.transaction(async |tx| {
            let row = tx
                .query_one(
                    "INSERT INTO events (tenant, name, time, flow_run, deployment, payload)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
                    &[&event.tenant, &event.name, &time, &event.flow_run, &event.deployment, &payload],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
    }

    /// Stores a new webhook with its sealed HMAC key.
    pub fn create_webhook(&self, hook: &Webhook, sealed: Option<&[u8]>) -> Result<(), StoreError> {
        let body = serde_json::to_string(hook).expect("a webhook serializes");
        self.read(async |c| {
            c.execute(
                "INSERT INTO webhooks (id, tenant, body, sealed) VALUES ($1, $2, $3, $4)",
                &[&hook.id, &hook.tenant, &body, &sealed],
            )
            .await?;
            Ok(())
        })
    }

    /// A webhook by id, whatever its tenant (ids are unguessable), with its sealed key.
    pub fn webhook(&self, id: &str) -> Result<Option<SealedWebhook>, StoreError> {
        self.read(async |c| {
            let Some(row) = c.query_opt("SELECT body, sealed FROM webhooks WHERE id = $1", &[&id]).await? else {
                return Ok(None);
            };
            let body: String = row.try_get(0)?;
            Ok(Some((json("webhooks.body", &body)?, row.try_get(1)?)))
        })
    }

    /// A tenant's webhooks, oldest first.
    pub fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, StoreError> {
        self.read(async |c| {
            let rows = c.query("SELECT body FROM webhooks WHERE tenant = $1 ORDER BY body", &[&tenant]).await?;
            let mut hooks: Vec<Webhook> = rows::all(rows, |row| json("webhooks.body", &row.try_get::<_, String>(0)?))?;
            hooks.sort_by_key(|hook| hook.created);
            Ok(hooks)
        })
    }

    /// Deletes a tenant's webhook and its deliveries; false when it has none of that id.
    pub fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.transaction(async |tx| {
            tx.execute("DELETE FROM webhook_deliveries WHERE tenant = $1 AND hook = $2", &[&tenant, &id]).await?;
            Ok(tx.execute("DELETE FROM webhooks WHERE tenant = $1 AND id = $2", &[&tenant, &id]).await? == 1)
        })
    }

    /// Takes delivery `key` of a hook; false when it was taken before (a redelivery).
    pub fn first_delivery(&self, tenant: &str, hook: &str, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let now = timestamp(now);
        self.read(async |c| {
            let inserted = c
                .execute(
                    "INSERT INTO webhook_deliveries (hook, key, tenant, time) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&hook, &key, &tenant, &now],
                )
                .await?;
            Ok(inserted == 1)
        })
    }

    /// Stores a new automation; false when its tenant has one of that name.
    pub fn create_automation(&self, automation: &Automation) -> Result<bool, StoreError> {
        let body = serde_json::to_string(automation).expect("an automation serializes");
        self.read(async |c| {
            let inserted = c
                .execute(
                    "INSERT INTO automations (id, tenant, name, body) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&automation.id, &automation.tenant, &automation.name, &body],
                )
                .await?;
            Ok(inserted == 1)
        })
    }

    /// A tenant's automations by name.
    pub fn automations(&self, tenant: &str) -> Result<Vec<Automation>, StoreError> {
        self.read(async |c| {
            let rows = c.query("SELECT body FROM automations WHERE tenant = $1 ORDER BY name", &[&tenant]).await?;
            rows::all(rows, |row| json("automations.body", &row.try_get::<_, String>(0)?))
        })
    }

    /// Deletes a tenant's automation by id or name; false when there is none.
    pub fn delete_automation(&self, tenant: &str, id_or_name: &str) -> Result<bool, StoreError> {
        self.read(async |c| {
            let deleted = c
                .execute(
                    "DELETE FROM automations WHERE tenant = $1 AND (id = $2 OR name = $2)",
                    &[&tenant, &id_or_name],
                )
                .await?;
            Ok(deleted > 0)
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
        self.transaction(async |tx| {
            let Some(row) = tx.query_opt("SELECT hits FROM automations WHERE id = $1 FOR UPDATE", &[&id]).await? else {
                return Ok(false);
            };
            let (fires, hits) = count_hit(&row.try_get::<_, String>(0)?, now, window, threshold);
            tx.execute("UPDATE automations SET hits = $2 WHERE id = $1", &[&id, &hits]).await?;
            Ok(fires)
        })
    }
}
