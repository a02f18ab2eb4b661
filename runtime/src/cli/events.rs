//! `sluice event ls`, `sluice webhook create|ls|rm` and `sluice automation
//! create|ls|rm`: the event log, webhooks that start deployments, and
//! automations that act on events. Against a server (`sluice login`) or
//! the local store (the default tenant's).

use super::backend::{Backend, backend};
use super::{CliError, Output};
use crate::core::events::{Action, Trigger, parse_param_map};
use crate::core::tenant::DEFAULT_TENANT;
use crate::service::{AutomationRequest, EventQuery, WebhookRequest};
use chrono::{DateTime, Utc};
use std::process::ExitCode;

/// `sluice event` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum EventCommand {
    /// Lists events, newest first: state changes, emitted events, webhook deliveries, automation firings.
    Ls {
        /// Only names starting with this, such as `sluice.flow-run.` or `sluice.webhook.`.
        #[arg(long)]
        name: Option<String>,
        /// Only events of this deployment (flow/name).
        #[arg(long)]
        deployment: Option<String>,
        /// Only events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Only events older than this seq (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// `sluice webhook` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum WebhookCommand {
    /// Makes a webhook URL that starts a deployment with parameters from the JSON body.
    Create {
        /// The deployment it starts, flow/name.
        #[arg(long)]
        deployment: String,
        /// PARAM=PATH: a parameter taken from the body, such as `name=$.user.name` (repeatable).
        #[arg(long = "param-map")]
        param_map: Vec<String>,
        /// Read the HMAC secret from this environment variable (else one is generated and shown once).
        #[arg(long, conflicts_with = "unsigned")]
        secret_env: Option<String>,
        /// Accept unsigned deliveries (anyone who knows the URL can start runs).
        #[arg(long)]
        unsigned: bool,
        /// A header identifying a delivery, such as X-GitHub-Delivery: a redelivery starts nothing.
        #[arg(long, conflicts_with = "dedupe_field")]
        dedupe_header: Option<String>,
        /// A body path identifying a delivery, such as `$.id`.
        #[arg(long)]
        dedupe_field: Option<String>,
        /// At most this many deliveries, as N/min (or N/s, N/h).
        #[arg(long)]
        rate: Option<String>,
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Lists webhooks (never their secrets).
    Ls {
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Deletes a webhook.
    Rm {
        /// Its id.
        id: String,
    },
}

/// `sluice automation` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AutomationCommand {
    /// Makes an automation: when events match, run a deployment, pause or resume one, or cancel the run.
    Create {
        /// Its name.
        name: String,
        /// The event name it matches, or a prefix ending in `*` (such as `sluice.flow-run.Failed`).
        #[arg(long)]
        on: String,
        /// Only events of this deployment (flow/name).
        #[arg(long = "of")]
        of_deployment: Option<String>,
        /// Only events carrying this tag (repeatable: all of them).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Fire on the Nth match within --within.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// The window for --threshold, such as 10m.
        #[arg(long)]
        within: Option<String>,
        /// Run this deployment (flow/name).
        #[arg(long)]
        run: Option<String>,
        /// PARAM=PATH: a parameter of the run taken from the event, such as `who=$.payload.user`.
        #[arg(long = "param-map", requires = "run")]
        param_map: Vec<String>,
        /// Pause this deployment's schedule.
        #[arg(long)]
        pause: Option<String>,
        /// Resume this deployment's schedule.
        #[arg(long)]
        resume: Option<String>,
        /// Cancel the run the event is about.
        #[arg(long)]
        cancel: bool,
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Lists automations.
    Ls {
        /// text for people, json for programs.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Deletes an automation (by name or id).
    Rm {
        /// Its name or id.
        name: String,
    },
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
}

/// Runs `sluice event …`.
pub async fn event(command: EventCommand) -> Result<ExitCode, CliError> {
    let EventCommand::Ls { name, deployment, since, before, limit, output } = command;
    let query = EventQuery { name, deployment, flow_run: None, since, before, limit: Some(limit) };
    let events = match backend()? {
        Backend::Local(service) => service.events(DEFAULT_TENANT, query)?,
        Backend::Remote(api) => api.events(&query).await?,
    };
    if output == Output::Json {
        print_json(&events);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<8} {:<27} {:<34} {:<24} PAYLOAD", "SEQ", "TIME", "NAME", "DEPLOYMENT");
    for event in events {
        let time = event.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let deployment = event.deployment.as_deref().unwrap_or("-");
        println!("{:<8} {time:<27} {:<34} {deployment:<24} {}", event.seq, event.name, event.payload);
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `10/min` (or `/s`, `/h`) into deliveries a minute.
fn per_minute(rate: &str) -> Result<u32, CliError> {
    let bad = || CliError::usage(format!("rate `{rate}` is not N/min, N/s or N/h (such as 10/min)"));
    let (count, unit) = rate.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    match unit.trim() {
        "s" | "sec" | "second" => count.checked_mul(60).ok_or_else(bad),
        "m" | "min" | "minute" => Ok(count),
        "h" | "hour" => Ok(count.div_ceil(60)),
        _ => Err(bad()),
    }
}

/// Runs `sluice webhook …`.
pub async fn webhook(command: WebhookCommand) -> Result<ExitCode, CliError> {
    let backend = backend()?;
    match command {
        WebhookCommand::Create {
            deployment,
            param_map,
            secret_env,
            unsigned,
            dedupe_header,
            dedupe_field,
            rate,
            output,
        } => {
            let secret = match &secret_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    CliError::usage(format!("--secret-env names `{var}`, which is not set in the environment"))
                })?),
                None => None,
            };
            let request = WebhookRequest {
                deployment,
                param_map: parse_param_map(&param_map).map_err(CliError::usage)?,
                secret,
                unsigned,
                dedupe_header,
                dedupe_field,
                rate_per_minute: rate.as_deref().map(per_minute).transpose()?,
            };
            let (made, base) = match &backend {
                Backend::Local(service) => (service.create_webhook(DEFAULT_TENANT, request)?, String::new()),
                Backend::Remote(api) => (api.create_webhook(&request).await?, api.server_url().to_string()),
            };
            if output == Output::Json {
                print_json(&made);
                return Ok(ExitCode::SUCCESS);
            }
            println!("webhook {} starts {}", made.hook.id, made.hook.deployment);
            println!("URL: {base}{}", made.path);
            if let Some(secret) = &made.secret {
                println!("secret (shown once; sign bodies as X-Hub-Signature-256: sha256=HMAC-SHA256): {secret}");
            }
        }
        WebhookCommand::Ls { output } => {
            let hooks = match &backend {
                Backend::Local(service) => service.webhooks(DEFAULT_TENANT)?,
                Backend::Remote(api) => api.webhooks().await?,
            };
            if output == Output::Json {
                print_json(&hooks);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<34} {:<28} {:<7} MAP", "ID", "DEPLOYMENT", "SIGNED");
            for hook in hooks {
                let map = serde_json::Value::Object(hook.param_map);
                println!("{:<34} {:<28} {:<7} {map}", hook.id, hook.deployment, hook.signed);
            }
        }
        WebhookCommand::Rm { id } => {
            match &backend {
                Backend::Local(service) => service.delete_webhook(DEFAULT_TENANT, &id)?,
                Backend::Remote(api) => api.delete_webhook(&id).await?,
            }
            println!("deleted webhook {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `sluice automation …`.
pub async fn automation(command: AutomationCommand) -> Result<ExitCode, CliError> {
    let backend = backend()?;
    match command {
        AutomationCommand::Create {
            name,
            on,
            of_deployment,
            tags,
            threshold,
            within,
            run,
            param_map,
            pause,
            resume,
            cancel,
            output,
        } => {
            let within_seconds = within
                .as_deref()
                .map(crate::core::duration::parse_duration)
                .transpose()
                .map_err(CliError::usage)?
                .map(|d| d.as_secs());
            let actions = [run.is_some(), pause.is_some(), resume.is_some(), cancel].iter().filter(|a| **a).count();
            if actions > 1 {
                return Err(CliError::usage("give one of --run, --pause, --resume, --cancel"));
            }
            let action = match (run, pause, resume, cancel) {
                (Some(deployment), ..) => Action::RunDeployment {
                    deployment,
                    param_map: parse_param_map(&param_map).map_err(CliError::usage)?,
                },
                (_, Some(deployment), ..) => Action::PauseDeployment { deployment },
                (_, _, Some(deployment), _) => Action::ResumeDeployment { deployment },
                (.., true) => Action::CancelRun,
                _ => return Err(CliError::usage("say what it does: --run, --pause, --resume or --cancel")),
            };
            let request = AutomationRequest {
                name,
                trigger: Trigger { event: on, deployment: of_deployment, tags, threshold, within_seconds },
                action,
            };
            let made = match &backend {
                Backend::Local(service) => service.create_automation(DEFAULT_TENANT, request)?,
                Backend::Remote(api) => api.create_automation(&request).await?,
            };
            if output == Output::Json {
                print_json(&made);
            } else {
                println!("automation {} created ({})", made.name, made.id);
            }
        }
        AutomationCommand::Ls { output } => {
            let automations = match &backend {
                Backend::Local(service) => service.automations(DEFAULT_TENANT)?,
                Backend::Remote(api) => api.automations().await?,
            };
            if output == Output::Json {
                print_json(&automations);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<24} {:<34} ACTION", "NAME", "WHEN");
            for automation in automations {
                let trigger = &automation.trigger;
                let mut when = trigger.event.clone();
                if let Some(deployment) = &trigger.deployment {
                    when.push_str(&format!(" of {deployment}"));
                }
                if trigger.threshold > 1 {
                    when.push_str(&format!(" x{} in {}s", trigger.threshold, trigger.within_seconds.unwrap_or(0)));
                }
                let action = serde_json::to_string(&automation.action).expect("JSON");
                println!("{:<24} {when:<34} {action}", automation.name);
            }
        }
        AutomationCommand::Rm { name } => {
            match &backend {
                Backend::Local(service) => service.delete_automation(DEFAULT_TENANT, &name)?,
                Backend::Remote(api) => api.delete_automation(&name).await?,
            }
            println!("deleted automation {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
