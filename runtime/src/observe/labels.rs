//! Label values with a bounded number of series. Tenant and deployment
//! names come from users: a label taking every one of them would let a
//! tenant grow the server's memory and the operator's Prometheus without
//! end. The first [`TENANTS_KEPT`] tenants and [`DEPLOYMENTS_KEPT`]
//! deployments a process sees keep their own value; later ones are counted
//! under [`OTHER`]. First-seen rather than "top-N by volume": a counter's
//! series must not change its label when the ranking changes, or rates
//! computed over it would jump.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

/// The value every name past the cap is counted under.
pub const OTHER: &str = "other";
/// The value of runs with no deployment (started from a component directly).
pub const NONE: &str = "none";
/// Tenants that keep their own label value.
pub const TENANTS_KEPT: usize = 100;
/// Deployments (`tenant` and `flow/name`) that keep their own label value.
pub const DEPLOYMENTS_KEPT: usize = 200;

/// Hands out label values, at most `limit` distinct ones besides [`OTHER`].
#[derive(Debug)]
pub struct CappedLabel {
    limit: usize,
    kept: HashSet<String>,
}

impl CappedLabel {
    /// A label keeping at most `limit` values of its own.
    pub fn new(limit: usize) -> Self {
        Self { limit, kept: HashSet::new() }
    }

    /// The label value for `name`: itself while there is room (or it already has one), else [`OTHER`].
    pub fn value(&mut self, name: &str) -> String {
        if self.kept.contains(name) {
            return name.to_string();
        }
        if self.kept.len() < self.limit {
            self.kept.insert(name.to_string());
            return name.to_string();
        }
        OTHER.to_string()
    }
}

/// The process's tenant and deployment labels (taken per run created, started or ended: never per task).
static RUN_LABELS: LazyLock<Mutex<(CappedLabel, CappedLabel)>> =
    LazyLock::new(|| Mutex::new((CappedLabel::new(TENANTS_KEPT), CappedLabel::new(DEPLOYMENTS_KEPT))));

/// The `tenant` and `deployment` label values of a run of `deployment` (`flow/name`) in `tenant`.
pub fn run_labels(tenant: &str, deployment: Option<&str>) -> [String; 2] {
    let mut labels = RUN_LABELS.lock().expect("run labels lock");
    let tenant_label = labels.0.value(tenant);
    let deployment = match deployment {
        // Capped per tenant and name together; the value shown is the name.
        Some(name) if labels.1.value(&format!("{tenant} {name}")) != OTHER => name.to_string(),
        Some(_) => OTHER.to_string(),
        None => NONE.to_string(),
    };
    [tenant_label, deployment]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_cap_share_one_value_and_earlier_ones_keep_theirs() {
        let mut label = CappedLabel::new(2);
        assert_eq!(label.value("a"), "a");
        assert_eq!(label.value("b"), "b");
        assert_eq!(label.value("c"), OTHER);
        assert_eq!(label.value("d"), OTHER);
        assert_eq!(label.value("a"), "a", "a name seen before the cap keeps its value");
    }
}
