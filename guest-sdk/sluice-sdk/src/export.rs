//! What `export_flows!` builds: the component's `describe`, `run-flow` and
//! `run-task` exports, dispatching by name to the `#[flow]`s and `#[task]`s.

use crate::bindings::sluice::flow::types::{ComponentInfo, FlowInfo, RunError, TaskInfo, TaskPolicy};

/// A `#[flow]` function as the component exports it.
pub struct FlowDef {
    /// The flow's name.
    pub name: &'static str,
    /// Its doc comment.
    pub description: &'static str,
    /// JSON Schema of its parameters object.
    pub parameters_schema: fn() -> String,
    /// Runs the body with a JSON parameters object.
    pub invoke: fn(&str) -> Result<String, RunError>,
}

/// A `#[task]` function as the component exports it.
pub struct TaskDef {
    /// The task's name.
    pub name: &'static str,
    /// Its doc comment.
    pub description: &'static str,
    /// JSON Schema of its input object.
    pub input_schema: fn() -> String,
    /// Its default policy.
    pub policy: fn() -> TaskPolicy,
    /// Runs the body once with a JSON input object.
    pub invoke: fn(&str) -> Result<String, RunError>,
}

/// The JSON Schema of `T`, as a string.
pub fn schema_json<T: schemars::JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(T)).expect("a schema is always valid JSON")
}

/// What `describe` returns.
pub fn component_info(version: &str, flows: &[&FlowDef], tasks: &[&TaskDef]) -> ComponentInfo {
    ComponentInfo {
        version: version.to_string(),
        flows: flows
            .iter()
            .map(|f| FlowInfo {
                name: f.name.to_string(),
                description: f.description.to_string(),
                parameters_schema: (f.parameters_schema)(),
            })
            .collect(),
        tasks: tasks
            .iter()
            .map(|t| TaskInfo {
                name: t.name.to_string(),
                description: t.description.to_string(),
                input_schema: (t.input_schema)(),
                policy: (t.policy)(),
            })
            .collect(),
    }
}

/// Runs the flow called `name`.
pub fn dispatch_flow(flows: &[&FlowDef], name: &str, parameters: &str) -> Result<String, RunError> {
    match flows.iter().find(|f| f.name == name) {
        Some(flow) => (flow.invoke)(parameters),
        None => Err(RunError::Unknown(format!("no flow named `{name}` in this component"))),
    }
}

/// Runs the task called `name`.
pub fn dispatch_task(tasks: &[&TaskDef], name: &str, input: &str) -> Result<String, RunError> {
    match tasks.iter().find(|t| t.name == name) {
        Some(task) => (task.invoke)(input),
        None => Err(RunError::Unknown(format!("no task named `{name}` in this component"))),
    }
}

/// Makes this crate a Sluice component exporting the listed flows and tasks.
///
/// ```ignore
/// sluice_sdk::export_flows! { flows: [hello], tasks: [say_hello] }
/// ```
#[macro_export]
macro_rules! export_flows {
    (flows: [$($($flow:ident)::+),* $(,)?] $(, tasks: [$($($task:ident)::+),* $(,)?])? $(,)?) => {
        const _: () = {
            struct SluiceComponent;
            const FLOWS: &[&$crate::FlowDef] = &[$(&$($flow)::+::DEF),*];
            const TASKS: &[&$crate::TaskDef] = &[$($(&$($task)::+::DEF),*)?];
            impl $crate::bindings::Guest for SluiceComponent {
                fn describe() -> $crate::bindings::sluice::flow::types::ComponentInfo {
                    $crate::__private::component_info(env!("CARGO_PKG_VERSION"), FLOWS, TASKS)
                }
                fn run_flow(name: String, parameters: String) -> Result<String, $crate::__private::RunError> {
                    $crate::__private::dispatch_flow(FLOWS, &name, &parameters)
                }
                fn run_task(name: String, input: String) -> Result<String, $crate::__private::RunError> {
                    $crate::__private::dispatch_task(TASKS, &name, &input)
                }
            }
            $crate::bindings::__export_flow_world!(SluiceComponent with_types_in $crate::bindings);
        };
    };
}
