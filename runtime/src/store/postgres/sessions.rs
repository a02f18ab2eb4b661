//! Web UI sessions on PostgreSQL, as `store/sessions.rs` keeps them on
//! SQLite: the sha256 of the id, the token that signed in, and the end.

use super::PgStore;
use super::rows;
use crate::store::StoreError;
use crate::store::sessions::StoredSession;
use crate::store::writer::timestamp;
use chrono::{DateTime, Utc};

impl PgStore {
    /// Records a new session; sessions already past their end are dropped on the way.
    pub fn create_session(
        &self,
        hash: &[u8; 32],
        token: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (now, expires) = (timestamp(now), timestamp(expires));
        self.read(async |c| {
            c.execute("DELETE FROM ui_sessions WHERE expires <= $1", &[&now]).await?;
            c.execute(
                "INSERT INTO ui_sessions (hash, token, created, expires) VALUES ($1, $2, $3, $4)",
                &[&hash.as_slice(), &token, &now, &expires],
            )
            .await?;
            Ok(())
        })
    }

    /// The session whose id hashes to `hash`, if there is one.
    pub fn session(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>, StoreError> {
        self.read(async |c| {
            let row =
                c.query_opt("SELECT token, expires FROM ui_sessions WHERE hash = $1", &[&hash.as_slice()]).await?;
            match row {
                Some(row) => Ok(Some(StoredSession { token: row.get("token"), expires: rows::time(&row, "expires")? })),
                None => Ok(None),
            }
        })
    }

    /// Ends one session; true when it existed.
    pub fn delete_session(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
        self.read(async |c| Ok(c.execute("DELETE FROM ui_sessions WHERE hash = $1", &[&hash.as_slice()]).await? > 0))
    }

    /// Ends every session a token signed in; how many there were.
    pub fn delete_sessions_of_token(&self, token: &str) -> Result<usize, StoreError> {
        self.read(async |c| Ok(c.execute("DELETE FROM ui_sessions WHERE token = $1", &[&token]).await? as usize))
    }
}
