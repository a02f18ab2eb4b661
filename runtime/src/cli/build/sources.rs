//! What goes into a Python component: the project's WIT and the SDK, both
//! embedded in the binary so `sluice build` works from any folder, and the
//! flow's own files, staged in a scratch folder.

use crate::cli::CliError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `wit/v0.2/flow.wit` (`sluice:flow@0.2.0`), the contract the component
/// implements; the host still runs components built against 0.1.0.
pub const FLOW_WIT: &str = include_str!("../../../../wit/v0.2/flow.wit");

/// The Python SDK, `guest-sdk/python/sluice`, as (file name, text).
pub const SDK_FILES: &[(&str, &str)] = &[
    ("__init__.py", include_str!("../../../../guest-sdk/python/sluice/__init__.py")),
    ("_check.py", include_str!("../../../../guest-sdk/python/sluice/_check.py")),
    ("_core.py", include_str!("../../../../guest-sdk/python/sluice/_core.py")),
    ("_input.py", include_str!("../../../../guest-sdk/python/sluice/_input.py")),
    ("_logging.py", include_str!("../../../../guest-sdk/python/sluice/_logging.py")),
    ("_types.py", include_str!("../../../../guest-sdk/python/sluice/_types.py")),
    ("_world.py", include_str!("../../../../guest-sdk/python/sluice/_world.py")),
    ("runtime.py", include_str!("../../../../guest-sdk/python/sluice/runtime.py")),
    ("tasks.py", include_str!("../../../../guest-sdk/python/sluice/tasks.py")),
];

/// The module componentize-py is pointed at: it imports the flow module (which
/// registers its flows and tasks) and exposes the SDK's export class.
pub const ENTRY_MODULE: &str = "sluice_component";

fn entry_source(module: &str) -> String {
    format!(
        "import sluice._world as _world\nimport {module} as _app\n\n\
         _world.VERSION = str(getattr(_app, \"__version__\", _world.VERSION))\nWitWorld = _world.WitWorld\n"
    )
}

/// Folders of a flow directory that never belong in a component.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || matches!(name, "__pycache__" | "venv" | "node_modules" | "target")
}

/// The user's files to bundle, as (path relative to the root, absolute path).
pub fn user_files(root: &Path, single: Option<&Path>) -> Result<Vec<(PathBuf, PathBuf)>, CliError> {
    if let Some(file) = single {
        let name = file.file_name().map(PathBuf::from).unwrap_or_default();
        return Ok(vec![(name, file.to_path_buf())]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| CliError::usage(format!("cannot read the folder `{}`: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !skipped(&name) {
                    stack.push(path);
                }
            } else if !name.ends_with(".wasm") && !name.ends_with(".pyc") {
                let relative = path.strip_prefix(root).expect("walked from the root").to_path_buf();
                out.push((relative, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the SDK, the user's files and the entry module into `stage`, and
/// returns the sha256 of everything that decides the component's bytes.
pub fn stage(stage: &Path, files: &[(PathBuf, PathBuf)], module: &str, toolchain: &str) -> Result<String, CliError> {
    let write = |path: &Path, bytes: &[u8]| -> Result<(), CliError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::failure(format!("cannot create `{}`: {e}", parent.display())))?;
        }
        std::fs::write(path, bytes).map_err(|e| CliError::failure(format!("cannot write `{}`: {e}", path.display())))
    };
    let mut digest = Sha256::new();
    let mut feed = |label: &str, bytes: &[u8]| {
        digest.update((label.len() as u64).to_le_bytes());
        digest.update(label.as_bytes());
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    };
    feed("toolchain", toolchain.as_bytes());
    feed("wit", FLOW_WIT.as_bytes());
    write(&stage.join("wit").join("flow.wit"), FLOW_WIT.as_bytes())?;
    let app = stage.join("app");
    for (name, text) in SDK_FILES {
        feed(&format!("sdk/{name}"), text.as_bytes());
        write(&app.join("sluice").join(name), text.as_bytes())?;
    }
    for (relative, source) in files {
        let bytes =
            std::fs::read(source).map_err(|e| CliError::usage(format!("cannot read `{}`: {e}", source.display())))?;
        feed(&format!("user/{}", relative.display()), &bytes);
        write(&app.join(relative), &bytes)?;
    }
    let entry = entry_source(module);
    feed("entry", entry.as_bytes());
    write(&app.join(format!("{ENTRY_MODULE}.py")), entry.as_bytes())?;
    Ok(hex::encode(digest.finalize()))
}
