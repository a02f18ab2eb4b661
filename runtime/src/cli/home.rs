//! Where Sluice keeps its files: `SLUICE_HOME` (default: the platform's data
//! folder) and the host-local compile cache.

use std::path::PathBuf;

/// The data folder.
pub fn data_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("SLUICE_HOME") {
        return PathBuf::from(home);
    }
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("sluice")
}

/// The folder of compiled machine code: `SLUICE_CACHE_DIR`, else inside
/// `SLUICE_HOME` when set, else the platform's cache folder.
pub fn compile_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if std::env::var_os("SLUICE_HOME").is_some() {
        return data_dir().join("cache").join("compiled");
    }
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("sluice").join("compiled")
}
