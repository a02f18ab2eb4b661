//! Reading a tenant's event log (`GET /api/v1/events`, `sluice event ls`,
//! the Events page): filters and paging, never another tenant's events.

use super::{Service, ServiceError};
use crate::core::events::{EventFilter, EventRow};
use chrono::{DateTime, Utc};

/// Most events one page holds.
pub const MAX_EVENTS_PER_PAGE: usize = 500;

/// Which events a caller asks for.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only names starting with this (`sluice.flow-run.`).
    pub name: Option<String>,
    /// Only events of this deployment (`flow/name`).
    pub deployment: Option<String>,
    /// Only events of this flow run (its id).
    pub flow_run: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only events older than this `seq`: the next page.
    pub before: Option<i64>,
    /// At most this many (50 by default, 500 at most), newest first.
    pub limit: Option<usize>,
}

impl Service {
    /// A page of `tenant`'s events, newest first.
    pub fn events(&self, tenant: &str, query: EventQuery) -> Result<Vec<EventRow>, ServiceError> {
        let limit = query.limit.unwrap_or(50);
        if limit == 0 || limit > MAX_EVENTS_PER_PAGE {
            return Err(ServiceError::Invalid(format!("limit must be 1 to {MAX_EVENTS_PER_PAGE}")));
        }
        Ok(self.store.events(&EventFilter {
            tenant: tenant.to_string(),
            name_prefix: query.name.filter(|n| !n.is_empty()),
            deployment: query.deployment.filter(|d| !d.is_empty()),
            flow_run: query.flow_run.filter(|r| !r.is_empty()),
            since: query.since,
            before: query.before,
            limit,
        })?)
    }
}
