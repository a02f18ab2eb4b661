//! What a component's `describe` may say: names that fit a pattern, a
//! bounded size, and schemas that are valid JSON Schema referring only to
//! themselves. Checked when a component is loaded (push, deploy, exec, a
//! worker's run), so nothing that fails these is stored or run.

use crate::core::describe::ComponentDescription;
use serde_json::Value;
use std::collections::HashMap;

/// The pattern of flow and task names, as documented in the README: a
/// letter, digit or `_`, then letters, digits, `_`, `.` and `-`, 128
/// characters at most. Names go into `flow/deployment`, task run names,
/// URLs and terminals, so they need no quoting anywhere.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// Longest name.
const MAX_NAME_CHARS: usize = 128;

/// Largest description a component may give of itself: names, texts,
/// schemas and version together (each flow or task counted 64 bytes more).
pub const MAX_DESCRIPTION_BYTES: usize = 1 << 20;

/// Checks `name` (of a `what`, flow or task) against [`NAME_PATTERN`].
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= MAX_NAME_CHARS {
        return Ok(());
    }
    // The name is the guest's: shown escaped and shortened, never raw.
    let shown: String = name.chars().take(64).collect();
    let more = if name.chars().count() > 64 { format!("… ({} bytes)", name.len()) } else { String::new() };
    Err(format!(
        "`describe` declares a {what} named {shown:?}{more}, which is not a valid name: names must match \
         {NAME_PATTERN} (a letter, digit or `_`, then letters, digits, `_`, `.` or `-`; at most {MAX_NAME_CHARS})"
    ))
}

/// Compiles the schema of a `what` (`parameters of flow \`x\``), refusing
/// one that is not valid JSON Schema or refers outside itself.
pub fn compile_schema(what: &str, schema: &Value) -> Result<jsonschema::Validator, String> {
    if let Some(reference) = outside_reference(schema) {
        return Err(format!(
            "the schema of the {what} refers to {reference:?}; only references inside the schema \
             (starting with `#`) are allowed"
        ));
    }
    jsonschema::validator_for(schema).map_err(|e| format!("the schema of the {what} is not valid JSON Schema: {e}"))
}

/// The first `$ref` (or `$dynamicRef`, `$recursiveRef`) that does not
/// point inside the schema: `file://`, `http://`, a relative path.
fn outside_reference(schema: &Value) -> Option<&str> {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if matches!(key.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef")
                    && let Value::String(target) = value
                    && !target.starts_with('#')
                {
                    return Some(target);
                }
                if let Some(found) = outside_reference(value) {
                    return Some(found);
                }
            }
            None
        }
        Value::Array(items) => items.iter().find_map(outside_reference),
        _ => None,
    }
}

impl ComponentDescription {
    /// Checks every name and schema, and compiles each task's input schema
    /// (by task name) so task inputs can be checked against it.
    pub fn check(&self) -> Result<HashMap<String, jsonschema::Validator>, String> {
        for flow in &self.flows {
            check_name("flow", &flow.name)?;
            compile_schema(&format!("parameters of flow `{}`", flow.name), &flow.parameters_schema)?;
        }
        let mut inputs = HashMap::new();
        for task in &self.tasks {
            check_name("task", &task.name)?;
            let validator = compile_schema(&format!("input of task `{}`", task.name), &task.input_schema)?;
            inputs.insert(task.name.clone(), validator);
        }
        Ok(inputs)
    }
}

/// Checks `input` (JSON) of `task` against its compiled schema.
pub fn check_input(task: &str, validator: &jsonschema::Validator, input: &str) -> Result<(), String> {
    let value: Value =
        serde_json::from_str(input).map_err(|e| format!("the input of task `{task}` is not valid JSON: {e}"))?;
    check_value(task, validator, &value)
}

/// Checks the parsed input of `task` against its compiled schema.
pub fn check_value(task: &str, validator: &jsonschema::Validator, value: &Value) -> Result<(), String> {
    // The yes-or-no check first: collecting errors costs more, and inputs mostly fit.
    if validator.is_valid(value) {
        return Ok(());
    }
    let problems: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|error| {
            let path = error.instance_path().to_string();
            let field = path.trim_start_matches('/').replace('/', ".");
            if field.is_empty() { error.to_string() } else { format!("field `{field}`: {error}") }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("the input of task `{task}` does not fit its schema: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_of_the_examples_and_the_sdk_fit_the_pattern() {
        for name in ["hello", "say_hello", "fork_bomb", "python-greet", "v1.2", "_private", "3d", &"a".repeat(128)] {
            assert!(check_name("task", name).is_ok(), "{name}");
        }
    }

    #[test]
    fn paths_control_characters_and_long_names_are_refused_escaped() {
        for name in ["../../etc/passwd", "a/b", "", ".hidden", "-flag", "nul\0byte", "esc\x1b[31m", "two words"] {
            let error = check_name("flow", name).unwrap_err();
            assert!(error.contains(&format!("{name:?}")), "{error}");
            assert!(!error.contains('\0') && !error.contains('\x1b'), "{error:?}");
        }
        let error = check_name("task", &"x".repeat(10_240)).unwrap_err();
        assert!(error.contains("(10240 bytes)") && error.len() < 400, "{error}");
    }

    #[test]
    fn remote_and_file_references_are_refused_and_local_ones_kept() {
        for target in ["file:///etc/passwd", "http://127.0.0.1/schema.json", "other.json#/a"] {
            let schema = json!({"type": "object", "properties": {"a": {"$ref": target}}});
            let error = compile_schema("input of task `t`", &schema).unwrap_err();
            assert!(error.contains(target), "{error}");
        }
        let local =
            json!({"$defs": {"n": {"type": "integer"}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}});
        assert!(compile_schema("input of task `t`", &local).is_ok());
    }

    #[test]
    fn a_schema_that_is_not_json_schema_is_refused() {
        let error = compile_schema("parameters of flow `f`", &json!({"type": 5})).unwrap_err();
        assert!(error.contains("is not valid JSON Schema"), "{error}");
        assert!(compile_schema("x", &json!("a string")).is_err());
    }

    #[test]
    fn task_input_is_checked_against_its_schema() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        let validator = compile_schema("input of task `t`", &schema).unwrap();
        assert!(check_input("t", &validator, r#"{"n": 3}"#).is_ok());
        let error = check_input("t", &validator, "[1,2]").unwrap_err();
        assert!(error.starts_with("the input of task `t` does not fit its schema"), "{error}");
        let error = check_input("t", &validator, r#"{"n": "x"}"#).unwrap_err();
        assert!(error.contains("field `n`"), "{error}");
    }
}
