//! Web UI sessions: signing in with a token starts a session whose random
//! id is all the browser keeps (never the token). A session is checked on
//! every request against the store and against its token, so it ends when
//! the user signs out, when it reaches its lifetime (or its token's expiry,
//! whichever is sooner), and when its token is revoked or its tenant deleted.

use super::Service;
use super::tenants::AuthError;
use crate::core::tenant::{Principal, token_id};
use crate::store::StoreError;
use chrono::{Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// How long a session lasts at most.
pub const SESSION_LIFETIME: Duration = Duration::hours(12);

/// A session just started: the id for the cookie, and who it speaks for.
pub struct NewSession {
    /// The session id (hex), to give the browser; only its hash is stored.
    pub id: String,
    /// Who signed in.
    pub principal: Principal,
}

/// What is stored of a session id: its sha256. Ids that are not 64 hex
/// digits hash too and simply match nothing.
fn session_hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Service {
    /// Signs in with `token`: a new session of at most [`SESSION_LIFETIME`].
    pub fn start_session(&self, token: &str) -> Result<NewSession, AuthError> {
        let principal = self.authenticate(token)?;
        let token_id = token_id(token).expect("an authenticated token has the token's shape");
        let (info, _) = self.store.token(token_id)?.ok_or(AuthError::Invalid(""))?;
        let now = Utc::now();
        let expires = info.expires.map_or(now + SESSION_LIFETIME, |at| at.min(now + SESSION_LIFETIME));
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        self.store.create_session(&session_hash(&id), token_id, now, expires)?;
        Ok(NewSession { id, principal })
    }

    /// Who the session `id` speaks for, if it is still valid; a session
    /// found ended (expired, its token revoked or gone) is removed.
    pub fn session(&self, id: &str) -> Result<Option<Principal>, StoreError> {
        let hash = session_hash(id);
        let Some(session) = self.store.session(&hash)? else { return Ok(None) };
        let now = Utc::now();
        let token = self.store.token(&session.token)?.map(|(info, _)| info);
        let valid = session.expires > now
            && token.as_ref().is_some_and(|t| t.revoked.is_none() && t.expires.is_none_or(|at| at > now));
        match token {
            Some(info) if valid => Ok(Some(Principal { tenant: info.tenant, role: info.role })),
            _ => {
                self.store.delete_session(&hash)?;
                Ok(None)
            }
        }
    }

    /// Signs the session `id` out; nothing happens for an unknown id.
    pub fn end_session(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete_session(&session_hash(id)).map(|_| ())
    }
}
