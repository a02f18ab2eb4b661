//! `sluice tenant create|ls|update|delete` and `sluice token create|ls|revoke`.
//! On this machine (no server) they act on the embedded store as its
//! operator; against a server, with the profile's or `SLUICE_API_TOKEN`'s rights.

use super::backend::{Backend, backend};
use super::{CliError, Output};
use crate::core::duration::parse_duration;
use crate::core::tenant::{DEFAULT_TENANT, NewToken, Role, Tenant, TenantPolicy, TokenInfo};
use crate::service::TokenRequest;
use chrono::{DateTime, Utc};
use std::process::ExitCode;

/// What a tenant's deployments may ask for.
#[derive(clap::Args, Debug, Clone)]
pub struct PolicyArgs {
    /// A host its deployments may be granted outbound HTTP to, written as for `deploy --allow-host`
    /// (`*.example.com` for subdomains, `:*` for every port, 10.0.0.0/8 for a network). Repeatable.
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Most memory per instance a deployment may ask for, in MiB.
    #[arg(long)]
    max_memory: Option<u32>,
    /// Longest flow-run timeout a deployment may ask for, e.g. 10m.
    #[arg(long)]
    max_timeout: Option<String>,
    /// Flow runs of the tenant running at once (default 100); more wait their turn.
    #[arg(long)]
    max_concurrent_runs: Option<u32>,
}

impl PolicyArgs {
    fn policy(&self) -> Result<TenantPolicy, CliError> {
        let max_timeout_seconds = self
            .max_timeout
            .as_deref()
            .map(|text| parse_duration(text).map(|d| d.as_secs().max(1)).map_err(CliError::usage))
            .transpose()?;
        Ok(TenantPolicy {
            allow_hosts: self.allow_hosts.clone(),
            max_memory_mib: self.max_memory,
            max_timeout_seconds,
            max_concurrent_runs: self.max_concurrent_runs,
        })
    }
}

/// `sluice tenant` subcommands (the operator's).
#[derive(clap::Subcommand, Debug)]
pub enum TenantCommand {
    /// Creates a tenant, with its own `default` work pool.
    Create {
        /// Its name: letters, digits, `_`, `-` and `.`.
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Lists tenants and their policies.
    Ls {
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Replaces a tenant's policy.
    Update {
        /// The tenant.
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Deletes a tenant with its tokens, deployments, runs and pools.
    Delete {
        /// The tenant.
        name: String,
    },
}

/// `sluice token` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Makes a token and prints it once; only its hash is kept.
    Create {
        /// Its tenant (default: the caller's; on this machine, `default`).
        #[arg(long)]
        tenant: Option<String>,
        /// What it may do: admin, deployer, runner or viewer.
        #[arg(long, default_value = "deployer", value_parser = Role::parse)]
        role: Role,
        /// A label for people.
        #[arg(long)]
        name: Option<String>,
        /// When it stops working: a duration from now (30d, 12h) or a time (2027-01-31T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Lists tokens (never their secrets).
    Ls {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Revokes a token at once.
    Revoke {
        /// Its id (the second part of `sluice_<id>_<secret>`, as `token ls` shows it).
        id: String,
    },
}

/// Runs `sluice tenant …`.
pub async fn tenant(command: TenantCommand) -> Result<ExitCode, CliError> {
    let backend = backend()?;
    match command {
        TenantCommand::Create { name, policy } => {
            let policy = policy.policy()?;
            let tenant = match &backend {
                Backend::Local(service) => service.create_tenant(&name, policy)?,
                Backend::Remote(api) => api.create_tenant(&name, &policy).await?,
            };
            println!("Created tenant '{}' with its own default work pool.", tenant.name);
            println!("Make it a token with `sluice token create --tenant {} --role admin`.", tenant.name);
        }
        TenantCommand::Ls { output } => {
            let tenants = match &backend {
                Backend::Local(service) => service.tenants()?,
                Backend::Remote(api) => api.tenants().await?,
            };
            print_tenants(&tenants, output);
        }
        TenantCommand::Update { name, policy } => {
            let policy = policy.policy()?;
            let tenant = match &backend {
                Backend::Local(service) => service.set_tenant_policy(&name, policy)?,
                Backend::Remote(api) => api.set_tenant_policy(&name, &policy).await?,
            };
            println!("Tenant '{}' now has policy {}", tenant.name, serde_json::to_string(&tenant.policy).unwrap());
        }
        TenantCommand::Delete { name } => {
            match &backend {
                Backend::Local(service) => service.delete_tenant(&name)?,
                Backend::Remote(api) => api.delete_tenant(&name).await?,
            }
            println!("Deleted tenant '{name}' and everything it owned.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sluice token …`.
pub async fn token(command: TokenCommand) -> Result<ExitCode, CliError> {
    let backend = backend()?;
    match command {
        TokenCommand::Create { tenant, role, name, expires, output } => {
            let expires = expires.as_deref().map(parse_expiry).transpose()?;
            let made: NewToken = match &backend {
                Backend::Local(service) => service.create_token(TokenRequest {
                    tenant: tenant.unwrap_or_else(|| DEFAULT_TENANT.to_string()),
                    role,
                    name,
                    expires,
                })?,
                Backend::Remote(api) => api.create_token(tenant.as_deref(), role, name.as_deref(), expires).await?,
            };
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&made).expect("a token is JSON")),
                Output::Text => {
                    println!("{}", made.token);
                    eprintln!(
                        "A {} token of tenant '{}' (id {}). It is shown this once: keep it secret.",
                        made.info.role, made.info.tenant, made.info.id
                    );
                }
            }
        }
        TokenCommand::Ls { tenant, output } => {
            let tokens = match &backend {
                Backend::Local(service) => service.tokens(tenant.as_deref())?,
                Backend::Remote(api) => api.tokens(tenant.as_deref()).await?,
            };
            print_tokens(&tokens, output);
        }
        TokenCommand::Revoke { id } => {
            match &backend {
                Backend::Local(service) => service.revoke_token(None, &id)?,
                Backend::Remote(api) => api.revoke_token(&id).await?,
            }
            println!("Revoked token {id}: it is refused from now on.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_expiry(text: &str) -> Result<DateTime<Utc>, CliError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let after = parse_duration(text).map_err(|e| {
        CliError::usage(format!("--expires: {e}; give a duration such as 30d or a time such as 2027-01-31T00:00:00Z"))
    })?;
    Ok(Utc::now() + chrono::Duration::from_std(after).map_err(|e| CliError::usage(format!("--expires: {e}")))?)
}

fn print_tenants(tenants: &[Tenant], output: Output) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(tenants).expect("tenants are JSON"));
        return;
    }
    println!("{:<20} {:<25} POLICY", "NAME", "CREATED");
    for tenant in tenants {
        let policy = serde_json::to_string(&tenant.policy).expect("a policy is JSON");
        println!("{:<20} {:<25} {policy}", tenant.name, tenant.created.format("%Y-%m-%d %H:%M:%S"));
    }
}

fn print_tokens(tokens: &[TokenInfo], output: Output) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(tokens).expect("tokens are JSON"));
        return;
    }
    println!("{:<14} {:<16} {:<9} {:<20} {:<10} NAME", "ID", "TENANT", "ROLE", "EXPIRES", "STATUS");
    let now = Utc::now();
    for token in tokens {
        let status = match (token.revoked, token.expires) {
            (Some(_), _) => "revoked",
            (None, Some(at)) if at <= now => "expired",
            _ => "active",
        };
        let expires = token.expires.map_or("never".to_string(), |at| at.format("%Y-%m-%d %H:%M").to_string());
        let name = token.name.as_deref().unwrap_or("");
        println!("{:<14} {:<16} {:<9} {expires:<20} {status:<10} {name}", token.id, token.tenant, token.role.name());
    }
}
