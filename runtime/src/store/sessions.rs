//! Web UI sessions in the state store: only the sha256 of a session id is
//! kept (a copy of the database signs nobody in), with the token that
//! signed in and when the session ends. Kept in the store rather than in
//! memory so a restart does not sign everyone out, and so a session can be
//! ended from anywhere that can write the store.

use super::writer::timestamp;
use super::{SqliteStore, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

/// A stored session: the token it stands for and when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    /// The id (public part) of the token that signed in.
    pub token: String,
    /// When the session stops working.
    pub expires: DateTime<Utc>,
}

impl SqliteStore {
    /// Records a new session; sessions already past their end are dropped on the way.
    pub fn create_session(
        &self,
        hash: &[u8; 32],
        token: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute("DELETE FROM ui_sessions WHERE expires <= ?1", [timestamp(now)])?;
            c.execute(
                "INSERT INTO ui_sessions (hash, token, created, expires) VALUES (?1, ?2, ?3, ?4)",
                params![hash.as_slice(), token, timestamp(now), timestamp(expires)],
            )?;
            Ok(())
        })
    }

    /// The session whose id hashes to `hash`, if there is one.
    pub fn session(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>, StoreError> {
        let found: Option<(String, String)> = self.read(|c| {
            c.prepare_cached("SELECT token, expires FROM ui_sessions WHERE hash = ?1")?
                .query_row([hash.as_slice()], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })?;
        let Some((token, expires)) = found else { return Ok(None) };
        let expires = DateTime::parse_from_rfc3339(&expires)
            .map_err(|e| StoreError::Corrupt(format!("a session's expiry `{expires}`: {e}")))?
            .with_timezone(&Utc);
        Ok(Some(StoredSession { token, expires }))
    }

    /// Ends one session; true when it existed.
    pub fn delete_session(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
        self.write(|c| c.execute("DELETE FROM ui_sessions WHERE hash = ?1", [hash.as_slice()])).map(|n| n > 0)
    }

    /// Ends every session a token signed in; how many there were.
    pub fn delete_sessions_of_token(&self, token: &str) -> Result<usize, StoreError> {
        self.write(|c| c.execute("DELETE FROM ui_sessions WHERE token = ?1", [token]))
    }
}
