//! The scheduler: creates each scheduled deployment's runs ahead of time
//! (at least 3 and all within the next hour, as Prefect does), marks runs
//! `Late` when their start passed without a runner, and takes due runs.
//! Time is passed in, so tests drive it without sleeping.

use super::{Service, ServiceError};
use crate::params;
use crate::store::{Claim, FlowRunRow, ScheduledRuns};
use chrono::{DateTime, Utc};

/// Runs created ahead of time per deployment: at least this many...
pub const MIN_SCHEDULED_RUNS: usize = 3;
/// ...and all within this horizon...
pub const SCHEDULE_HORIZON: chrono::Duration = chrono::Duration::hours(1);
/// ...but never more than this many.
pub const MAX_SCHEDULED_RUNS: usize = 100;
/// A run not taken this long after its start time is `Late`.
pub const LATE_AFTER: chrono::Duration = chrono::Duration::seconds(15);

/// What one scheduler pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulerPass {
    /// Runs created.
    pub created: usize,
    /// Runs marked late.
    pub late: usize,
    /// Deployments whose runs could not be created, and why.
    pub problems: Vec<String>,
    /// Paused runs resumed with their flow's default when their timeout passed.
    pub resumed: usize,
}

impl Service {
    /// One pass of the scheduler at `now`.
    pub fn schedule(&self, now: DateTime<Utc>) -> Result<SchedulerPass, ServiceError> {
        let mut pass = SchedulerPass::default();
        for deployment in self.store.deployments(None)? {
            let Some(schedule) = &deployment.schedule else { continue };
            if deployment.paused {
                continue;
            }
            let parameters = self.artifact_meta(Some(&deployment.tenant), &deployment.artifact).and_then(|meta| {
                let flow = meta.description.flow(Some(&deployment.flow)).map_err(ServiceError::Invalid)?;
                params::resolve(&flow.name, &flow.parameters_schema, deployment.parameters.clone())
                    .map_err(ServiceError::Invalid)
            });
            let parameters = match parameters {
                Ok(parameters) => parameters,
                Err(err) => {
                    pass.problems.push(format!("{}: {err}", deployment.full_name()));
                    continue;
                }
            };
            let times = schedule.upcoming(now, MAX_SCHEDULED_RUNS, SCHEDULE_HORIZON, MIN_SCHEDULED_RUNS);
            let created = self.store.schedule_runs(&ScheduledRuns {
                deployment: &deployment,
                parameters: &parameters,
                times: &times,
                now,
            })?;
            crate::observe::run_events::count_scheduled(&deployment.tenant, &deployment.full_name(), created as u64);
            pass.created += created;
        }
        pass.late = self.store.mark_late(now - LATE_AFTER, now)?;
        pass.resumed = self.expire_pauses(now)?;
        Ok(pass)
    }

    /// Takes due runs as `claim` asks.
    pub fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<FlowRunRow>, ServiceError> {
        Ok(self.store.claim_due(claim)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schedule::Schedule;
    use crate::core::state::StateType;
    use crate::core::tenant::DEFAULT_TENANT;
    use crate::service::{ArtifactSource, Config, DeployRequest};
    use crate::store::RunFilter;

    fn hello_component() -> std::path::PathBuf {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo.join("target"));
        let path = target.join("wasm32-wasip2/guest/hello_flow.wasm");
        assert!(path.exists(), "build the guests first (make guests): {} is missing", path.display());
        path
    }

    async fn service_with(schedule: Schedule) -> (tempfile::TempDir, Service) {
        let home = tempfile::tempdir().unwrap();
        let config =
            Config { home: home.path().to_path_buf(), store_url: None, compile_cache: home.path().join("compiled") };
        let service = Service::open(&config).unwrap();
        service.deploy(DEFAULT_TENANT, request(Some(schedule))).await.unwrap();
        (home, service)
    }

    fn request(schedule: Option<Schedule>) -> DeployRequest {
        let mut parameters = serde_json::Map::new();
        parameters.insert("name".into(), "Leo".into());
        DeployRequest {
            artifact: ArtifactSource::File(hello_component()),
            flow: Some("hello".into()),
            name: "leo".into(),
            parameters,
            description: None,
            version: None,
            tags: vec![],
            schedule,
            paused: false,
            pool: None,
            queue: None,
            limits: Default::default(),
            grants: Default::default(),
            served: false,
        }
    }

    fn scheduled(service: &Service) -> Vec<DateTime<Utc>> {
        let filter = RunFilter { state: Some(StateType::Scheduled), limit: 1000, ..RunFilter::default() };
        let mut times: Vec<_> =
            service.store.flow_runs(&filter).unwrap().into_iter().filter_map(|r| r.scheduled).collect();
        times.sort();
        times
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn an_hourly_schedule_keeps_three_runs_ahead_without_duplicates() {
        let (_home, service) = service_with(Schedule::cron("0 * * * *", None).unwrap()).await;
        let now = at("2026-11-26T10:30:00Z");
        assert_eq!(service.schedule(now).unwrap().created, 3);
        assert_eq!(
            scheduled(&service),
            [at("2026-11-26T11:00:00Z"), at("2026-11-26T12:00:00Z"), at("2026-11-26T13:00:00Z")]
        );
        assert_eq!(service.schedule(now).unwrap().created, 0, "a second pass adds nothing");
        service.deploy(DEFAULT_TENANT, request(Some(Schedule::cron("0 * * * *", None).unwrap()))).await.unwrap();
        assert_eq!(service.schedule(now).unwrap().created, 0, "an unchanged redeploy adds nothing");
        let later = at("2026-11-26T11:10:00Z");
        let pass = service.schedule(later).unwrap();
        assert_eq!(pass.created, 1, "one more to stay three ahead");
        assert_eq!(pass.late, 1, "11:00 passed 10 min ago with no runner: it is late");
    }

    #[tokio::test]
    async fn an_interval_fills_the_hour_and_passed_runs_turn_late() {
        let (_home, service) = service_with(Schedule::interval(600).unwrap()).await;
        let now = at("2026-11-26T10:00:00Z");
        assert_eq!(service.schedule(now).unwrap().created, 6, "every 10 min for an hour");
        let pass = service.schedule(at("2026-11-26T10:10:16Z")).unwrap();
        assert_eq!(pass.late, 1, "10:10 passed 16 s ago with no runner");
        let late = service
            .store
            .flow_runs(&RunFilter { state: Some(StateType::Late), limit: 10, ..RunFilter::default() })
            .unwrap();
        assert_eq!(late[0].scheduled, Some(at("2026-11-26T10:10:00Z")));
        let history: Vec<StateType> = service.store.states(&late[0].id).unwrap().into_iter().map(|s| s.state).collect();
        assert_eq!(history, [StateType::Scheduled, StateType::Late]);
        let claim = |taker| Claim {
            tenant: None,
            now: at("2026-11-26T10:10:16Z"),
            pool: Some("default"),
            queues: &[],
            deployment: None,
            limit: 10,
            taker,
        };
        let taken = service.claim_due(&claim("test")).unwrap();
        assert_eq!(taken.len(), 1, "the late run is due");
        assert!(service.claim_due(&claim("other")).unwrap().is_empty(), "taken once");
    }

    #[tokio::test]
    async fn pausing_or_changing_the_schedule_removes_future_runs() {
        let (_home, service) = service_with(Schedule::interval(600).unwrap()).await;
        let now = chrono::Utc::now();
        assert!(service.schedule(now).unwrap().created >= 6);
        service.set_paused(DEFAULT_TENANT, "hello/leo", true).unwrap();
        assert!(scheduled(&service).is_empty(), "paused: no future runs");
        assert_eq!(service.schedule(now).unwrap().created, 0, "a paused deployment gets none");
        service.set_paused(DEFAULT_TENANT, "hello/leo", false).unwrap();
        assert_eq!(service.schedule(now).unwrap().created, 6);
        service.deploy(DEFAULT_TENANT, request(Some(Schedule::interval(1800).unwrap()))).await.unwrap();
        assert!(scheduled(&service).is_empty(), "a changed schedule drops the old runs");
        assert_eq!(service.schedule(now).unwrap().created, 3, "every 30 min: three ahead");
    }
}
