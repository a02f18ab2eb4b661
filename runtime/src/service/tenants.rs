//! Tenants, their policies and tokens: create, list, revoke, and turn a
//! presented token into a [`Principal`].

use super::deploy::check_name;
use super::{Service, ServiceError};
use crate::core::deployment::Limits;
use crate::core::tenant::{
    DEFAULT_TENANT, NewToken, Principal, Role, Tenant, TenantPolicy, TokenInfo, generate_token, hashes_equal,
    token_hash, token_id,
};
use chrono::{DateTime, Utc};

/// Why a presented token was refused. The message never says whether a
/// token of that id exists, only what the caller can do.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("this route needs a token: send `Authorization: Bearer <token>` (`sluice token create` makes one)")]
    Missing,
    /// The token is unknown, malformed, revoked or expired.
    #[error("the token is not valid{0}; ask an admin for a new one (`sluice token create`)")]
    Invalid(&'static str),
    /// The store could not be read.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// A token to make.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// Its tenant.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
    /// A label for people.
    pub name: Option<String>,
    /// When it stops working.
    pub expires: Option<DateTime<Utc>>,
}

impl Service {
    /// Creates a tenant (with its own `default` pool and queue).
    pub fn create_tenant(&self, name: &str, policy: TenantPolicy) -> Result<Tenant, ServiceError> {
        check_name("tenant", name)?;
        policy.validate().map_err(ServiceError::Invalid)?;
        let tenant = Tenant { name: name.to_string(), policy, created: Utc::now() };
        if !self.store.create_tenant(&tenant)? {
            return Err(ServiceError::Invalid(format!("a tenant named `{name}` exists already")));
        }
        Ok(tenant)
    }

    /// A tenant by name.
    pub fn tenant(&self, name: &str) -> Result<Tenant, ServiceError> {
        self.store
            .tenant(name)?
            .ok_or_else(|| ServiceError::NotFound(format!("no tenant `{name}`; `sluice tenant ls` lists them")))
    }

    /// Every tenant.
    pub fn tenants(&self) -> Result<Vec<Tenant>, ServiceError> {
        Ok(self.store.tenants()?)
    }

    /// Replaces a tenant's policy.
    pub fn set_tenant_policy(&self, name: &str, policy: TenantPolicy) -> Result<Tenant, ServiceError> {
        self.tenant(name)?;
        policy.validate().map_err(ServiceError::Invalid)?;
        self.store.set_tenant_policy(name, &policy)?;
        self.tenant(name)
    }

    /// Deletes a tenant, its tokens and everything it owns; refused for the
    /// default tenant and while any of its runs is running.
    pub fn delete_tenant(&self, name: &str) -> Result<(), ServiceError> {
        self.tenant(name)?;
        if name == DEFAULT_TENANT {
            return Err(ServiceError::Invalid("the default tenant cannot be deleted".into()));
        }
        // Every held run, however old: not only among the newest runs.
        let running = self.store.running_runs(name)?;
        if let Some(run) = running.first() {
            return Err(ServiceError::Invalid(format!(
                "tenant `{name}` has {} running flow run(s), such as `{run}`; cancel them first",
                running.len()
            )));
        }
        self.store.delete_tenant(name)?;
        Ok(())
    }

    /// Makes a token; its secret is in the answer and nowhere else.
    pub fn create_token(&self, request: TokenRequest) -> Result<NewToken, ServiceError> {
        self.tenant(&request.tenant)?;
        let now = Utc::now();
        if request.expires.is_some_and(|at| at <= now) {
            return Err(ServiceError::Invalid("the expiry is in the past; give a later time or duration".into()));
        }
        let (id, token) = generate_token();
        let info = TokenInfo {
            id,
            tenant: request.tenant,
            role: request.role,
            name: request.name,
            created: now,
            expires: request.expires,
            revoked: None,
        };
        self.store.create_token(&info, &token_hash(&token))?;
        Ok(NewToken { token, info })
    }

    /// The tokens of a tenant (of every tenant when `None`).
    pub fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, ServiceError> {
        Ok(self.store.tokens(tenant)?)
    }

    /// Revokes a token of `tenant` (of any tenant when `None`) at once.
    /// The operator's last admin token is kept: without it nobody could
    /// manage the server through the API.
    pub fn revoke_token(&self, tenant: Option<&str>, id: &str) -> Result<(), ServiceError> {
        let now = Utc::now();
        let operator_admins: Vec<TokenInfo> = self
            .store
            .tokens(Some(DEFAULT_TENANT))?
            .into_iter()
            .filter(|t| t.role == Role::Admin && t.revoked.is_none() && t.expires.is_none_or(|at| at > now))
            .collect();
        if operator_admins.len() == 1 && operator_admins[0].id == id && tenant.is_none_or(|t| t == DEFAULT_TENANT) {
            return Err(ServiceError::Invalid(format!(
                "token `{id}` is the operator's last admin token; revoking it would lock everyone out of the API. \
                 Create another first (`sluice token create --tenant {DEFAULT_TENANT} --role admin`)"
            )));
        }
        if self.store.revoke_token(tenant, id, now)? {
            // Its web UI sessions end with it (each is also checked against its token on use).
            self.store.delete_sessions_of_token(id)?;
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("no active token `{id}`; `sluice token ls` lists them")))
        }
    }

    /// Who a presented token speaks for.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let id = token_id(token).ok_or(AuthError::Invalid(" (it does not have the shape sluice_<id>_<secret>)"))?;
        let (info, stored) = self.store.token(id)?.ok_or(AuthError::Invalid(""))?;
        if !hashes_equal(&stored, &token_hash(token)) {
            return Err(AuthError::Invalid(""));
        }
        if info.revoked.is_some() {
            return Err(AuthError::Invalid(" (it was revoked)"));
        }
        if info.expires.is_some_and(|at| at <= Utc::now()) {
            return Err(AuthError::Invalid(" (it has expired)"));
        }
        Ok(Principal { tenant: info.tenant, role: info.role })
    }

    /// Refuses limits beyond what the tenant's policy allows.
    pub fn check_policy(&self, tenant: &str, limits: &Limits) -> Result<TenantPolicy, ServiceError> {
        let policy = self.tenant(tenant)?.policy;
        let over = |what: &str, asked: u64, most: Option<u64>| match most {
            Some(most) if asked > most => Err(ServiceError::Invalid(format!(
                "the deployment asks for {what} {asked}, but tenant `{tenant}` may have at most {most}; \
                 lower it or ask an admin to raise the tenant's policy"
            ))),
            _ => Ok(()),
        };
        if let Some(memory) = limits.memory_mib {
            over("memory (MiB)", memory.into(), policy.max_memory_mib.map(u64::from))?;
        }
        if let Some(timeout) = limits.timeout_seconds {
            over("a timeout (s)", timeout, policy.max_timeout_seconds)?;
        }
        Ok(policy)
    }
}
