//! Events as the event log keeps them (one tenant's: every flow-run state
//! change, what flows emit, webhook deliveries), webhooks and automations as
//! stored, and the two small languages they share: a name pattern
//! (`sluice.flow-run.*`) and a parameter map (`name=$.user.name`) that
//! picks values out of a JSON document.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The prefix of the events Sluice derives from state changes.
pub const STATE_EVENT_PREFIX: &str = "sluice.flow-run.";

/// An event as stored and listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct EventRow {
    /// Its place in the log (newest is highest); page with `before`.
    pub seq: i64,
    /// The tenant it belongs to.
    pub tenant: String,
    /// What happened: `sluice.flow-run.Completed`, `sluice.webhook.rejected`, or a flow's own name.
    pub name: String,
    /// When.
    pub time: DateTime<Utc>,
    /// The flow run it is about.
    pub flow_run: Option<String>,
    /// The task run that emitted it.
    pub task_run: Option<String>,
    /// The flow of that run.
    pub flow: Option<String>,
    /// `flow/deployment` of that run (or the webhook's deployment).
    pub deployment: Option<String>,
    /// The deployment's tags when it happened.
    pub tags: Vec<String>,
    /// What else is known: a state's message, an emitted payload, a delivery's outcome.
    pub payload: Value,
}

/// An event recorded directly (not derived from a run's records): webhook deliveries.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The tenant it belongs to.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// When.
    pub time: DateTime<Utc>,
    /// The flow run it is about.
    pub flow_run: Option<String>,
    /// `flow/deployment` it is about.
    pub deployment: Option<String>,
    /// Its payload.
    pub payload: Value,
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this tenant's.
    pub tenant: String,
    /// Only names starting with this.
    pub name_prefix: Option<String>,
    /// Only of this deployment (`flow/name`).
    pub deployment: Option<String>,
    /// Only of this flow run.
    pub flow_run: Option<String>,
    /// Only at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only older than this `seq` (the next page).
    pub before: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// A webhook as stored (its secret sealed, never listed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Webhook {
    /// Its id, unguessable: the URL is `POST /hooks/{id}`.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The deployment it starts (`flow/name`).
    pub deployment: String,
    /// Parameters taken from the body: parameter name to path (`$.user.name`).
    pub param_map: Map<String, Value>,
    /// Whether deliveries must carry `X-Hub-Signature-256`.
    pub signed: bool,
    /// A header whose value identifies a delivery (`X-GitHub-Delivery`).
    pub dedupe_header: Option<String>,
    /// A body path whose value identifies a delivery (`$.id`).
    pub dedupe_field: Option<String>,
    /// At most this many deliveries per minute (on each server); none when absent.
    pub rate_per_minute: Option<u32>,
    /// When it was made.
    pub created: DateTime<Utc>,
}

/// A webhook with its sealed HMAC key (none for an unsigned hook), as the store returns it.
pub type SealedWebhook = (Webhook, Option<Vec<u8>>);

/// What an automation does when it fires.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Starts a run of a deployment, parameters taken from the event.
    RunDeployment {
        /// `flow/name`.
        deployment: String,
        /// Parameter name to path in the event (`$.payload.user`).
        #[serde(default)]
        param_map: Map<String, Value>,
    },
    /// Pauses a deployment's schedule.
    PauseDeployment {
        /// `flow/name`.
        deployment: String,
    },
    /// Resumes a deployment's schedule.
    ResumeDeployment {
        /// `flow/name`.
        deployment: String,
    },
    /// Cancels the flow run the event is about.
    CancelRun,
}

/// When an automation fires.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Trigger {
    /// Event names it matches: exact, or ending in `*` for a prefix (`sluice.flow-run.*`).
    pub event: String,
    /// Only events of this deployment (`flow/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Only events carrying every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Fires on the `threshold`-th matching event within `within_seconds` (1: every match).
    #[serde(default = "one")]
    pub threshold: u32,
    /// The window for `threshold`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_seconds: Option<u64>,
}

fn one() -> u32 {
    1
}

/// An automation as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Automation {
    /// Its id.
    pub id: String,
    /// The tenant it belongs to; it sees only that tenant's events.
    pub tenant: String,
    /// Its name, unique in the tenant.
    pub name: String,
    /// When it fires.
    pub trigger: Trigger,
    /// What it does.
    pub action: Action,
    /// When it was made.
    pub created: DateTime<Utc>,
}

impl Trigger {
    /// Whether `event` (of the automation's tenant) matches, the count aside.
    pub fn matches(&self, event: &EventRow) -> bool {
        name_matches(&self.event, &event.name)
            && self.deployment.as_ref().is_none_or(|d| event.deployment.as_ref() == Some(d))
            && self.tags.iter().all(|tag| event.tags.contains(tag))
    }

    /// Refuses a trigger that could never fire or would fire on nothing sensible.
    pub fn check(&self) -> Result<(), String> {
        let pattern = self.event.strip_suffix('*').unwrap_or(&self.event);
        if pattern.contains('*') || (self.event.is_empty()) {
            return Err(format!(
                "event pattern `{}` must be a name, or a prefix ending in one `*` (such as `sluice.flow-run.*`)",
                self.event
            ));
        }
        if self.threshold == 0 {
            return Err("the threshold must be at least 1".into());
        }
        if self.threshold > 1 && self.within_seconds.is_none_or(|s| s == 0) {
            return Err(format!("a threshold of {} needs a window (`within`, such as 10m)", self.threshold));
        }
        Ok(())
    }
}

/// `pattern` is a name, or a prefix ending in `*`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Longest name of an emitted event, in characters.
pub const MAX_EVENT_NAME_CHARS: usize = 128;

/// Whether `name` is 1 to [`MAX_EVENT_NAME_CHARS`] characters of `[A-Za-z0-9._-]`.
pub fn is_well_formed_event_name(name: &str) -> bool {
    (1..=MAX_EVENT_NAME_CHARS).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks an event name a flow emits: well formed, and not in Sluice's own namespace.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if !is_well_formed_event_name(name) {
        return Err(format!("event name `{name}` must be 1 to {MAX_EVENT_NAME_CHARS} characters of A-Z a-z 0-9 . _ -"));
    }
    refuse_reserved_name(name)
}

/// The namespace of the events Sluice records itself. A flow that could
/// emit `sluice.flow-run.Completed` would pose as its run's state change to
/// every automation and webhook (Prefect keeps `prefect.` the same way).
pub const RESERVED_EVENT_PREFIX: &str = "sluice.";

/// Refuses an emitted event's name in [`RESERVED_EVENT_PREFIX`], in any case.
pub fn refuse_reserved_name(name: &str) -> Result<(), String> {
    let reserved =
        name.get(..RESERVED_EVENT_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_EVENT_PREFIX));
    if reserved {
        return Err(format!(
            "event name `{name}`: the prefix `{RESERVED_EVENT_PREFIX}` is kept for the events Sluice records itself \
             (such as `{STATE_EVENT_PREFIX}Failed`); give yours another prefix"
        ));
    }
    Ok(())
}

/// Largest payload of an emitted event, serialized.
pub const MAX_EMITTED_PAYLOAD_BYTES: usize = 64 << 10;

/// Checks an emitted payload: a JSON object of at most 64 KiB.
pub fn check_event_payload(payload: &Value) -> Result<(), String> {
    if !payload.is_object() {
        return Err("an event's payload must be a JSON object".into());
    }
    let size = payload.to_string().len();
    if size > MAX_EMITTED_PAYLOAD_BYTES {
        return Err(format!("an event's payload is {size} bytes; at most {MAX_EMITTED_PAYLOAD_BYTES} are kept"));
    }
    Ok(())
}

/// One step of a path: a field or a list index.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

/// Parses `$.a.b`, `$.list[0].c`, `$["odd key"]`: a small JSONPath subset.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("path `{path}` {why}; write it as $.field, $.list[0] or $.a.b[2].c");
    let mut rest = path.trim().strip_prefix('$').ok_or_else(|| bad("does not start with `$`"))?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            if field.is_empty() {
                return Err(bad("has an empty field name"));
            }
            steps.push(Step::Field(field.to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| bad("has a `[` without `]`"))?;
            let inside = after[..end].trim();
            let step = if let Some(quoted) = inside.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                Step::Field(quoted.to_string())
            } else {
                Step::Index(inside.parse().map_err(|_| bad("has an index that is not a number"))?)
            };
            steps.push(step);
            rest = &after[end + 1..];
        } else {
            return Err(bad("has text where `.` or `[` belongs"));
        }
    }
    Ok(steps)
}

/// The value at `path` in `document`, if there is one.
pub fn select<'a>(document: &'a Value, path: &str) -> Result<Option<&'a Value>, String> {
    let mut here = document;
    for step in parse_path(path)? {
        let next = match step {
            Step::Field(field) => here.get(field.as_str()),
            Step::Index(index) => here.get(index),
        };
        match next {
            Some(value) => here = value,
            None => return Ok(None),
        }
    }
    Ok(Some(here))
}

/// Parses `name=$.path` entries (from the CLI) into a parameter map.
pub fn parse_param_map(entries: &[String]) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for entry in entries {
        let (name, path) =
            entry.split_once('=').ok_or_else(|| format!("`{entry}` is not PARAM=PATH (such as `name=$.user.name`)"))?;
        parse_path(path)?;
        map.insert(name.trim().to_string(), Value::String(path.trim().to_string()));
    }
    Ok(map)
}

/// Checks a stored parameter map: each value a path that parses.
pub fn check_param_map(map: &Map<String, Value>) -> Result<(), String> {
    for (name, path) in map {
        let path = path.as_str().ok_or_else(|| format!("parameter `{name}` maps to a non-string path"))?;
        parse_path(path)?;
    }
    Ok(())
}

/// Applies a parameter map to `document`: a missing path is an error naming it.
pub fn apply_param_map(map: &Map<String, Value>, document: &Value) -> Result<Map<String, Value>, String> {
    let mut parameters = Map::new();
    for (name, path) in map {
        let path = path.as_str().ok_or_else(|| format!("parameter `{name}` maps to a non-string path"))?;
        let value =
            select(document, path)?.ok_or_else(|| format!("parameter `{name}`: the body has nothing at `{path}`"))?;
        parameters.insert(name.clone(), value.clone());
    }
    Ok(parameters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_pick_fields_and_list_items_and_say_what_is_wrong() {
        let body = json!({"user": {"name": "ada", "tags": ["x", "y"]}, "odd key": 1});
        assert_eq!(select(&body, "$.user.name").unwrap(), Some(&json!("ada")));
        assert_eq!(select(&body, "$.user.tags[1]").unwrap(), Some(&json!("y")));
        assert_eq!(select(&body, "$[\"odd key\"]").unwrap(), Some(&json!(1)));
        assert_eq!(select(&body, "$").unwrap(), Some(&body));
        assert_eq!(select(&body, "$.user.missing").unwrap(), None);
        assert!(select(&body, "user.name").unwrap_err().contains("does not start with `$`"));
        assert!(select(&body, "$.list[x]").unwrap_err().contains("not a number"));
        let map = parse_param_map(&["who=$.user.name".into()]).unwrap();
        assert_eq!(apply_param_map(&map, &body).unwrap()["who"], json!("ada"));
        assert!(apply_param_map(&map, &json!({})).unwrap_err().contains("nothing at `$.user.name`"));
        assert!(parse_param_map(&["nopath".into()]).is_err());
    }

    #[test]
    fn patterns_match_names_or_prefixes_and_triggers_need_a_window_for_a_count() {
        assert!(name_matches("sluice.flow-run.*", "sluice.flow-run.Failed"));
        assert!(!name_matches("sluice.flow-run.Failed", "sluice.flow-run.Completed"));
        let trigger = Trigger { event: "x".into(), threshold: 3, ..Trigger::default() };
        assert!(trigger.check().unwrap_err().contains("needs a window"));
        assert!(Trigger { event: "a*b*".into(), threshold: 1, ..Trigger::default() }.check().is_err());
        assert!(check_event_name("deploy.approved").is_ok());
        assert!(check_event_name("has space").is_err());
        for forged in ["sluice.flow-run.Failed", "Sluice.anything", "SLUICE.x"] {
            assert!(check_event_name(forged).unwrap_err().contains("is kept for"), "{forged}");
        }
        assert!(check_event_name("sluicer.ok").is_ok() && check_event_name("sluice").is_ok());
        assert!(check_event_payload(&json!([1])).is_err());
    }
}
