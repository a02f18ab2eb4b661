//! componentize-py, installed on first use into a venv of its own in the
//! toolchain folder, under a file lock so two builds never install at once.

use crate::cli::CliError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release `sluice build` uses (the WIT bindings it
/// generates are what `guest-sdk/python` is written against).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The folder holding toolchains and cached builds: `SLUICE_TOOLCHAIN_DIR`, else
/// inside `SLUICE_HOME` when set, else the platform's cache folder.
pub fn toolchain_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_TOOLCHAIN_DIR") {
        return PathBuf::from(dir);
    }
    if std::env::var_os("SLUICE_HOME").is_some() {
        return crate::cli::home::data_dir().join("cache").join("toolchains");
    }
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("sluice").join("toolchains")
}

/// A ready componentize-py venv.
pub struct Toolchain {
    venv: PathBuf,
}

impl Toolchain {
    /// The venv's Python (runs the SDK's pre-build check).
    pub fn python(&self) -> PathBuf {
        self.venv.join("bin").join("python")
    }

    /// The `componentize-py` command.
    pub fn componentize_py(&self) -> PathBuf {
        self.venv.join("bin").join("componentize-py")
    }
}

/// The venv with componentize-py, installing it first when it is missing.
pub fn ensure(root: &Path) -> Result<Toolchain, CliError> {
    let venv = root.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
    let marker = venv.join(".sluice-installed");
    if marker.exists() {
        return Ok(Toolchain { venv });
    }
    std::fs::create_dir_all(root)
        .map_err(|e| CliError::failure(format!("cannot create the toolchain folder `{}`: {e}", root.display())))?;
    let lock_path = root.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| CliError::failure(format!("cannot create `{}`: {e}", lock_path.display())))?;
    lock.lock().map_err(|e| CliError::failure(format!("cannot lock `{}`: {e}", lock_path.display())))?;
    // Another build may have installed it while this one waited for the lock.
    if marker.exists() {
        return Ok(Toolchain { venv });
    }
    eprintln!(
        "Installing componentize-py {COMPONENTIZE_PY_VERSION} into {} (first use, about a minute)…",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(&venv);
    let python = std::env::var_os("SLUICE_PYTHON").unwrap_or_else(|| "python3".into());
    let shown = python.to_string_lossy().into_owned();
    let created = Command::new(&python).arg("-m").arg("venv").arg(&venv).output().map_err(|e| {
        CliError::failure(format!(
            "`sluice build` needs Python 3.10 or newer to install componentize-py, but `{shown}` cannot be run ({e}): \
             install python3 (with its venv module) or point SLUICE_PYTHON at one"
        ))
    })?;
    if !created.status.success() {
        return Err(CliError::failure(format!(
            "`{shown} -m venv` failed (on Debian, install python3-venv): {}",
            tail(&created.stderr)
        )));
    }
    let installed = Command::new(venv.join("bin").join("python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"))
        .output()
        .map_err(|e| CliError::failure(format!("cannot run pip in `{}`: {e}", venv.display())))?;
    if !installed.status.success() {
        return Err(CliError::failure(format!(
            "installing componentize-py {COMPONENTIZE_PY_VERSION} from PyPI failed (is PyPI reachable? a proxy goes in \
             PIP_INDEX_URL): {}",
            tail(&installed.stderr)
        )));
    }
    std::fs::write(&marker, COMPONENTIZE_PY_VERSION)
        .map_err(|e| CliError::failure(format!("cannot write `{}`: {e}", marker.display())))?;
    eprintln!("Installed componentize-py {COMPONENTIZE_PY_VERSION}.");
    Ok(Toolchain { venv })
}

/// The last lines of a tool's output, enough to say what went wrong.
pub fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
