//! A run form generated from a flow's parameter JSON Schema: text, number,
//! checkbox and select fields, fieldsets for nested objects, one-per-line
//! lists, and a JSON box for anything else. Submitted text is read back
//! into typed JSON with an error per field, then checked against the
//! schema, so bad input is refused, field named, before a run exists.

use maud::{Markup, html};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// How a schema node is edited.
#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Text,
    Integer,
    Number,
    Boolean,
    Choice(Vec<String>),
    Object,
    /// A list of scalars, one per line.
    Lines(Box<Kind>),
    Json,
}

/// A field's problem, by its dotted path (`target.port`).
pub type FieldErrors = BTreeMap<String, String>;

/// Follows a local `$ref` (`#/$defs/X`, `#/definitions/X`), and a lone `allOf`.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut node = node;
    for _ in 0..16 {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let pointer = reference.trim_start_matches('#');
            match root.pointer(pointer) {
                Some(target) => node = target,
                None => return node,
            }
        } else if let Some([only]) = node.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            node = only;
        } else {
            return node;
        }
    }
    node
}

/// The non-null alternatives of a node (`Option<T>` is `anyOf: [T, null]` or `type: [t, "null"]`).
fn non_null<'a>(root: &'a Value, node: &'a Value) -> (&'a Value, bool) {
    let node = resolve(root, node);
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = node.get(key).and_then(Value::as_array) {
            let real: Vec<&Value> = options.iter().filter(|o| o.get("type") != Some(&Value::from("null"))).collect();
            if real.len() == 1 && real.len() < options.len() {
                return (resolve(root, real[0]), true);
            }
        }
    }
    let nullable = node.get("type").and_then(Value::as_array).is_some_and(|t| t.iter().any(|t| t == "null"));
    (node, nullable)
}

fn kind(root: &Value, node: &Value) -> Kind {
    let (node, _) = non_null(root, node);
    let strings =
        |values: &Vec<Value>| values.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>();
    if let Some(choices) = node.get("enum").and_then(Value::as_array).and_then(strings) {
        return Kind::Choice(choices);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = node.get(key).and_then(Value::as_array) {
            let consts: Option<Vec<String>> = options
                .iter()
                .map(|o| resolve(root, o).get("const").and_then(Value::as_str).map(str::to_string))
                .collect();
            return match consts {
                Some(choices) => Kind::Choice(choices),
                None => Kind::Json,
            };
        }
    }
    let ty = match node.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(types)) => {
            let real: Vec<&str> = types.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
            if real.len() == 1 { Some(real[0]) } else { None }
        }
        _ => None,
    };
    match ty {
        Some("string") => Kind::Text,
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("boolean") => Kind::Boolean,
        Some("object") if node.get("properties").is_some_and(|p| p.as_object().is_some_and(|p| !p.is_empty())) => {
            Kind::Object
        }
        Some("array") => match node.get("items").map(|items| kind(root, items)) {
            Some(item @ (Kind::Text | Kind::Integer | Kind::Number)) => Kind::Lines(Box::new(item)),
            _ => Kind::Json,
        },
        _ => Kind::Json,
    }
}

/// The fields of an object, in the schema's order: the flow's signature.
fn properties(node: &Value) -> Vec<(&String, &Value)> {
    node.get("properties").and_then(Value::as_object).map(|p| p.iter().collect()).unwrap_or_default()
}

fn required(node: &Value) -> Vec<&str> {
    node.get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn field_id(path: &str) -> String {
    format!("p-{}", path.replace('.', "-"))
}

/// What a form shows in each field: current values, or what was just submitted.
pub enum Shown<'a> {
    /// Values as JSON (defaults, the deployment's parameters).
    Values(&'a Value),
    /// The raw submitted fields, shown back after a refusal.
    Submitted(&'a HashMap<String, String>),
}

/// The fields of a form for `schema`.
pub fn render(schema: &Value, shown: &Shown<'_>, errors: &FieldErrors) -> Markup {
    let root = resolve(schema, schema);
    html! {
        @let props = properties(root);
        @if props.is_empty() { p.empty { "This flow takes no parameters." } }
        @for (name, node) in props {
            (field(schema, name, node, required(root).contains(&name.as_str()), shown, errors))
        }
    }
}

fn value_at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

fn text_of(kind: &Kind, value: &Value) -> String {
    match (kind, value) {
        (_, Value::Null) => String::new(),
        (Kind::Text | Kind::Choice(_), Value::String(s)) => s.clone(),
        (Kind::Lines(_), Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join("\n"),
        (Kind::Json, v) => serde_json::to_string_pretty(v).unwrap_or_default(),
        (_, v) => v.to_string(),
    }
}

fn field(root: &Value, path: &str, node: &Value, is_required: bool, shown: &Shown<'_>, errors: &FieldErrors) -> Markup {
    let kind = kind(root, node);
    let (resolved, _) = non_null(root, node);
    let described = node.get("description").or_else(|| resolved.get("description")).and_then(Value::as_str);
    let title = path.rsplit('.').next().unwrap_or(path);
    let id = field_id(path);
    let error = errors.get(path);
    let help_id = format!("{id}-help");
    let error_id = format!("{id}-error");
    let describedby = [described.map(|_| help_id.clone()), error.map(|_| error_id.clone())]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let describedby = (!describedby.is_empty()).then_some(describedby);
    let invalid = error.map(|_| "true");
    let text = match shown {
        Shown::Submitted(fields) => fields.get(path).cloned().unwrap_or_default(),
        Shown::Values(values) => value_at(values, path).map(|v| text_of(&kind, v)).unwrap_or_default(),
    };
    let checked = match shown {
        Shown::Submitted(fields) => fields.contains_key(path),
        Shown::Values(values) => value_at(values, path).and_then(Value::as_bool).unwrap_or(false),
    };
    let type_hint = match &kind {
        Kind::Integer => "whole number",
        Kind::Number => "number",
        Kind::Lines(item) if **item == Kind::Integer => "whole numbers, one per line",
        Kind::Lines(item) if **item == Kind::Number => "numbers, one per line",
        Kind::Lines(_) => "one per line",
        Kind::Json => "JSON",
        _ => "",
    };
    html! {
        @if kind == Kind::Object {
            fieldset #(id) data-field=(path) {
                legend { (title) }
                @if let Some(d) = described { p.hint #(help_id) { (d) } }
                @if let Some(e) = error { p.field-error #(error_id) role="alert" { (e) } }
                @for (name, child) in properties(resolved) {
                    (field(root, &format!("{path}.{name}"), child, required(resolved).contains(&name.as_str()), shown, errors))
                }
            }
        } @else {
            div.field data-field=(path) {
                @if kind == Kind::Boolean {
                    label.checkbox for=(id) {
                        input #(id) type="checkbox" name=(path) value="true" checked[checked]
                            aria-invalid=[invalid] aria-describedby=[describedby.as_deref()];
                        (title)
                    }
                } @else {
                    label for=(id) { (title) @if is_required { " " span.muted { "(required)" } }
                        @if !type_hint.is_empty() { " " span.muted { "· " (type_hint) } } }
                    @match &kind {
                        Kind::Choice(choices) => {
                            select #(id) name=(path) aria-invalid=[invalid] aria-describedby=[describedby.as_deref()] {
                                @if !is_required { option value="" { "(default)" } }
                                @for choice in choices { option value=(choice) selected[*choice == text] { (choice) } }
                            }
                        }
                        Kind::Lines(_) | Kind::Json => {
                            textarea #(id) name=(path) rows="4" spellcheck="false" aria-invalid=[invalid]
                                aria-describedby=[describedby.as_deref()] { (text) }
                        }
                        Kind::Integer => input #(id) type="text" inputmode="numeric" name=(path) value=(text)
                            required[is_required] aria-invalid=[invalid] aria-describedby=[describedby.as_deref()];,
                        Kind::Number => input #(id) type="text" inputmode="decimal" name=(path) value=(text)
                            required[is_required] aria-invalid=[invalid] aria-describedby=[describedby.as_deref()];,
                        _ => input #(id) type="text" name=(path) value=(text)
                            required[is_required] aria-invalid=[invalid] aria-describedby=[describedby.as_deref()];,
                    }
                }
                @if let Some(d) = described { p.hint #(help_id) { (d) } }
                @if let Some(e) = error { p.field-error.error-message #(error_id) { (title) ": " (e) } }
            }
        }
    }
}

/// Reads submitted fields back into parameters, typed by the schema.
/// Fields left empty are left out (the deployment's value or the default applies).
pub fn parse(schema: &Value, fields: &HashMap<String, String>) -> (Map<String, Value>, FieldErrors) {
    let root = resolve(schema, schema);
    let mut errors = FieldErrors::new();
    let mut out = Map::new();
    for (name, node) in properties(root) {
        if let Some(value) = read(schema, name, node, fields, &mut errors) {
            out.insert(name.clone(), value);
        }
    }
    (out, errors)
}

fn read(
    root: &Value,
    path: &str,
    node: &Value,
    fields: &HashMap<String, String>,
    errors: &mut FieldErrors,
) -> Option<Value> {
    let kind = kind(root, node);
    if kind == Kind::Object {
        let (resolved, _) = non_null(root, node);
        let mut object = Map::new();
        for (name, child) in properties(resolved) {
            if let Some(value) = read(root, &format!("{path}.{name}"), child, fields, errors) {
                object.insert(name.clone(), value);
            }
        }
        return Some(Value::Object(object));
    }
    if kind == Kind::Boolean {
        return Some(Value::Bool(fields.contains_key(path)));
    }
    let text = fields.get(path).map(|t| t.trim()).filter(|t| !t.is_empty())?;
    match scalar(&kind, text) {
        Ok(value) => Some(value),
        Err(problem) => {
            errors.insert(path.to_string(), problem);
            None
        }
    }
}

fn scalar(kind: &Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::Text => Ok(Value::String(text.to_string())),
        Kind::Integer => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<u64>().map(Value::from))
            .map_err(|_| format!("`{text}` is not a whole number")),
        Kind::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{text}` is not a number")),
        Kind::Choice(choices) if choices.iter().any(|c| c == text) => Ok(Value::String(text.to_string())),
        Kind::Choice(choices) => Err(format!("`{text}` is not one of {}", choices.join(", "))),
        Kind::Lines(item) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, line)| scalar(item, line).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Kind::Json => serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}")),
        Kind::Boolean | Kind::Object => unreachable!("read() handles these"),
    }
}

/// Checks parameters against the schema; each problem under the path of the field it concerns.
pub fn validate(schema: &Value, params: &Value) -> Result<(), FieldErrors> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(validator) => validator,
        Err(err) => return Err(FieldErrors::from([(String::new(), format!("the flow's schema is invalid: {err}"))])),
    };
    let mut errors = FieldErrors::new();
    for error in validator.iter_errors(params) {
        let path = error.instance_path().to_string().trim_start_matches('/').replace('/', ".");
        errors.entry(path).or_insert_with(|| error.to_string());
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "times": {"type": "integer", "format": "uint32", "minimum": 0, "default": 2},
                "ratio": {"type": "number"},
                "dry_run": {"type": "boolean"},
                "volume": {"$ref": "#/$defs/Volume"},
                "target": {"$ref": "#/$defs/Target"},
                "labels": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": ["object", "null"]}
            },
            "required": ["name"],
            "$defs": {
                "Volume": {"oneOf": [{"const": "quiet", "type": "string"}, {"const": "loud", "type": "string"}]},
                "Target": {"type": "object", "properties": {"host": {"type": "string"}, "port": {"type": "integer"}}, "required": ["host"]}
            }
        })
    }

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_kind_is_read_back_as_typed_json() {
        let submitted = fields(&[
            ("name", "Leo"),
            ("times", "3"),
            ("ratio", "0.25"),
            ("dry_run", "true"),
            ("volume", "loud"),
            ("target.host", "example.org"),
            ("target.port", "443"),
            ("labels", "a\n b \n\n"),
            ("extra", r#"{"k": [1]}"#),
        ]);
        let (params, errors) = parse(&schema(), &submitted);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            Value::Object(params),
            json!({"name": "Leo", "times": 3, "ratio": 0.25, "dry_run": true, "volume": "loud",
                   "target": {"host": "example.org", "port": 443}, "labels": ["a", "b"], "extra": {"k": [1]}})
        );
    }

    #[test]
    fn wrong_types_are_refused_by_field() {
        let submitted = fields(&[("name", "Leo"), ("times", "many"), ("target.port", "x"), ("volume", "medium")]);
        let (_, errors) = parse(&schema(), &submitted);
        assert_eq!(errors["times"], "`many` is not a whole number");
        assert_eq!(errors["target.port"], "`x` is not a whole number");
        assert!(errors["volume"].contains("not one of quiet, loud"));
    }

    #[test]
    fn schema_violations_name_the_nested_field() {
        let errors = validate(&schema(), &json!({"name": "Leo", "times": -1, "target": {"port": 1}})).unwrap_err();
        assert!(errors.contains_key("times"), "{errors:?}");
        assert!(errors.contains_key("target"), "a missing required host is reported on its object: {errors:?}");
    }

    #[test]
    fn the_form_escapes_values_and_marks_errors() {
        let values = json!({"name": "<script>alert(1)</script>", "target": {"host": "h"}});
        let errors = FieldErrors::from([("times".to_string(), "`x` is not a whole number".to_string())]);
        let html = render(&schema(), &Shown::Values(&values), &errors).into_string();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains(r#"name="target.host""#));
        assert!(html.contains(r#"aria-invalid="true""#));
        assert!(html.contains("<fieldset"));
        assert!(html.contains(r#"<option value="loud""#));
    }
}
