//! Flow parameters from the command line (`--param k=v`, `--params JSON`),
//! completed with the schema's defaults and checked against the schema
//! before anything runs.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Parses `key=value`; the value is JSON when it parses as JSON, else a string.
pub fn parse_param(text: &str) -> Result<(String, Value), String> {
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not a parameter; write it as key=value, for example name=Marvin"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{text}` has no parameter name before `=`"));
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    Ok((key.to_string(), value))
}

/// Parses `--params`: a JSON object, or `@path` to a file holding one.
pub fn parse_params_object(text: &str) -> Result<Map<String, Value>, String> {
    let (json, origin) = match text.strip_prefix('@') {
        Some(path) => {
            let json =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read parameters file `{path}`: {e}"))?;
            (json, format!("the file `{path}`"))
        }
        None => (text.to_string(), "--params".to_string()),
    };
    match serde_json::from_str::<Value>(&json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("{origin} must hold a JSON object, not {}", json_type(&other))),
        Err(e) => Err(format!("{origin} is not valid JSON: {e}")),
    }
}

/// Merges `--params` then each `--param` (later wins).
pub fn collect(params_object: Option<&str>, params: &[String]) -> Result<Map<String, Value>, String> {
    let mut merged = match params_object {
        Some(text) => parse_params_object(text)?,
        None => Map::new(),
    };
    for param in params {
        let (key, value) = parse_param(param)?;
        merged.insert(key, value);
    }
    Ok(merged)
}

/// Fills in defaults from the schema's top-level `properties`, then checks
/// the whole object against the schema. Errors name the field.
pub fn resolve(flow: &str, schema: &Value, mut params: Map<String, Value>) -> Result<Value, String> {
    // A flow without parameters may declare no `properties` at all, only
    // `additionalProperties: false`: every key is unknown then, and is named
    // as such rather than left to the validator ("False schema does not allow 1").
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    let no_properties = Map::new();
    let properties =
        schema.get("properties").and_then(Value::as_object).or(if closed { Some(&no_properties) } else { None });
    if let Some(properties) = properties {
        let unknown: Vec<&String> = params.keys().filter(|k| !properties.contains_key(*k)).collect();
        if let Some(key) = unknown.first() {
            let known: Vec<&str> = properties.keys().map(String::as_str).collect();
            let takes = if known.is_empty() {
                "it takes no parameters".to_string()
            } else {
                format!("it takes: {}", known.join(", "))
            };
            return Err(format!("unknown parameter `{key}` for flow `{flow}`; {takes}"));
        }
        // In the schema's order (the flow's signature), wherever they came
        // from: a run's parameters read as the flow declares them.
        let mut ordered = Map::new();
        for (key, property) in properties {
            match params.remove(key) {
                Some(value) => {
                    ordered.insert(key.clone(), value);
                }
                None => {
                    if let Some(default) = property.get("default") {
                        ordered.insert(key.clone(), default.clone());
                    }
                }
            }
        }
        ordered.append(&mut params);
        params = ordered;
    }
    let params = Value::Object(params);
    let validator =
        compiled(schema).map_err(|e| format!("the flow `{flow}` declares an invalid parameter schema: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(&params)
        .map(|error| {
            let path = error.instance_path().to_string();
            let field = path.trim_start_matches('/').replace('/', ".");
            if field.is_empty() { error.to_string() } else { format!("parameter `{field}`: {error}") }
        })
        .collect();
    if problems.is_empty() {
        Ok(params)
    } else {
        Err(format!("parameters of flow `{flow}` do not fit its schema: {}", problems.join("; ")))
    }
}

/// Schemas compiled at once; past it the cache starts again.
const COMPILED_KEPT: usize = 256;

/// `schema` compiled, from a cache keyed by its text: compiling costs
/// several times more than checking a run's parameters, and a server checks
/// every run it creates against one of its few deployments' schemas.
fn compiled(schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(validator) = cache.lock().expect("schema cache lock").get(&key) {
        return Ok(validator.clone());
    }
    let validator = Arc::new(jsonschema::validator_for(schema).map_err(|e| e.to_string())?);
    let mut cache = cache.lock().expect("schema cache lock");
    if cache.len() >= COMPILED_KEPT {
        cache.clear();
    }
    cache.insert(key, validator.clone());
    Ok(validator)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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
                "count": {"type": "integer", "minimum": 1, "default": 3},
                "nested": {"type": "object", "properties": {"on": {"type": "boolean"}}}
            },
            "required": ["name"],
            "additionalProperties": false
        })
    }

    #[test]
    fn values_parse_as_json_then_as_strings() {
        assert_eq!(parse_param("n=3").unwrap(), ("n".into(), json!(3)));
        assert_eq!(parse_param("name=Marvin").unwrap(), ("name".into(), json!("Marvin")));
        assert_eq!(parse_param("xs=[1,2]").unwrap(), ("xs".into(), json!([1, 2])));
        assert_eq!(parse_param("s=\"7\"").unwrap(), ("s".into(), json!("7")));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=3").is_err());
    }

    #[test]
    fn later_params_override_the_object() {
        let merged = collect(Some(r#"{"name":"A","count":2}"#), &["name=B".into()]).unwrap();
        assert_eq!(Value::Object(merged), json!({"name": "B", "count": 2}));
        assert!(collect(Some("[1]"), &[]).unwrap_err().contains("JSON object"));
        assert!(collect(Some("{"), &[]).unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn defaults_fill_in_and_valid_input_passes() {
        let params = collect(None, &["name=Leo".into()]).unwrap();
        assert_eq!(resolve("f", &schema(), params).unwrap(), json!({"name": "Leo", "count": 3}));
    }

    #[test]
    fn parameters_come_out_in_the_schemas_order() {
        let schema = json!({
            "type": "object",
            "properties": {"zebra": {"type": "string"}, "apple": {"default": 1}, "mango": {"type": "boolean"}},
        });
        let params = collect(None, &["mango=true".into(), "zebra=z".into()]).unwrap();
        let resolved = resolve("f", &schema, params).unwrap();
        let keys: Vec<&String> = resolved.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["zebra", "apple", "mango"]);
        let error = resolve("f", &schema, collect(None, &["nam=1".into()]).unwrap()).unwrap_err();
        assert!(error.ends_with("it takes: zebra, apple, mango"), "{error}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let params = collect(None, &["name=Leo".into(), "colour=red".into()]).unwrap();
        let error = resolve("f", &schema(), params).unwrap_err();
        assert!(error.contains("unknown parameter `colour`"), "{error}");
        assert!(error.contains("name"), "{error}");
    }

    #[test]
    fn schema_violations_name_the_field() {
        let params = collect(None, &["name=Leo".into(), "count=0".into()]).unwrap();
        assert!(resolve("f", &schema(), params).unwrap_err().contains("parameter `count`"));
        let params = collect(None, &["name=Leo".into(), r#"nested={"on":"yes"}"#.into()]).unwrap();
        assert!(resolve("f", &schema(), params).unwrap_err().contains("parameter `nested.on`"));
        let missing = resolve("f", &schema(), Map::new()).unwrap_err();
        assert!(missing.contains("name"), "{missing}");
    }

    #[test]
    fn a_flow_without_parameters_names_the_unknown_key() {
        let closed = json!({"type": "object", "additionalProperties": false});
        let error = resolve("pipeline", &closed, collect(None, &["nam=1".into()]).unwrap()).unwrap_err();
        assert_eq!(error, "unknown parameter `nam` for flow `pipeline`; it takes no parameters");
        assert_eq!(resolve("pipeline", &closed, Map::new()).unwrap(), json!({}));
    }
}
