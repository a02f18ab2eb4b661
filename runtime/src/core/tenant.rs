//! Tenants, roles and API tokens: who may do what, and to whose objects.
//!
//! Every object (artifact reference, deployment, run, log, pool) belongs to
//! one tenant. A token belongs to a tenant and carries a role. The `default`
//! tenant is the operator's: its admins also manage the other tenants, and
//! the embedded single-machine path acts as its admin.

use crate::core::grants::HostPattern;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The operator's tenant, which owns everything made without a token.
pub const DEFAULT_TENANT: &str = "default";

/// Every token starts with this, so a leaked one is easy to find in logs and repositories.
pub const TOKEN_PREFIX: &str = "sluice_";

/// What a token may do; each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the tenant's objects.
    Viewer,
    /// Also starts and cancels runs, and takes runs as a worker.
    Runner,
    /// Also pushes artifacts and manages deployments.
    Deployer,
    /// Also manages pools, queues, secrets and the tenant's tokens.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Runner, Role::Deployer, Role::Admin];

    /// Its name as written in commands and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Runner => "runner",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// Reads a role's name.
    pub fn parse(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == text)
            .ok_or_else(|| format!("`{text}` is not a role; use one of admin, deployer, runner, viewer"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is asking: a tenant and the role its token gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The tenant whose objects it sees.
    pub tenant: String,
    /// What it may do there.
    pub role: Role,
}

impl Principal {
    /// The operator: the default tenant's admin (the embedded path, and the first token).
    pub fn operator() -> Self {
        Self { tenant: DEFAULT_TENANT.to_string(), role: Role::Admin }
    }

    /// Whether it manages the whole server (tenants, every tenant's runs for its workers).
    pub fn is_operator(&self) -> bool {
        self.tenant == DEFAULT_TENANT && self.role == Role::Admin
    }

    /// Refuses unless its role is at least `needed`.
    pub fn require(&self, needed: Role, action: &str) -> Result<(), Denied> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(Denied(format!(
                "a {} token may not {action}; it needs a {needed} token of tenant `{}`",
                self.role, self.tenant
            )))
        }
    }

    /// Refuses unless it is the operator.
    pub fn require_operator(&self, action: &str) -> Result<(), Denied> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Denied(format!("only an admin token of the `{DEFAULT_TENANT}` tenant may {action}")))
        }
    }
}

/// A refusal: the token is valid but may not do this.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// What an admin allows a tenant's deployments to ask for, and how much
/// the tenant may use at once. `None` keeps the server's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// Hosts its deployments may be granted outbound HTTP to, written as grants are: an entry
    /// covers the grants inside it (`*.example.com` its subdomains, `host:*` every port of it,
    /// `10.0.0.0/8:*` the addresses of that network; no port means 80 and 443).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Most memory per instance a deployment may ask for, in MiB.
    pub max_memory_mib: Option<u32>,
    /// Longest flow-run timeout a deployment may ask for, in seconds (at most 366 days).
    #[schema(maximum = 31_622_400)]
    pub max_timeout_seconds: Option<u64>,
    /// Flow runs of the tenant running at once; more wait their turn.
    pub max_concurrent_runs: Option<u32>,
}

impl TenantPolicy {
    /// Checks every host entry, so a typo is refused when the policy is set.
    pub fn validate(&self) -> Result<(), String> {
        self.allow_hosts.iter().try_for_each(|host| HostPattern::parse(host).map(|_| ()))
    }

    /// Whether a deployment's allowed-host entry is inside the hosts this policy allows.
    pub fn covers(&self, grant: &HostPattern) -> bool {
        self.allow_hosts.iter().filter_map(|entry| HostPattern::parse(entry).ok()).any(|entry| entry.covers(grant))
    }
}

/// A tenant as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Tenant {
    /// Its name: letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// What its deployments may ask for.
    pub policy: TenantPolicy,
    /// When it was created.
    pub created: DateTime<Utc>,
}

/// A token as listed: never its secret, which is shown once and kept only hashed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Its id: the public part of the token, used to list and revoke it.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
    /// A label for people.
    pub name: Option<String>,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked: Option<DateTime<Utc>>,
}

/// A freshly made token: the secret appears here and nowhere else.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    /// The token to send as `Authorization: Bearer …`.
    pub token: String,
    /// What is kept about it.
    pub info: TokenInfo,
}

/// A new random token and its id: `sluice_<id>_<secret>`, 128 bits of id-free secret.
pub fn generate_token() -> (String, String) {
    let mut bytes = [0u8; 22];
    rand::rng().fill_bytes(&mut bytes);
    let id = hex::encode(&bytes[..6]);
    let secret = hex::encode(&bytes[6..]);
    (id.clone(), format!("{TOKEN_PREFIX}{id}_{secret}"))
}

/// The id part of a token, if it has the token's shape.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() == 32 && rest.bytes().all(|b| b == b'_' || b.is_ascii_hexdigit())).then_some(id)
}

/// What is stored of a token: its sha256.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two hashes in time that does not depend on where they differ.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_from_viewer_to_admin() {
        let viewer = Principal { tenant: "acme".into(), role: Role::Viewer };
        assert!(viewer.require(Role::Viewer, "read").is_ok());
        let refused = viewer.require(Role::Deployer, "deploy").unwrap_err();
        assert!(refused.0.contains("viewer token may not deploy"), "{refused}");
        assert!(Principal { tenant: "acme".into(), role: Role::Admin }.require_operator("create tenants").is_err());
        assert!(Principal::operator().require_operator("create tenants").is_ok());
        assert_eq!(Role::parse("deployer").unwrap(), Role::Deployer);
        assert!(Role::parse("root").unwrap_err().contains("admin, deployer, runner, viewer"));
    }

    #[test]
    fn tokens_have_a_recognisable_shape_and_distinct_hashes() {
        let (id, token) = generate_token();
        assert_eq!(token_id(&token), Some(id.as_str()));
        let (_, other) = generate_token();
        assert_ne!(token, other);
        assert!(!hashes_equal(&token_hash(&token), &token_hash(&other)));
        assert!(hashes_equal(&token_hash(&token), &token_hash(&token)));
        for bad in ["", "sluice_", "Bearer x", "sluice_zzzzzzzzzzzz_0123", &token[..token.len() - 1]] {
            assert_eq!(token_id(bad), None, "{bad}");
        }
    }
}
