//! SQL for tenants and their tokens, and for making work pools (a tenant
//! starts with its own `default` pool and queue).

use super::sqlite::{bad_column, optional_time, time_column};
use super::writer::timestamp;
use crate::core::pool::{DEFAULT_POOL, DEFAULT_QUEUE, WorkPool, WorkQueue};
use crate::core::tenant::{Role, Tenant, TokenInfo};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Creates a tenant with its default pool and queue; false when it exists.
pub(super) fn create_tenant(connection: &Connection, tenant: &Tenant) -> rusqlite::Result<bool> {
    let policy = serde_json::to_string(&tenant.policy).expect("a policy is JSON");
    let created = connection.execute(
        "INSERT OR IGNORE INTO tenants (name, policy, created) VALUES (?1, ?2, ?3)",
        params![tenant.name, policy, timestamp(tenant.created)],
    )?;
    if created == 1 {
        let pool = WorkPool {
            name: DEFAULT_POOL.to_string(),
            paused: false,
            description: Some("Runs of deployments that name no pool".into()),
            created: tenant.created,
        };
        create_pool(connection, &tenant.name, &pool)?;
    }
    Ok(created == 1)
}

/// Creates a pool with its `default` queue; false when the tenant has one of that name.
pub(super) fn create_pool(connection: &Connection, tenant: &str, pool: &WorkPool) -> rusqlite::Result<bool> {
    let created = connection.execute(
        "INSERT OR IGNORE INTO work_pools (tenant, name, paused, description, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant, pool.name, pool.paused, pool.description, timestamp(pool.created)],
    )?;
    if created == 1 {
        let queue = WorkQueue {
            pool: pool.name.clone(),
            name: DEFAULT_QUEUE.to_string(),
            tags: Vec::new(),
            priority: 1,
            concurrency_limit: None,
            paused: false,
            created: pool.created,
        };
        create_queue(connection, tenant, &queue)?;
    }
    Ok(created == 1)
}

/// Creates a queue; false when the pool has one of that name.
pub(super) fn create_queue(connection: &Connection, tenant: &str, queue: &WorkQueue) -> rusqlite::Result<bool> {
    let tags = serde_json::to_string(&queue.tags).expect("tags are JSON");
    let created = connection.execute(
        "INSERT OR IGNORE INTO work_queues (tenant, pool, name, tags, priority, concurrency_limit, paused, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            tenant,
            queue.pool,
            queue.name,
            tags,
            queue.priority,
            queue.concurrency_limit,
            queue.paused,
            timestamp(queue.created)
        ],
    )?;
    Ok(created == 1)
}

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    let policy: String = row.get("policy")?;
    Ok(Tenant {
        name: row.get("name")?,
        policy: serde_json::from_str(&policy).map_err(|_| bad_column("policy", &policy))?,
        created: time_column(row, "created")?,
    })
}

/// One tenant.
pub(super) fn tenant(connection: &Connection, name: &str) -> rusqlite::Result<Option<Tenant>> {
    connection.prepare_cached("SELECT * FROM tenants WHERE name = ?1")?.query_row([name], tenant_row).optional()
}

/// Every tenant.
pub(super) fn tenants(connection: &Connection) -> rusqlite::Result<Vec<Tenant>> {
    connection.prepare_cached("SELECT * FROM tenants ORDER BY name")?.query_map([], tenant_row)?.collect()
}

/// Tables whose rows carry their tenant, deleted with it (on both backends):
/// a table missing here outlives its tenant and passes to the next of that name.
pub(super) const TENANT_OWNED_TABLES: [&str; 12] = [
    "flow_runs",
    "deployments",
    "work_queues",
    "work_pools",
    "tenant_artifacts",
    "tokens",
    "secrets",
    "task_cache",
    "events",
    "webhooks",
    "webhook_deliveries",
    "automations",
];

/// Deletes a tenant and everything it owns (the shared artifact bytes stay); false when there was none.
pub(super) fn delete_tenant(connection: &Connection, name: &str) -> rusqlite::Result<bool> {
    let runs = "SELECT id FROM flow_runs WHERE tenant = ?1";
    // A task run's states are in its row (`history.rs`).
    connection.execute(&format!("DELETE FROM states WHERE run IN ({runs})"), [name])?;
    connection.execute(&format!("DELETE FROM logs WHERE flow_run IN ({runs})"), [name])?;
    connection.execute(&format!("DELETE FROM task_runs WHERE flow_run IN ({runs})"), [name])?;
    for table in TENANT_OWNED_TABLES {
        connection.execute(&format!("DELETE FROM {table} WHERE tenant = ?1"), [name])?;
    }
    Ok(connection.execute("DELETE FROM tenants WHERE name = ?1", [name])? == 1)
}

/// Stores a token's record and hash.
pub(super) fn create_token(connection: &Connection, info: &TokenInfo, hash: &[u8; 32]) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO tokens (id, tenant, role, name, hash, created, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            info.id,
            info.tenant,
            info.role.name(),
            info.name,
            hash.as_slice(),
            timestamp(info.created),
            info.expires.map(timestamp)
        ],
    )?;
    Ok(())
}

fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    let role: String = row.get("role")?;
    Ok(TokenInfo {
        id: row.get("id")?,
        tenant: row.get("tenant")?,
        role: Role::parse(&role).map_err(|_| bad_column("role", &role))?,
        name: row.get("name")?,
        created: time_column(row, "created")?,
        expires: optional_time(row, "expires")?,
        revoked: optional_time(row, "revoked")?,
    })
}

/// A token's record and hash.
pub(super) fn token(connection: &Connection, id: &str) -> rusqlite::Result<Option<(TokenInfo, Vec<u8>)>> {
    connection
        .prepare_cached("SELECT * FROM tokens WHERE id = ?1")?
        .query_row([id], |row| Ok((token_row(row)?, row.get("hash")?)))
        .optional()
}

/// The tokens of a tenant (of every tenant when `None`), newest first.
pub(super) fn tokens(connection: &Connection, tenant: Option<&str>) -> rusqlite::Result<Vec<TokenInfo>> {
    connection
        .prepare_cached("SELECT * FROM tokens WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, created DESC")?
        .query_map([tenant], token_row)?
        .collect()
}
