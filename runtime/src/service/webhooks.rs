//! Webhooks: `POST /hooks/{id}` starts a deployment with parameters taken
//! from the JSON body by the hook's parameter map. Checked in this order,
//! each failure answered with its own 4xx and nothing started: the hook
//! exists (an unknown id and another tenant's are the same 404; ids are 128
//! random bits), its rate (per hook and per server process), the GitHub
//! style signature `X-Hub-Signature-256: sha256=<hex>` (HMAC-SHA256 of the
//! raw body, compared in constant time), the body (a JSON object), the map
//! and the deployment's parameter schema, and last the dedupe key, taken
//! atomically in the store so a redelivery starts nothing, on any server.
//! Every attempt on a known hook is an event in its tenant's log.

use super::{Service, ServiceError};
use crate::core::events::{EventRow, Webhook, apply_param_map, check_param_map, select};
use crate::store::FlowRunRow;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

/// The header GitHub signs deliveries in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// What a new webhook is to be.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// The deployment it starts, `flow/name`.
    pub deployment: String,
    /// Parameter name to a path in the body (`$.user.name`, `$.list[0]`).
    #[serde(default)]
    pub param_map: Map<String, Value>,
    /// The HMAC key deliveries are signed with; one is generated (and shown once) when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Accept unsigned deliveries (no secret at all).
    #[serde(default)]
    pub unsigned: bool,
    /// A header identifying a delivery (`X-GitHub-Delivery`): a second delivery with the same value starts nothing.
    #[serde(default)]
    pub dedupe_header: Option<String>,
    /// A body path identifying a delivery (`$.id`), instead of a header.
    #[serde(default)]
    pub dedupe_field: Option<String>,
    /// At most this many deliveries a minute; more are answered 429.
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
}

/// A webhook as made: its URL path, and its secret when it was generated (shown only now).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    /// The webhook.
    pub hook: Webhook,
    /// Where to send deliveries: `/hooks/{id}` on this server.
    pub path: String,
    /// The generated HMAC key, shown once; absent when the caller gave one or the hook is unsigned.
    pub secret: Option<String>,
}

/// How a delivery ended, with the HTTP status it is answered with.
#[derive(Debug)]
pub enum Delivery {
    /// A run was started.
    Started(Box<FlowRunRow>),
    /// The same delivery came before: nothing started.
    Duplicate(String),
    /// Refused with this status and reason.
    Refused(u16, String),
}

/// Deliveries counted per hook in the current minute, on this server.
#[derive(Default)]
pub struct RateLimits(Mutex<HashMap<String, (i64, u32)>>);

impl RateLimits {
    /// Counts a delivery; false when the hook is over `per_minute` this minute.
    fn admit(&self, hook: &str, per_minute: u32, now: DateTime<Utc>) -> bool {
        let minute = now.timestamp() / 60;
        let mut counts = self.0.lock().expect("rate lock");
        if counts.len() > 10_000 {
            counts.retain(|_, (at, _)| *at == minute);
        }
        let entry = counts.entry(hook.to_string()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= per_minute
    }
}

/// The sealed key's name: bound to the hook, so a sealed key moved to another row does not open.
fn key_name(id: &str) -> String {
    format!("webhook:{id}")
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `key`, compared in constant time.
pub fn signature_valid(key: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else { return false };
    let Ok(expected) = hex::decode(hex_digest) else { return false };
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

impl Service {
    /// Makes a webhook for a deployment of `tenant`.
    pub fn create_webhook(&self, tenant: &str, request: WebhookRequest) -> Result<WebhookCreated, ServiceError> {
        self.deployment(tenant, &request.deployment)?;
        check_param_map(&request.param_map).map_err(ServiceError::Invalid)?;
        if let Some(field) = &request.dedupe_field {
            select(&Value::Null, field).map_err(ServiceError::Invalid)?;
        }
        if request.dedupe_header.is_some() && request.dedupe_field.is_some() {
            return Err(ServiceError::Invalid("give a dedupe header or a dedupe field, not both".into()));
        }
        if request.rate_per_minute == Some(0) {
            return Err(ServiceError::Invalid("a rate of 0 a minute would refuse every delivery".into()));
        }
        if request.unsigned && request.secret.is_some() {
            return Err(ServiceError::Invalid("an unsigned hook has no secret; drop one of the two".into()));
        }
        if request.secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ServiceError::Invalid("a webhook secret needs at least 16 characters".into()));
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        let generated =
            (!request.unsigned && request.secret.is_none()).then(|| hex::encode(rand::random::<[u8; 32]>()));
        let secret = request.secret.clone().or_else(|| generated.clone());
        let sealed = match &secret {
            Some(secret) => Some(self.seal_value(tenant, &key_name(&id), secret)?),
            None => None,
        };
        let hook = Webhook {
            id: id.clone(),
            tenant: tenant.to_string(),
            deployment: request.deployment,
            param_map: request.param_map,
            signed: secret.is_some(),
            dedupe_header: request.dedupe_header.map(|h| h.to_ascii_lowercase()),
            dedupe_field: request.dedupe_field,
            rate_per_minute: request.rate_per_minute,
            created: Utc::now(),
        };
        self.store.create_webhook(&hook, sealed.as_deref())?;
        Ok(WebhookCreated { path: format!("/hooks/{id}"), hook, secret: generated })
    }

    /// A tenant's webhooks.
    pub fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>, ServiceError> {
        Ok(self.store.webhooks(tenant)?)
    }

    /// Deletes a tenant's webhook.
    pub fn delete_webhook(&self, tenant: &str, id: &str) -> Result<(), ServiceError> {
        if self.store.delete_webhook(tenant, id)? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("no webhook `{id}`; `sluice webhook ls` lists them")))
        }
    }

    /// Handles a delivery to hook `id`; `header` reads a request header by
    /// lower-case name. Returns the outcome and the event that records it
    /// (none for an unknown hook: there is no tenant to record it for).
    pub async fn deliver(
        &self,
        id: &str,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> (Delivery, Option<EventRow>) {
        let now = Utc::now();
        let hook = match self.store.webhook(id) {
            Ok(Some((hook, sealed))) => (hook, sealed),
            Ok(None) => return (Delivery::Refused(404, "no such webhook".into()), None),
            Err(err) => return (Delivery::Refused(500, err.to_string()), None),
        };
        let (hook, sealed) = hook;
        let outcome = self.check_and_start(&hook, sealed.as_deref(), &header, body, now).await;
        let (name, payload, run) = match &outcome {
            Delivery::Started(run) => ("sluice.webhook.received", json!({"hook": hook.id}), Some(run.id.clone())),
            Delivery::Duplicate(key) => ("sluice.webhook.duplicate", json!({"hook": hook.id, "dedupe_key": key}), None),
            Delivery::Refused(status, reason) => {
                ("sluice.webhook.rejected", json!({"hook": hook.id, "status": status, "reason": reason}), None)
            }
        };
        let event = crate::core::events::NewEvent {
            tenant: hook.tenant.clone(),
            name: name.to_string(),
            time: now,
            flow_run: run,
            deployment: Some(hook.deployment.clone()),
            payload,
        };
        let recorded = match self.store.insert_event(&event) {
            Ok(seq) => Some(EventRow {
                seq,
                tenant: event.tenant,
                name: event.name,
                time: event.time,
                flow_run: event.flow_run,
                task_run: None,
                flow: None,
                deployment: event.deployment,
                tags: Vec::new(),
                payload: event.payload,
            }),
            Err(err) => {
                tracing::warn!("webhook {}: the delivery could not be recorded: {err}", hook.id);
                None
            }
        };
        (outcome, recorded)
    }

    async fn check_and_start(
        &self,
        hook: &Webhook,
        sealed: Option<&[u8]>,
        header: &impl Fn(&str) -> Option<String>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Delivery {
        if let Some(per_minute) = hook.rate_per_minute
            && !self.hook_rates.admit(&hook.id, per_minute, now)
        {
            return Delivery::Refused(429, format!("this webhook takes at most {per_minute} deliveries a minute"));
        }
        if let Some(sealed) = sealed {
            let key = match self.open_value(&hook.tenant, &key_name(&hook.id), sealed) {
                Ok(key) => key,
                Err(err) => return Delivery::Refused(500, err.to_string()),
            };
            if !signature_valid(key.as_bytes(), body, header(SIGNATURE_HEADER).as_deref()) {
                return Delivery::Refused(
                    401,
                    "the X-Hub-Signature-256 header is missing or is not sha256=HMAC-SHA256(secret, body)".into(),
                );
            }
        }
        let document: Value = match serde_json::from_slice(body) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => return Delivery::Refused(400, "the body must be a JSON object".into()),
            Err(err) => return Delivery::Refused(400, format!("the body is not JSON: {err}")),
        };
        let parameters = match apply_param_map(&hook.param_map, &document) {
            Ok(parameters) => parameters,
            Err(why) => return Delivery::Refused(422, why),
        };
        if let Err(err) = self.check_run_parameters(&hook.tenant, &hook.deployment, parameters.clone()) {
            return Delivery::Refused(status_of(&err), err.to_string());
        }
        let key = match (&hook.dedupe_header, &hook.dedupe_field) {
            (Some(name), _) => header(name),
            (_, Some(path)) => select(&document, path).ok().flatten().map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            _ => None,
        };
        if let Some(key) = key {
            match self.store.first_delivery(&hook.tenant, &hook.id, &key, now) {
                Ok(true) => {}
                Ok(false) => return Delivery::Duplicate(key),
                Err(err) => return Delivery::Refused(500, err.to_string()),
            }
        }
        match self.create_run(&hook.tenant, &hook.deployment, parameters, None).await {
            Ok(run) => Delivery::Started(Box::new(run)),
            Err(err) => Delivery::Refused(status_of(&err), err.to_string()),
        }
    }
}

fn status_of(err: &ServiceError) -> u16 {
    match err {
        ServiceError::NotFound(_) => 404,
        ServiceError::Invalid(_) => 422,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_checked_against_the_raw_body() {
        let key = b"0123456789abcdef";
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(b"{}");
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_valid(key, b"{}", Some(&good)));
        assert!(!signature_valid(key, b"{ }", Some(&good)), "another body");
        assert!(!signature_valid(b"another key 0000", b"{}", Some(&good)));
        assert!(!signature_valid(key, b"{}", None));
        assert!(!signature_valid(key, b"{}", Some("sha1=00")));
    }

    #[test]
    fn the_rate_limit_counts_per_minute() {
        let limits = RateLimits::default();
        let now = DateTime::from_timestamp(600, 0).unwrap();
        assert!(limits.admit("h", 2, now));
        assert!(limits.admit("h", 2, now));
        assert!(!limits.admit("h", 2, now));
        assert!(limits.admit("other", 2, now));
        assert!(limits.admit("h", 2, now + chrono::Duration::seconds(60)));
    }
}
