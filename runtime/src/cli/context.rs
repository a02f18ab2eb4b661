//! Opening the service from the environment, and turning service errors
//! into exit codes.

use super::{CliError, home};
use crate::service::{Config, Service, ServiceError};

impl From<ServiceError> for CliError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound(_) | ServiceError::Invalid(_) | ServiceError::Denied(_) => {
                CliError::usage(err.to_string())
            }
            _ => CliError::failure(err.to_string()),
        }
    }
}

/// The embedded service: SQLite in `SLUICE_HOME`, artifacts at
/// `SLUICE_STORE_URL` (default: the `artifacts` folder in `SLUICE_HOME`).
pub fn service() -> Result<Service, CliError> {
    let config = Config {
        home: home::data_dir(),
        store_url: std::env::var("SLUICE_STORE_URL").ok().filter(|url| !url.is_empty()),
        compile_cache: home::compile_cache_dir(),
    };
    Ok(Service::open(&config)?)
}
