//! Automations: "when an event of this tenant matches (name pattern,
//! deployment, tags; optionally N times within a window), then run a
//! deployment with parameters from the event, pause or resume a
//! deployment's schedule, or cancel the event's run". This file keeps them
//! and decides and performs firings; `server/automations.rs` feeds it the
//! events the server commits. An automation only ever sees events of its
//! own tenant: they are looked up by the event's tenant, nothing else.

use super::{Service, ServiceError};
use crate::core::events::{Action, Automation, EventRow, Trigger, apply_param_map, check_param_map};
use crate::store::FlowRunRow;
use chrono::Utc;
use serde_json::json;

/// What a new automation is to be.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomationRequest {
    /// Its name, unique in the tenant.
    pub name: String,
    /// When it fires.
    pub trigger: Trigger,
    /// What it does.
    pub action: Action,
}

/// What a firing did.
#[derive(Debug)]
pub enum Performed {
    /// Started this run.
    Started(Box<FlowRunRow>),
    /// Paused or resumed a deployment's schedule.
    Scheduling,
    /// The run to cancel (the caller cancels it: it knows the runs executing here).
    Cancel(String),
    /// Nothing to do (a cancel for an event about no run).
    Nothing,
}

impl Service {
    /// Makes an automation of `tenant`; its deployments must exist.
    pub fn create_automation(&self, tenant: &str, request: AutomationRequest) -> Result<Automation, ServiceError> {
        super::check_name("automation", &request.name)?;
        request.trigger.check().map_err(ServiceError::Invalid)?;
        match &request.action {
            Action::RunDeployment { deployment, param_map } => {
                self.deployment(tenant, deployment)?;
                check_param_map(param_map).map_err(ServiceError::Invalid)?;
            }
            Action::PauseDeployment { deployment } | Action::ResumeDeployment { deployment } => {
                self.deployment(tenant, deployment)?;
            }
            Action::CancelRun => {}
        }
        let automation = Automation {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.to_string(),
            name: request.name,
            trigger: request.trigger,
            action: request.action,
            created: Utc::now(),
        };
        if !self.store.create_automation(&automation)? {
            return Err(ServiceError::Invalid(format!(
                "automation `{}` exists; remove it first with `sluice automation rm {}`",
                automation.name, automation.name
            )));
        }
        Ok(automation)
    }

    /// Makes or replaces the automation named `request.name` (`triggers:` in `sluice.yaml`).
    pub fn put_automation(&self, tenant: &str, request: AutomationRequest) -> Result<Automation, ServiceError> {
        self.store.delete_automation(tenant, &request.name)?;
        self.create_automation(tenant, request)
    }

    /// A tenant's automations.
    pub fn automations(&self, tenant: &str) -> Result<Vec<Automation>, ServiceError> {
        Ok(self.store.automations(tenant)?)
    }

    /// Deletes a tenant's automation by id or name.
    pub fn delete_automation(&self, tenant: &str, id_or_name: &str) -> Result<(), ServiceError> {
        if self.store.delete_automation(tenant, id_or_name)? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("no automation `{id_or_name}`; `sluice automation ls` lists them")))
        }
    }

    /// The automations of the event's tenant that fire on it: matching, and
    /// for those that count, reaching their count (counted in the store, so
    /// each match counts once whichever server saw it).
    pub fn firing(&self, event: &EventRow) -> Result<Vec<Automation>, ServiceError> {
        let mut firing = Vec::new();
        for automation in self.store.automations(&event.tenant)? {
            if automation.tenant != event.tenant || !automation.trigger.matches(event) {
                continue;
            }
            let trigger = &automation.trigger;
            let fires = match (trigger.threshold, trigger.within_seconds) {
                (0 | 1, _) | (_, None) => true,
                (threshold, Some(seconds)) => {
                    let window = chrono::Duration::seconds(seconds.min(i64::MAX as u64) as i64);
                    self.store.automation_hit(&automation.id, event.time, window, threshold)?
                }
            };
            if fires {
                firing.push(automation);
            }
        }
        Ok(firing)
    }

    /// Does what `automation` says about `event`.
    pub async fn perform(&self, automation: &Automation, event: &EventRow) -> Result<Performed, ServiceError> {
        let tenant = &automation.tenant;
        match &automation.action {
            Action::RunDeployment { deployment, param_map } => {
                let document = json!(event);
                let parameters = apply_param_map(param_map, &document).map_err(ServiceError::Invalid)?;
                Ok(Performed::Started(Box::new(self.create_run(tenant, deployment, parameters, None).await?)))
            }
            Action::PauseDeployment { deployment } => {
                self.set_paused(tenant, deployment, true)?;
                Ok(Performed::Scheduling)
            }
            Action::ResumeDeployment { deployment } => {
                self.set_paused(tenant, deployment, false)?;
                Ok(Performed::Scheduling)
            }
            Action::CancelRun => Ok(match &event.flow_run {
                // Only a run of the automation's own tenant.
                Some(run) if self.store.flow_run(Some(tenant), run)?.is_some() => Performed::Cancel(run.clone()),
                _ => Performed::Nothing,
            }),
        }
    }
}
