//! What a component says about itself (`describe`), as the host keeps it.

use crate::core::policy::TaskPolicy;
use serde::{Deserialize, Serialize};

/// A component's flows and tasks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ComponentDescription {
    /// The component's own version string.
    pub version: String,
    /// Its flows; the first is the default.
    pub flows: Vec<FlowDescription>,
    /// Its tasks.
    pub tasks: Vec<TaskDescription>,
}

/// One flow.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct FlowDescription {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its parameters object.
    pub parameters_schema: serde_json::Value,
}

/// One task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TaskDescription {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its input object.
    pub input_schema: serde_json::Value,
    /// Its default policy.
    pub policy: TaskPolicy,
}

impl ComponentDescription {
    /// The flow called `name`, or the default (first) flow when `name` is `None`.
    pub fn flow(&self, name: Option<&str>) -> Result<&FlowDescription, String> {
        match name {
            Some(name) => self.flows.iter().find(|f| f.name == name).ok_or_else(|| {
                format!("the component has no flow named `{name}`; its flows are: {}", self.flow_names())
            }),
            None => self.flows.first().ok_or_else(|| "the component declares no flows".to_string()),
        }
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskDescription> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The flows' names, comma separated.
    pub fn flow_names(&self) -> String {
        self.flows.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}
