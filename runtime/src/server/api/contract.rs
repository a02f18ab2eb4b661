//! The served OpenAPI document is the API's contract, so request bodies are
//! checked against it before serde reads them: serde alone accepts more
//! than the document says (a JSON array for a struct, integers past a
//! documented `maximum`), and a client generated from the document must
//! be refused exactly where the document says it will be.
//!
//! The component schemas are taken from the document the router serves;
//! a body type's own schema comes from its `ToSchema` derive, and its
//! `$ref`s resolve against those components. Validators are compiled once
//! per type.

use serde_json::{Value, json};
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use utoipa::PartialSchema;

/// `{"components": {"schemas": …}}` of the served document.
static COMPONENTS: OnceLock<Value> = OnceLock::new();

type Validators = HashMap<TypeId, Arc<jsonschema::Validator>>;

static VALIDATORS: Mutex<Option<Validators>> = Mutex::new(None);

/// Takes the component schemas of the document the router serves.
pub fn install(document: &Value) {
    COMPONENTS.get_or_init(|| json!({ "components": { "schemas": document["components"]["schemas"] } }));
}

/// The validator of `T`'s documented schema, compiled on first use.
fn validator<T: PartialSchema + 'static>() -> Result<Arc<jsonschema::Validator>, String> {
    let mut validators = VALIDATORS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let validators = validators.get_or_insert_with(HashMap::new);
    if let Some(found) = validators.get(&TypeId::of::<T>()) {
        return Ok(found.clone());
    }
    let mut root = COMPONENTS.get().cloned().unwrap_or_else(|| json!({}));
    let mut own =
        serde_json::to_value(T::schema()).map_err(|e| format!("the body's schema does not serialize: {e}"))?;
    // As in the served document (its components already are).
    super::super::openapi::write_integer_ranges(&mut own);
    let Value::Object(own) = own else { return Err("the body's schema is not an object".into()) };
    let root_object = root.as_object_mut().expect("an object");
    root_object.extend(own);
    let compiled = Arc::new(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .map_err(|e| format!("the body's documented schema does not compile: {e}"))?,
    );
    validators.insert(TypeId::of::<T>(), compiled.clone());
    Ok(compiled)
}

/// Checks `body` against `T`'s documented schema; the error names each
/// offending place (a JSON pointer) and what the document asks for there.
pub fn check<T: PartialSchema + 'static>(body: &Value) -> Result<(), String> {
    let validator = validator::<T>()?;
    let problems: Vec<String> = validator
        .iter_errors(body)
        .take(5)
        .map(|error| {
            let at = error.instance_path().to_string();
            if at.is_empty() { error.to_string() } else { format!("at `{at}`: {error}") }
        })
        .collect();
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}
