//! Secrets in the state store: per tenant, by name, their values sealed by
//! the service before they get here (this file never sees a clear value).

use super::writer::timestamp;
use super::{SqliteStore, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// A secret as listed: its name and dates, never its value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SecretInfo {
    /// Its name (the guest's environment variable).
    pub name: String,
    /// When it was first set.
    pub created: DateTime<Utc>,
    /// When it was last set.
    pub updated: DateTime<Utc>,
}

fn time(text: String) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

impl SqliteStore {
    /// Stores a sealed secret value; true when it was new.
    pub fn put_secret(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<bool, StoreError> {
        let now = timestamp(Utc::now());
        self.write(|c| {
            let existed = c
                .query_row("SELECT 1 FROM secrets WHERE tenant = ?1 AND name = ?2", [tenant, name], |_| Ok(()))
                .optional()?
                .is_some();
            c.execute(
                "INSERT INTO secrets (tenant, name, sealed, created, updated) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (tenant, name) DO UPDATE SET sealed = excluded.sealed, updated = excluded.updated",
                params![tenant, name, sealed, now],
            )?;
            Ok(!existed)
        })
    }

    /// A tenant's secrets, by name.
    pub fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>, StoreError> {
        self.read(|c| {
            c.prepare("SELECT name, created, updated FROM secrets WHERE tenant = ?1 ORDER BY name")?
                .query_map([tenant], |row| {
                    Ok(SecretInfo { name: row.get(0)?, created: time(row.get(1)?)?, updated: time(row.get(2)?)? })
                })?
                .collect()
        })
    }

    /// The sealed value of a secret, if it exists.
    pub fn sealed_secret(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            c.query_row("SELECT sealed FROM secrets WHERE tenant = ?1 AND name = ?2", [tenant, name], |row| row.get(0))
                .optional()
        })
    }

    /// Deletes a secret; true when it existed.
    pub fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.write(|c| c.execute("DELETE FROM secrets WHERE tenant = ?1 AND name = ?2", [tenant, name])).map(|n| n > 0)
    }
}
