//! `sluice login` / `sluice logout`: a saved profile naming the server the
//! CLI talks to, in `$SLUICE_HOME/profile.json`. `SLUICE_API_URL` wins over it.

use super::{CliError, home};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::ExitCode;

/// What a profile holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The server's URL.
    pub api_url: Option<String>,
    /// The token sent to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn path() -> PathBuf {
    home::data_dir().join("profile.json")
}

/// The saved profile, if any; a profile that cannot be read is an error, not ignored.
pub fn load() -> Result<Option<Profile>, CliError> {
    let path = path();
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            CliError::usage(format!("the profile {} is not valid: {e}; fix or delete it", path.display()))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(CliError::failure(format!("cannot read the profile {}: {err}", path.display()))),
    }
}

/// Arguments of `sluice login`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The server's URL, e.g. http://127.0.0.1:4200.
    #[arg(long)]
    api: String,
    /// The token to send (`sluice token create` makes one; a new server writes the first to
    /// `$SLUICE_HOME/admin-token`).
    #[arg(long, env = "SLUICE_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Saves the server URL (after checking the server answers).
pub async fn login(args: LoginArgs) -> Result<ExitCode, CliError> {
    let client = crate::client::ApiClient::new(&args.api, args.token.as_deref())?;
    client.health().await?;
    let who = match &args.token {
        Some(_) => {
            let who = client.whoami().await?;
            format!(
                " as a {} of tenant `{}`",
                who["role"].as_str().unwrap_or("?"),
                who["tenant"].as_str().unwrap_or("?")
            )
        }
        None => String::new(),
    };
    let path = path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::failure(format!("cannot create {}: {e}", dir.display())))?;
    }
    let profile = Profile { api_url: Some(args.api.trim_end_matches('/').to_string()), token: args.token };
    let text = serde_json::to_string_pretty(&profile).expect("a profile is JSON");
    // It holds a secret: only its owner may read it.
    crate::secret_file::write_private(&path, text.as_bytes())
        .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
    println!("logged in to {}{who}: commands now go to that server (profile {})", args.api, path.display());
    Ok(ExitCode::SUCCESS)
}

/// Forgets the saved server: commands use the embedded store again.
pub fn logout() -> Result<ExitCode, CliError> {
    match std::fs::remove_file(path()) {
        Ok(()) => println!("logged out: commands use this machine's store"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => println!("not logged in"),
        Err(err) => return Err(CliError::failure(format!("cannot remove the profile: {err}"))),
    }
    Ok(ExitCode::SUCCESS)
}
