//! `sluice build flow.py [--flow-dir DIR]`: a Python flow module to a
//! component (`sluice build flow.js` or `flow.ts`: a JavaScript or TypeScript
//! one, see `javascript.rs`).
//!
//! The flow's files and the embedded SDK and WIT are staged in a scratch
//! folder; the SDK's check (a native Python importing the module) reports a
//! syntax error, an unsupported type hint or a missing `@flow` with its file
//! and line; then componentize-py builds and pre-initialises the component.
//! Builds are cached by the sha256 of everything that goes in, so building
//! unchanged sources again only copies the earlier result.

mod javascript;
mod sources;
mod toolchain;

use super::CliError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Arguments of `sluice build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The flow module (`flow.py`); with --flow-dir, relative to it (default `flow.py` there).
    file: Option<PathBuf>,
    /// A folder of several Python files bundled together (the flow module imports its neighbours).
    #[arg(long, value_name = "DIR")]
    flow_dir: Option<PathBuf>,
    /// Where to write the component (default: the module's name with `.wasm`, in this folder).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Build again even when an identical build is cached.
    #[arg(long)]
    no_cache: bool,
}

/// What to build: the flow module and the folder its files come from.
struct Project {
    /// The flow module's file, as the user named it (for messages).
    file: PathBuf,
    /// The folder whose files are bundled, or none for the module alone.
    dir: Option<PathBuf>,
    /// The module's dotted import name.
    module: String,
}

fn project(args: &BuildArgs) -> Result<Project, CliError> {
    let file = match (&args.file, &args.flow_dir) {
        (Some(file), Some(dir)) if file.is_relative() && !file.starts_with(dir) => dir.join(file),
        (Some(file), _) => file.clone(),
        (None, Some(dir)) => dir.join("flow.py"),
        (None, None) => {
            return Err(CliError::usage("name the flow module: `sluice build flow.py` (or --flow-dir DIR)"));
        }
    };
    match file.extension().and_then(|e| e.to_str()) {
        Some("py") => {}
        Some("js" | "mjs" | "ts" | "mts") => {
            return Ok(Project { file, dir: args.flow_dir.clone(), module: String::new() });
        }
        _ => {
            return Err(CliError::usage(format!(
                "`{}` is neither a Python (`.py`), a JavaScript (`.js`) nor a TypeScript (`.ts`) file",
                file.display()
            )));
        }
    }
    if !file.is_file() {
        return Err(CliError::usage(format!("`{}` does not exist", file.display())));
    }
    let relative = match &args.flow_dir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(CliError::usage(format!("--flow-dir `{}` is not a folder", dir.display())));
            }
            file.strip_prefix(dir)
                .map_err(|_| {
                    CliError::usage(format!("`{}` is not inside --flow-dir `{}`", file.display(), dir.display()))
                })?
                .to_path_buf()
        }
        None => PathBuf::from(file.file_name().expect("a file has a name")),
    };
    let parts: Vec<String> = relative.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let valid = |p: &String| {
        p.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !parts.iter().all(valid) || parts.iter().any(|p| p == "sluice" || p == sources::ENTRY_MODULE) {
        return Err(CliError::usage(format!(
            "`{}`: a flow module's name must be a Python identifier other than `sluice` (rename it, e.g. `flow.py`)",
            file.display()
        )));
    }
    Ok(Project { file, dir: args.flow_dir.clone(), module: parts.join(".") })
}

/// A scratch folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &Path) -> Result<Self, CliError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = root.join("staging").join(format!("{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| CliError::failure(format!("cannot create `{}`: {e}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `sluice build`.
pub fn run(args: BuildArgs) -> Result<ExitCode, CliError> {
    let project = project(&args)?;
    let root = toolchain::toolchain_dir();
    if project.module.is_empty() {
        let stem = project.file.file_stem().and_then(|s| s.to_str()).unwrap_or("flow");
        let output = args.output.clone().unwrap_or_else(|| PathBuf::from(format!("{stem}.wasm")));
        return javascript::build(&project.file, &output, &root);
    }
    let output = args.output.clone().unwrap_or_else(|| {
        let stem = project.module.rsplit('.').next().unwrap_or("flow");
        PathBuf::from(format!("{stem}.wasm"))
    });
    let tools = toolchain::ensure(&root)?;
    let scratch = Scratch::new(&root)?;
    let single = project.dir.is_none().then_some(project.file.as_path());
    let files = sources::user_files(project.dir.as_deref().unwrap_or(Path::new(".")), single)?;
    let key = sources::stage(&scratch.0, &files, &project.module, toolchain::COMPONENTIZE_PY_VERSION)?;
    let cached = root.join("builds").join(format!("{key}.wasm"));
    let app = scratch.0.join("app");
    // Paths in the check's messages name the user's files, not the scratch copies.
    let user_root = project.dir.clone().unwrap_or_else(|| project.file.parent().unwrap_or(Path::new("")).to_path_buf());
    let shown = |text: &str| {
        let prefix = format!("{}/", app.display());
        let replacement =
            if user_root.as_os_str().is_empty() { String::new() } else { format!("{}/", user_root.display()) };
        text.replace(&prefix, &replacement)
    };

    if args.no_cache || !cached.is_file() {
        let check = Command::new(tools.python())
            .current_dir(&app)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("PYTHONPATH")
            .args(["-m", "sluice._check", &project.module])
            .arg(app.join(project.file.strip_prefix(&user_root).unwrap_or(&project.file)))
            .output()
            .map_err(|e| CliError::failure(format!("cannot run `{}`: {e}", tools.python().display())))?;
        if !check.status.success() {
            let message = shown(String::from_utf8_lossy(&check.stderr).trim());
            return Err(if check.status.code() == Some(2) {
                CliError::usage(message)
            } else {
                CliError::failure(format!("checking `{}` failed: {message}", project.file.display()))
            });
        }
        eprintln!("Building {} ({})…", project.file.display(), String::from_utf8_lossy(&check.stdout).trim());
        let built = scratch.0.join("component.wasm");
        let componentize = Command::new(tools.componentize_py())
            .current_dir(&app)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("VIRTUAL_ENV")
            .env_remove("PYTHONPATH")
            .arg("-d")
            .arg(scratch.0.join("wit"))
            .args(["-w", "flow", "componentize", "-p"])
            .arg(&app)
            .arg(sources::ENTRY_MODULE)
            .arg("-o")
            .arg(&built)
            .output()
            .map_err(|e| {
                CliError::failure(format!(
                    "cannot run `{}` ({e}): delete `{}` and build again to reinstall it",
                    tools.componentize_py().display(),
                    root.display()
                ))
            })?;
        if !componentize.status.success() || !built.is_file() {
            let mut text = toolchain::tail(&componentize.stderr);
            if text.is_empty() {
                text = toolchain::tail(&componentize.stdout);
            }
            return Err(CliError::failure(format!(
                "componentize-py failed on `{}`:\n{}",
                project.file.display(),
                shown(&text)
            )));
        }
        std::fs::create_dir_all(cached.parent().expect("builds/ has a parent"))
            .and_then(|_| std::fs::copy(&built, scratch.0.join("cached.tmp")))
            .and_then(|_| std::fs::rename(scratch.0.join("cached.tmp"), &cached))
            .map_err(|e| CliError::failure(format!("cannot cache the build in `{}`: {e}", cached.display())))?;
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::failure(format!("cannot create `{}`: {e}", parent.display())))?;
    }
    let bytes =
        std::fs::read(&cached).map_err(|e| CliError::failure(format!("cannot read `{}`: {e}", cached.display())))?;
    // Written beside and renamed: a reader of `output` never sees half a component.
    let partial = output.with_extension(format!("wasm.{}.partial", std::process::id()));
    std::fs::write(&partial, &bytes)
        .and_then(|_| std::fs::rename(&partial, &output))
        .map_err(|e| CliError::failure(format!("cannot write `{}`: {e}", output.display())))?;
    println!("{} sha256:{}", output.display(), hex::encode(Sha256::digest(&bytes)));
    Ok(ExitCode::SUCCESS)
}
