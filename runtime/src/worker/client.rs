//! The worker's side of the server API.

use crate::artifact::Digest;
use crate::core::record::Event;
use crate::server::ClaimedRun;
use anyhow::Context;
use serde_json::{Value, json};
use std::time::Duration;

/// Why events were not recorded.
#[derive(Debug)]
pub enum EventsError {
    /// The server refused them for good (for example, a lost lease).
    Refused(String),
    /// The server could not be reached or failed; a retry may help.
    Transient(anyhow::Error),
}

/// An HTTP client of one server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of the server at `api` (e.g. `http://127.0.0.1:4200`).
    pub fn new(api: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let base = format!("{}/api/v1", api.trim_end_matches('/'));
        let headers = crate::client::bearer_headers(token)?;
        let http =
            reqwest::Client::builder().default_headers(headers).connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Self { http, base })
    }

    async fn checked(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or("no message").to_string();
        anyhow::bail!("the server answered {status}: {message}")
    }

    /// Claims up to `limit` runs of `pool` (its `queues`, or all), or of the
    /// served `deployment` when one is named, waiting up to `wait` for one.
    pub async fn claim(
        &self,
        worker: &str,
        (pool, queues, deployment): (&str, &[String], Option<&str>),
        limit: usize,
        wait: Duration,
    ) -> anyhow::Result<Vec<ClaimedRun>> {
        let url = format!("{}/workers/{}/claim", self.base, worker);
        let mut body = json!({ "limit": limit, "wait_ms": wait.as_millis() as u64, "pool": pool, "queues": queues });
        if let Some(deployment) = deployment {
            body["deployment"] = json!(deployment);
        }
        let response = self.http.post(url).json(&body).timeout(wait + Duration::from_secs(10)).send().await?;
        Ok(Self::checked(response).await?.json().await?)
    }

    /// Says this worker is alive; returns the runs it must cancel.
    pub async fn heartbeat(&self, worker: &str, running: &[String]) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/workers/{}/heartbeat", self.base, worker);
        let response = self.http.post(url).json(&json!({ "running": running })).send().await?;
        let body: Value = Self::checked(response).await?.json().await?;
        Ok(serde_json::from_value(body["cancel"].clone()).unwrap_or_default())
    }

    /// Says this worker has started: runs held under its name end `Crashed` and
    /// resume (where their deployments allow) at once; their ids.
    pub async fn started(&self, worker: &str) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/workers/{}/started", self.base, worker);
        let response = self.http.post(url).send().await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            // A server older than this worker: its runs wait for the heartbeat timeout.
            return Ok(Vec::new());
        }
        let body: Value = Self::checked(response).await?.json().await?;
        Ok(serde_json::from_value(body["crashed"].clone()).unwrap_or_default())
    }

    /// The queues of `pool`, for the banner.
    pub async fn queues(&self, pool: &str) -> anyhow::Result<Vec<crate::core::pool::WorkQueue>> {
        let response = self.http.get(format!("{}/work-pools/{pool}", self.base)).send().await?;
        let body: Value = Self::checked(response).await?.json().await?;
        Ok(serde_json::from_value(body["queues"].clone())?)
    }

    /// Says goodbye: the worker shows offline at once, and the runs it still
    /// held end `Crashed` and retry by policy; their ids.
    pub async fn stopped(&self, worker: &str) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/workers/{}/stopped", self.base, worker);
        let response = self.http.post(url).timeout(Duration::from_secs(5)).send().await?;
        let body: Value = Self::checked(response).await?.json().await?;
        Ok(serde_json::from_value(body["crashed"].clone()).unwrap_or_default())
    }

    /// An artifact's bytes (the caller checks the digest).
    pub async fn artifact(&self, digest: &Digest) -> anyhow::Result<bytes::Bytes> {
        let url = format!("{}/artifacts/{}/content", self.base, digest);
        let response = self.http.get(url).send().await.with_context(|| format!("fetching {digest}"))?;
        Ok(Self::checked(response).await?.bytes().await?)
    }

    /// Sends recorded events, in order. A 4xx answer is final (`Refused`):
    /// sending the same batch again cannot help.
    pub async fn events(&self, worker: &str, events: &[Event]) -> Result<(), EventsError> {
        let url = format!("{}/workers/{worker}/events", self.base);
        let response = self.http.post(url).json(events).send().await.map_err(|e| EventsError::Transient(e.into()))?;
        if response.status().is_client_error() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Err(EventsError::Refused(body["error"]["message"].as_str().unwrap_or("refused").to_string()));
        }
        Self::checked(response).await.map_err(EventsError::Transient)?;
        Ok(())
    }
}
