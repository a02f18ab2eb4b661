//! Secrets: set, list (names only), delete, and resolve a run's granted
//! secrets into environment variables. Values are sealed with
//! ChaCha20-Poly1305 under a key kept in `SLUICE_HOME/secrets.key` (created
//! 0600 on first use), bound to their tenant and name, and never logged or
//! returned by the API. Several servers sharing one database share one key:
//! each reads it from the file `SLUICE_SECRETS_KEY_FILE` names (a mounted
//! Kubernetes Secret, say), which is never created for them.

use super::{Service, ServiceError};
use crate::core::grants::{Grants, HostPattern, ResolvedGrants, check_secret_name};
use crate::core::tenant::{DEFAULT_TENANT, TenantPolicy};
use crate::store::{FlowRunRow, SecretInfo};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Largest secret value accepted.
pub const MAX_SECRET_BYTES: usize = 64 << 10;

const KEY_FILE: &str = "secrets.key";
/// Names a key file the operator provides, shared by every server.
pub const KEY_FILE_VARIABLE: &str = "SLUICE_SECRETS_KEY_FILE";
const NONCE_BYTES: usize = 12;

/// The key that seals secret values.
struct SecretKey(ChaCha20Poly1305);

impl SecretKey {
    /// Reads the key the operator named in [`KEY_FILE_VARIABLE`], or else
    /// the one in `home`, creating it (0600, random) the first time.
    fn load_or_create(home: &Path) -> Result<Self, ServiceError> {
        if let Some(path) = std::env::var_os(KEY_FILE_VARIABLE).filter(|p| !p.is_empty()) {
            let path = std::path::PathBuf::from(path);
            let bytes = std::fs::read(&path).map_err(|e| {
                ServiceError::Other(format!(
                    "cannot read the secrets key {} ({KEY_FILE_VARIABLE}): {e}; \
                     make one with `openssl rand -hex 32 > FILE` and give every server the same",
                    path.display()
                ))
            })?;
            let key = decode_key(&bytes).ok_or_else(|| {
                ServiceError::Other(format!(
                    "the secrets key {} ({KEY_FILE_VARIABLE}) must hold 32 bytes, raw or as 64 hex digits",
                    path.display()
                ))
            })?;
            return Ok(Self(ChaCha20Poly1305::new(Key::from_slice(&key))));
        }
        let path = home.join(KEY_FILE);
        let fail = |doing: &str, e: std::io::Error| {
            ServiceError::Other(format!("cannot {doing} the secrets key {}: {e}", path.display()))
        };
        if !path.exists() {
            std::fs::create_dir_all(home).map_err(|e| fail("create the folder of", e))?;
            let key: [u8; 32] = rand::random();
            // create_new: of two processes starting at once, one writes and both read it.
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(mut file) => file.write_all(&key).and_then(|()| file.sync_all()).map_err(|e| fail("write", e))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail("create", e)),
            }
        }
        let bytes = std::fs::read(&path).map_err(|e| fail("read", e))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            ServiceError::Other(format!(
                "the secrets key {} is not 32 bytes; restore it from a backup (without it the stored secrets cannot be read)",
                path.display()
            ))
        })?;
        Ok(Self(ChaCha20Poly1305::new(Key::from_slice(&key))))
    }

    fn seal(&self, tenant: &str, name: &str, value: &str) -> Result<Vec<u8>, ServiceError> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let aad = associated(tenant, name);
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: &aad })
            .map_err(|_| ServiceError::Other("sealing the secret failed".into()))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    fn open(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<String, ServiceError> {
        let unreadable = || {
            ServiceError::Other(format!(
                "secret `{name}` cannot be decrypted: it was sealed under another key than {KEY_FILE}; set it again"
            ))
        };
        if sealed.len() < NONCE_BYTES {
            return Err(unreadable());
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let aad = associated(tenant, name);
        let clear =
            self.0.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: &aad }).map_err(|_| unreadable())?;
        String::from_utf8(clear).map_err(|_| unreadable())
    }
}

/// A key file's 32 bytes: raw, or 64 hex digits (what `openssl rand -hex 32` writes).
fn decode_key(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(raw);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    hex::decode(text).ok()?.try_into().ok()
}

/// A sealed value is bound to its tenant and name: moved to another row, it does not open.
fn associated(tenant: &str, name: &str) -> Vec<u8> {
    [tenant.as_bytes(), b"\0", name.as_bytes()].concat()
}

impl Service {
    fn secret_key(&self) -> Result<SecretKey, ServiceError> {
        SecretKey::load_or_create(&self.home)
    }

    /// Sets a tenant's secret; true when it was new.
    pub fn set_secret(&self, tenant: &str, name: &str, value: &str) -> Result<bool, ServiceError> {
        check_secret_name(name).map_err(ServiceError::Invalid)?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(ServiceError::Invalid(format!(
                "secret `{name}` is {} bytes; a secret holds at most {MAX_SECRET_BYTES} bytes",
                value.len()
            )));
        }
        let sealed = self.secret_key()?.seal(tenant, name, value)?;
        Ok(self.store.put_secret(tenant, name, &sealed)?)
    }

    /// Seals a value that is no guest's secret (a webhook's HMAC key) under the secrets key, bound to `name`.
    pub(super) fn seal_value(&self, tenant: &str, name: &str, value: &str) -> Result<Vec<u8>, ServiceError> {
        self.secret_key()?.seal(tenant, name, value)
    }

    /// Opens what [`Self::seal_value`] sealed.
    pub(super) fn open_value(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<String, ServiceError> {
        self.secret_key()?.open(tenant, name, sealed)
    }

    /// A tenant's secrets, names and dates only.
    pub fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>, ServiceError> {
        Ok(self.store.secrets(tenant)?)
    }

    /// Deletes a tenant's secret.
    pub fn delete_secret(&self, tenant: &str, name: &str) -> Result<(), ServiceError> {
        if self.store.delete_secret(tenant, name)? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("no secret `{name}`; `sluice secret ls` lists them")))
        }
    }

    /// Refuses secret names the tenant has not set, naming the first.
    pub fn check_secrets_exist(&self, tenant: &str, names: &[String]) -> Result<(), ServiceError> {
        for name in names {
            if self.store.sealed_secret(tenant, name)?.is_none() {
                return Err(ServiceError::Invalid(format!(
                    "the deployment is granted secret `{name}`, which does not exist; set it first with \
                     `sluice secret set {name}`"
                )));
            }
        }
        Ok(())
    }

    /// Refuses grants beyond the tenant's policy: every allowed host must be
    /// within the hosts the policy lists. The operator's tenant (`default`)
    /// is the server's own and is not limited by a policy.
    pub fn check_grants_policy(
        &self,
        tenant: &str,
        grants: &Grants,
        policy: &TenantPolicy,
    ) -> Result<(), ServiceError> {
        if tenant == DEFAULT_TENANT {
            return Ok(());
        }
        for entry in &grants.allow_hosts {
            let pattern = HostPattern::parse(entry).map_err(ServiceError::Invalid)?;
            if !policy.covers(&pattern) {
                return Err(ServiceError::Invalid(format!(
                    "the deployment asks for outbound HTTP to `{entry}`, which tenant `{tenant}`'s policy does not allow \
                     (it allows {}); ask an admin to add the host to the tenant's policy",
                    if policy.allow_hosts.is_empty() { "no hosts".to_string() } else { policy.allow_hosts.join(", ") }
                )));
            }
        }
        Ok(())
    }

    /// What a run's deployment grants, its secrets decrypted, for the sandbox.
    pub fn grants_of(&self, run: &FlowRunRow) -> Result<ResolvedGrants, ServiceError> {
        let Some(full_name) = &run.deployment else { return Ok(ResolvedGrants::default()) };
        let tenant = run.tenant.as_str();
        let grants = self.deployment(tenant, full_name)?.grants;
        if grants.secrets.is_empty() {
            return Ok(ResolvedGrants { allow_hosts: grants.allow_hosts, env: Vec::new() });
        }
        let key = self.secret_key()?;
        let mut env = Vec::with_capacity(grants.secrets.len());
        for name in &grants.secrets {
            let sealed = self.store.sealed_secret(tenant, name)?.ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "deployment {full_name} is granted secret `{name}`, which no longer exists; set it again with \
                     `sluice secret set {name}`"
                ))
            })?;
            env.push((name.clone(), key.open(tenant, name, &sealed)?));
        }
        Ok(ResolvedGrants { allow_hosts: grants.allow_hosts, env })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provided_key_is_32_raw_bytes_or_64_hex_digits() {
        assert_eq!(decode_key(&[7; 32]), Some([7; 32]));
        assert_eq!(decode_key(format!("{}\n", "0a".repeat(32)).as_bytes()), Some([10; 32]));
        assert_eq!(decode_key(&[7; 31]), None);
        assert_eq!(decode_key("0a".repeat(31).as_bytes()), None);
        assert_eq!(decode_key(format!("{}zz", "0a".repeat(31)).as_bytes()), None, "not hex");
    }
}
