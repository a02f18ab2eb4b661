//! `push`: check that the bytes are a flow component, store them under
//! their digest, record what they declare.

use super::{MAX_ARTIFACT_BYTES, Service, ServiceError};
use crate::core::deployment::ArtifactMeta;
use serde::Serialize;

/// What a push did.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Pushed {
    /// The artifact's metadata.
    pub artifact: ArtifactMeta,
    /// False when the same bytes were already stored.
    pub newly_stored: bool,
}

impl Service {
    /// Validates and stores a component; identical bytes are stored once.
    /// The tenant pushing it may use it afterwards; other tenants may not
    /// until they push the same bytes themselves.
    pub async fn push(
        &self,
        tenant: &str,
        bytes: Vec<u8>,
        progress: Option<&(dyn Fn(u64, u64) + Sync)>,
    ) -> Result<Pushed, ServiceError> {
        if bytes.len() > MAX_ARTIFACT_BYTES {
            return Err(ServiceError::Invalid(format!(
                "the file is {} MiB; artifacts are limited to {} MiB",
                bytes.len() >> 20,
                MAX_ARTIFACT_BYTES >> 20
            )));
        }
        let program = self.sandbox.load(&bytes).await?;
        let size = bytes.len() as u64;
        let outcome = self.artifacts.put(bytes.into(), progress).await?;
        let meta = ArtifactMeta {
            digest: program.digest.to_string(),
            size,
            description: program.description.clone(),
            imports: program.imports.clone(),
            pushed_at: chrono::Utc::now(),
        };
        // "Already stored" is the tenant's own news: it must not learn that
        // another tenant pushed the same bytes.
        let new_to_tenant = self.store.save_artifact(tenant, &meta)?;
        let artifact = self.store.artifact(Some(tenant), &meta.digest)?.unwrap_or(meta);
        Ok(Pushed { artifact, newly_stored: outcome.newly_stored || new_to_tenant })
    }
}
