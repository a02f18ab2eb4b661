//! `sluice build flow.js` (or `flow.ts`, its types stripped by the pinned
//! TypeScript compiler): the JavaScript SDK's builder (`guest-sdk/js`),
//! embedded in the binary and written into the toolchain folder, run with
//! Node. It installs jco and componentize-js (pinned by its lockfile) into
//! the toolchain folder on first use and builds the component from the WIT
//! this binary was built with.

use super::sources::FLOW_WIT;
use crate::cli::CliError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The builder's files, as (path inside its folder, text).
const BUILDER_FILES: &[(&str, &str)] = &[
    ("build.mjs", include_str!("../../../../guest-sdk/js/build.mjs")),
    ("package.json", include_str!("../../../../guest-sdk/js/package.json")),
    ("src/index.js", include_str!("../../../../guest-sdk/js/src/index.js")),
    ("toolchain/package.json", include_str!("../../../../guest-sdk/js/toolchain/package.json")),
    ("toolchain/package-lock.json", include_str!("../../../../guest-sdk/js/toolchain/package-lock.json")),
];

/// Writes the builder (once per content) and returns its folder.
fn builder(root: &Path) -> Result<PathBuf, CliError> {
    let mut hasher = Sha256::new();
    for (path, text) in BUILDER_FILES.iter().chain([&("wit/flow.wit", FLOW_WIT)]) {
        hasher.update(path.as_bytes());
        hasher.update(text.as_bytes());
    }
    let dir = root.join(format!("js-sdk-{}", &hex::encode(hasher.finalize())[..16]));
    if dir.join("ready").is_file() {
        return Ok(dir);
    }
    let write = |path: &str, text: &str| -> Result<(), CliError> {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("a file has a folder"))
            .and_then(|_| std::fs::write(&file, text))
            .map_err(|e| CliError::failure(format!("cannot write `{}`: {e}", file.display())))
    };
    for (path, text) in BUILDER_FILES {
        write(path, text)?;
    }
    write("wit/flow.wit", FLOW_WIT)?;
    write("ready", "")?;
    Ok(dir)
}

/// Builds the JavaScript or TypeScript flow `file` into `output`.
pub fn build(file: &Path, output: &Path, root: &Path) -> Result<ExitCode, CliError> {
    if !file.is_file() {
        return Err(CliError::usage(format!("`{}` does not exist", file.display())));
    }
    let dir = builder(root)?;
    eprintln!(
        "Building {} (jco, componentize-js and TypeScript install into {} on first use)…",
        file.display(),
        root.display()
    );
    let status = Command::new("node")
        .arg(dir.join("build.mjs"))
        .arg(file)
        .arg(output)
        .env("SLUICE_WIT", dir.join("wit"))
        .env("SLUICE_JS_TOOLCHAIN", root.join("js-toolchain"))
        .status()
        .map_err(|e| {
            CliError::failure(format!(
                "cannot run `node` ({e}): building a JavaScript flow needs Node.js 18 or newer and npm on the PATH"
            ))
        })?;
    match status.code() {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(2) => Err(CliError::usage(format!("`{}` could not be built (see above)", file.display()))),
        _ => Err(CliError::failure(format!("building `{}` failed (see above)", file.display()))),
    }
}
