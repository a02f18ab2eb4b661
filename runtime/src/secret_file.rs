//! Files that hold secrets (the first admin token, a CLI profile with a
//! token): created readable and writable by their owner only.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path`, replacing it, with mode 0600 from the start
/// (never readable by others, not even for a moment).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // An existing file keeps its mode on open: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}
