//! A client of a Sluice server's HTTP API, for the CLI: the same calls the
//! embedded service answers, over `/api/v1`.

use crate::core::deployment::{ArtifactMeta, Deployment};
use crate::core::pool::{WorkPool, WorkQueue};
use crate::core::tenant::{NewToken, Role, Tenant, TenantPolicy, TokenInfo};
use crate::service::{Deployed, FollowedLine, LogsEnded, Pushed, QueueRequest, ServiceError};
use crate::store::{CancelOutcome, FlowRunRow, LogRow, RunFilter};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Connections of a followed log that may drop in a row before following gives up.
const FOLLOW_RECONNECTS: u32 = 5;

/// The error an API error answer (`{"error": {"message"}}`) stands for.
fn refusal(status: reqwest::StatusCode, body: &Value) -> ServiceError {
    let message = body["error"]["message"].as_str().unwrap_or("no message").to_string();
    match status.as_u16() {
        404 => ServiceError::NotFound(message),
        401 | 403 => ServiceError::Denied(message),
        400..=499 => ServiceError::Invalid(message),
        _ => ServiceError::Other(format!("the server failed ({status}): {message}")),
    }
}

/// The `Authorization` header of every call, marked sensitive so it is never logged.
pub fn bearer_headers(token: Option<&str>) -> Result<reqwest::header::HeaderMap, ServiceError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ServiceError::Invalid("the token holds characters a header cannot carry".into()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// A client of the server at one URL.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    url: String,
}

impl ApiClient {
    /// The server's URL, without a trailing `/` (its web UI is there too).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of `url` (e.g. `http://127.0.0.1:4200`) sending `token` with every call.
    pub fn new(url: &str, token: Option<&str>) -> Result<Self, ServiceError> {
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ServiceError::Invalid(format!("`{url}` is not a server URL; write it as http://HOST:PORT")));
        }
        let http = reqwest::Client::builder()
            .default_headers(bearer_headers(token)?)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ServiceError::Other(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { http, base: format!("{url}/api/v1"), url })
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ServiceError> {
        let response = request.send().await.map_err(|e| {
            ServiceError::Other(format!(
                "the server at {} cannot be reached: {e}; is `sluice server` running?",
                self.url
            ))
        })?;
        let status = response.status();
        let body: Value = if status == reqwest::StatusCode::NO_CONTENT {
            Value::Null
        } else {
            response
                .json()
                .await
                .map_err(|e| ServiceError::Other(format!("the server sent a body that is not JSON: {e}")))?
        };
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        serde_json::from_value(body).map_err(|e| ServiceError::Other(format!("unexpected answer from the server: {e}")))
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(format!("{}{path}", self.base))
    }

    /// Checks that the server answers.
    pub async fn health(&self) -> Result<(), ServiceError> {
        self.send::<Value>(self.get("/health")).await.map(|_| ())
    }

    /// The tenant and role of this client's token.
    pub async fn whoami(&self) -> Result<Value, ServiceError> {
        self.send(self.get("/whoami")).await
    }

    /// Every tenant.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, ServiceError> {
        self.send(self.get("/tenants")).await
    }

    /// Creates a tenant.
    pub async fn create_tenant(&self, name: &str, policy: &TenantPolicy) -> Result<Tenant, ServiceError> {
        self.send(self.post("/tenants").json(&json!({ "name": name, "policy": policy }))).await
    }

    /// Replaces a tenant's policy.
    pub async fn set_tenant_policy(&self, name: &str, policy: &TenantPolicy) -> Result<Tenant, ServiceError> {
        self.send(self.http.put(format!("{}/tenants/{}/policy", self.base, name)).json(policy)).await
    }

    /// Deletes a tenant.
    pub async fn delete_tenant(&self, name: &str) -> Result<(), ServiceError> {
        self.send::<Value>(self.delete(&format!("/tenants/{}", name))).await.map(|_| ())
    }

    /// Tokens (of `tenant`, for the operator).
    pub async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, ServiceError> {
        match tenant {
            Some(tenant) => {
                crate::service::check_name("tenant", tenant)?;
                self.send(self.get(&format!("/tokens?tenant={tenant}"))).await
            }
            None => self.send(self.get("/tokens")).await,
        }
    }

    /// Makes a token.
    pub async fn create_token(
        &self,
        tenant: Option<&str>,
        role: Role,
        name: Option<&str>,
        expires: Option<DateTime<Utc>>,
    ) -> Result<NewToken, ServiceError> {
        let body = json!({ "tenant": tenant, "role": role, "name": name, "expires": expires });
        self.send(self.post("/tokens").json(&body)).await
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ServiceError> {
        self.send::<Value>(self.delete(&format!("/tokens/{}", id))).await.map(|_| ())
    }

    /// Uploads a component.
    pub async fn push(&self, bytes: Vec<u8>) -> Result<Pushed, ServiceError> {
        self.send(self.post("/artifacts").header("content-type", "application/wasm").body(bytes)).await
    }

    /// Every pushed artifact.
    pub async fn artifacts(&self) -> Result<Vec<ArtifactMeta>, ServiceError> {
        self.send(self.get("/artifacts")).await
    }

    /// One artifact's metadata.
    pub async fn artifact(&self, digest: &str) -> Result<ArtifactMeta, ServiceError> {
        self.send(self.get(&format!("/artifacts/{digest}"))).await
    }

    /// Creates or updates a deployment (its artifact given by digest).
    pub async fn deploy(&self, body: &Value) -> Result<Deployed, ServiceError> {
        self.send(self.post("/deployments").json(body)).await
    }

    /// Every deployment.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, ServiceError> {
        self.send(self.get("/deployments")).await
    }

    /// One deployment.
    pub async fn deployment(&self, full_name: &str) -> Result<Deployment, ServiceError> {
        self.send(self.get(&format!("/deployments/{full_name}"))).await
    }

    /// The workers that asked the server for runs of `pool` in the last minute.
    pub async fn pool_workers(&self, pool: &str) -> Result<Vec<Value>, ServiceError> {
        self.send(self.get(&format!("/work-pools/{pool}/workers"))).await
    }

    /// One deployment with its flow's parameter schema.
    pub async fn deployment_detail(&self, full_name: &str) -> Result<crate::service::DeploymentDetail, ServiceError> {
        self.send(self.get(&format!("/deployments/{full_name}"))).await
    }

    /// Pauses or resumes a deployment.
    pub async fn set_paused(&self, full_name: &str, paused: bool) -> Result<Deployment, ServiceError> {
        let action = if paused { "pause" } else { "resume" };
        self.send(self.post(&format!("/deployments/{full_name}/{action}"))).await
    }

    /// Deletes a deployment.
    pub async fn delete_deployment(&self, full_name: &str) -> Result<(), ServiceError> {
        self.send::<Value>(self.delete(&format!("/deployments/{full_name}"))).await.map(|_| ())
    }

    /// Sets a secret; true when it was new.
    pub async fn set_secret(&self, name: &str, value: &str) -> Result<bool, ServiceError> {
        let answer: Value = self.send(self.post("/secrets").json(&json!({ "name": name, "value": value }))).await?;
        Ok(answer["created"].as_bool().unwrap_or(false))
    }

    /// The secrets' names and dates.
    pub async fn secrets(&self) -> Result<Vec<crate::store::SecretInfo>, ServiceError> {
        self.send(self.get("/secrets")).await
    }

    /// Deletes a secret.
    pub async fn delete_secret(&self, name: &str) -> Result<(), ServiceError> {
        self.send::<Value>(self.delete(&format!("/secrets/{name}"))).await.map(|_| ())
    }

    /// Creates a run of a deployment.
    pub async fn create_run(
        &self,
        full_name: &str,
        parameters: Map<String, Value>,
        start: Option<DateTime<Utc>>,
    ) -> Result<FlowRunRow, ServiceError> {
        let body = json!({ "parameters": parameters, "start": start });
        self.send(self.post(&format!("/deployments/{full_name}/runs")).json(&body)).await
    }

    /// Flow runs, newest first.
    pub async fn flow_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRunRow>, ServiceError> {
        let mut query: Vec<(&str, String)> = vec![("limit", filter.limit.to_string())];
        if let Some(flow) = &filter.flow {
            query.push(("flow", flow.clone()));
        }
        if let Some(deployment) = &filter.deployment {
            query.push(("deployment", deployment.clone()));
        }
        if let Some(state) = filter.state {
            query.push(("state", state.name().to_string()));
        }
        let url = reqwest::Url::parse_with_params(&format!("{}/flow-runs", self.base), &query)
            .map_err(|e| ServiceError::Invalid(format!("bad filter: {e}")))?;
        self.send(self.http.get(url)).await
    }

    /// A run with its history, task runs and subflows.
    pub async fn inspect_run(&self, id_or_name: &str) -> Result<Value, ServiceError> {
        self.send(self.get(&format!("/flow-runs/{id_or_name}"))).await
    }

    /// A run's logs.
    pub async fn logs(&self, id_or_name: &str, tail: Option<usize>) -> Result<Vec<LogRow>, ServiceError> {
        let path = match tail {
            Some(tail) => format!("/flow-runs/{id_or_name}/logs?tail={tail}"),
            None => format!("/flow-runs/{id_or_name}/logs"),
        };
        self.send(self.get(&path)).await
    }

    /// Follows a run's logs until it ends (`GET /flow-runs/{id}/logs/follow`,
    /// Server-Sent Events): `on_line` gets each line, oldest first; a dropped
    /// connection is resumed after the last line seen.
    pub async fn follow_logs(
        &self,
        id_or_name: &str,
        mut on_line: impl FnMut(FollowedLine),
    ) -> Result<LogsEnded, ServiceError> {
        let mut after: i64 = -1;
        let mut failures = 0;
        loop {
            let request = self.get(&format!("/flow-runs/{id_or_name}/logs/follow?after={after}"));
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) if failures < FOLLOW_RECONNECTS => {
                    failures += 1;
                    tracing::debug!("following logs: {e}; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    return Err(ServiceError::Other(format!(
                        "the server at {} cannot be reached: {e}; is `sluice server` running?",
                        self.url
                    )));
                }
            };
            let status = response.status();
            if !status.is_success() {
                let body: Value = response.json().await.unwrap_or_default();
                return Err(refusal(status, &body));
            }
            let mut events = crate::client_sse::EventReader::new(response);
            loop {
                match events.next().await {
                    Ok(Some(event)) => match event.name.as_str() {
                        "log" => {
                            let line: FollowedLine = serde_json::from_str(&event.data).map_err(|e| {
                                ServiceError::Other(format!("the server sent a log line that is not one: {e}"))
                            })?;
                            after = line.seq;
                            failures = 0;
                            on_line(line);
                        }
                        "end" => {
                            return serde_json::from_str(&event.data)
                                .map_err(|e| ServiceError::Other(format!("the server sent an unreadable end: {e}")));
                        }
                        "failure" => {
                            return Err(ServiceError::Other(format!("the server stopped following: {}", event.data)));
                        }
                        _ => {}
                    },
                    // The connection ended before the run did: resume after the last line.
                    Ok(None) | Err(_) if failures < FOLLOW_RECONNECTS => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    Ok(None) => return Err(ServiceError::Other("the server kept closing the log stream".into())),
                    Err(e) => return Err(ServiceError::Other(format!("the log stream broke: {e}"))),
                }
            }
        }
    }

    /// Asks a run to stop.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, ServiceError> {
        let answer: Value = self.send(self.post(&format!("/flow-runs/{id}/cancel"))).await?;
        serde_json::from_value(answer["outcome"].clone()).map_err(|e| ServiceError::Other(e.to_string()))
    }

    /// Runs an ended, not completed run again as its next attempt.
    pub async fn retry(&self, id: &str) -> Result<FlowRunRow, ServiceError> {
        self.send(self.post(&format!("/flow-runs/{id}/retry"))).await
    }

    /// Resumes a run paused for input with `input`.
    pub async fn resume(&self, id: &str, input: &Value) -> Result<FlowRunRow, ServiceError> {
        self.send(self.post(&format!("/flow-runs/{id}/resume")).json(&json!({ "input": input }))).await
    }

    /// Every work pool.
    pub async fn work_pools(&self) -> Result<Vec<WorkPool>, ServiceError> {
        self.send(self.get("/work-pools")).await
    }

    /// One pool and its queues.
    pub async fn inspect_pool(&self, name: &str) -> Result<Value, ServiceError> {
        self.send(self.get(&format!("/work-pools/{name}"))).await
    }

    /// Creates a pool.
    pub async fn create_work_pool(&self, name: &str, description: Option<String>) -> Result<WorkPool, ServiceError> {
        self.send(self.post("/work-pools").json(&json!({ "name": name, "description": description }))).await
    }

    /// Pauses or resumes a pool.
    pub async fn set_work_pool_paused(&self, name: &str, paused: bool) -> Result<WorkPool, ServiceError> {
        let action = if paused { "pause" } else { "resume" };
        self.send(self.post(&format!("/work-pools/{name}/{action}"))).await
    }

    /// Deletes a pool.
    pub async fn delete_work_pool(&self, name: &str) -> Result<(), ServiceError> {
        self.send::<Value>(self.delete(&format!("/work-pools/{name}"))).await.map(|_| ())
    }

    /// The queues of a pool (or of every pool).
    pub async fn work_queues(&self, pool: Option<&str>) -> Result<Vec<WorkQueue>, ServiceError> {
        match pool {
            Some(pool) => self.send(self.get(&format!("/work-pools/{pool}/queues"))).await,
            None => {
                let mut all = Vec::new();
                for pool in self.work_pools().await? {
                    let queues: Vec<WorkQueue> =
                        self.send(self.get(&format!("/work-pools/{}/queues", pool.name))).await?;
                    all.extend(queues);
                }
                Ok(all)
            }
        }
    }

    /// Creates a queue.
    pub async fn create_work_queue(&self, pool: &str, request: &QueueRequest) -> Result<WorkQueue, ServiceError> {
        let body = json!({
            "name": request.name, "tags": request.tags, "priority": request.priority,
            "concurrency_limit": request.concurrency_limit,
        });
        self.send(self.post(&format!("/work-pools/{pool}/queues")).json(&body)).await
    }

    /// Pauses or resumes a queue.
    pub async fn set_work_queue_paused(&self, pool: &str, name: &str, paused: bool) -> Result<WorkQueue, ServiceError> {
        let action = if paused { "pause" } else { "resume" };
        self.send(self.post(&format!("/work-pools/{pool}/queues/{name}/{action}"))).await
    }

    /// Deletes a queue.
    pub async fn delete_work_queue(&self, pool: &str, name: &str) -> Result<(), ServiceError> {
        self.send::<Value>(self.delete(&format!("/work-pools/{pool}/queues/{name}"))).await.map(|_| ())
    }
}

/// Events, webhooks and automations.
impl ApiClient {
    /// The server's URL (webhook URLs are under it).
    pub fn server_url(&self) -> &str {
        &self.url
    }

    /// A page of the tenant's events.
    pub async fn events(
        &self,
        query: &crate::service::EventQuery,
    ) -> Result<Vec<crate::core::events::EventRow>, ServiceError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        let fields = [("name", &query.name), ("deployment", &query.deployment), ("flow_run", &query.flow_run)];
        for (name, value) in fields {
            if let Some(value) = value {
                params.push((name, value.clone()));
            }
        }
        if let Some(since) = query.since {
            params.push(("since", since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)));
        }
        if let Some(before) = query.before {
            params.push(("before", before.to_string()));
        }
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        let url = reqwest::Url::parse_with_params(&format!("{}/events", self.base), &params)
            .map_err(|e| ServiceError::Invalid(format!("bad filter: {e}")))?;
        self.send(self.http.get(url)).await
    }

    /// Makes a webhook.
    pub async fn create_webhook(
        &self,
        request: &crate::service::WebhookRequest,
    ) -> Result<crate::service::WebhookCreated, ServiceError> {
        self.send(self.post("/webhooks").json(request)).await
    }

    /// The tenant's webhooks.
    pub async fn webhooks(&self) -> Result<Vec<crate::core::events::Webhook>, ServiceError> {
        self.send(self.get("/webhooks")).await
    }

    /// Deletes a webhook.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), ServiceError> {
        self.send::<Value>(self.delete(&format!("/webhooks/{id}"))).await.map(|_| ())
    }

    /// Makes an automation.
    pub async fn create_automation(
        &self,
        request: &crate::service::AutomationRequest,
    ) -> Result<crate::core::events::Automation, ServiceError> {
        self.send(self.post("/automations").json(request)).await
    }

    /// The tenant's automations.
    pub async fn automations(&self) -> Result<Vec<crate::core::events::Automation>, ServiceError> {
        self.send(self.get("/automations")).await
    }

    /// Deletes an automation by id or name.
    pub async fn delete_automation(&self, id: &str) -> Result<(), ServiceError> {
        self.send::<Value>(self.delete(&format!("/automations/{id}"))).await.map(|_| ())
    }
}
