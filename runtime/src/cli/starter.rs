//! `sluice init`'s starter project file: when run in a Rust flow crate it
//! names that crate's flows (the `#[flow]` functions of `src/`, with the
//! first line of their doc comment) and the component `cargo build` makes
//! of it, so the file works before it is edited. Elsewhere it falls back to
//! the commented generic starter.

use crate::project::STARTER;
use std::path::Path;

/// A flow found in the sources: its name and the first line of its doc comment.
#[derive(Debug, PartialEq)]
pub struct FoundFlow {
    /// The flow's name (`#[flow(name = "…")]`, else the function's).
    pub name: String,
    /// What its doc comment says first, if anything.
    pub summary: Option<String>,
}

/// The starter for the crate in `dir`, or the generic one.
pub fn starter(dir: &Path) -> String {
    let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { return STARTER.to_string() };
    let Some(library) = library_name(&manifest) else { return STARTER.to_string() };
    let flows = flows_in(&dir.join("src"));
    if flows.is_empty() {
        return STARTER.to_string();
    }
    render(&library, &flows)
}

/// The file name stem of the crate's library: `[lib] name`, else the package
/// name with `-` as `_` (what cargo names the `.wasm`).
fn library_name(manifest: &str) -> Option<String> {
    let mut section = "";
    let (mut package, mut lib) = (None, None);
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.trim() != "name" {
            continue;
        }
        let value = value.trim().trim_matches('"').to_string();
        match section {
            "[package]" => package = Some(value),
            "[lib]" => lib = Some(value),
            _ => {}
        }
    }
    lib.or(package).map(|name| name.replace('-', "_"))
}

/// Every `#[flow]` function under `src`, files in name order.
fn flows_in(src: &Path) -> Vec<FoundFlow> {
    let mut files = Vec::new();
    collect_rust_files(src, &mut files, 0);
    files.sort();
    files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).flat_map(|text| flows_in_text(&text)).collect()
}

fn collect_rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth < 8 {
            collect_rust_files(&path, files, depth + 1);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The flows of one Rust file: a `#[flow…]` attribute, then the next `fn`.
pub fn flows_in_text(text: &str) -> Vec<FoundFlow> {
    let mut flows = Vec::new();
    let mut docs: Vec<String> = Vec::new();
    let mut pending: Option<(Option<String>, Option<String>)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(doc) = line.strip_prefix("///") {
            docs.push(doc.trim().to_string());
            continue;
        }
        if line.starts_with("#[flow") || line.starts_with("#[sluice_sdk::flow") {
            let summary = docs.iter().find(|d| !d.is_empty()).cloned();
            pending = Some((attribute_name(line), summary));
            continue;
        }
        if let Some((named, summary)) = &pending
            && let Some(name) = function_name(line)
        {
            flows.push(FoundFlow { name: named.clone().unwrap_or(name), summary: summary.clone() });
            pending = None;
        }
        if !line.starts_with("#[") {
            docs.clear();
        }
    }
    flows
}

/// `name = "…"` inside an attribute line.
fn attribute_name(line: &str) -> Option<String> {
    let rest = &line[line.find("name")? + 4..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// The name of the function a line declares, if it declares one.
fn function_name(line: &str) -> Option<String> {
    let at = line.find("fn ")?;
    let before = &line[..at];
    if !before.split_whitespace().all(|w| matches!(w, "pub" | "pub(crate)" | "async" | "unsafe" | "const")) {
        return None;
    }
    let name: String = line[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

fn render(library: &str, flows: &[FoundFlow]) -> String {
    let names: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
    let mut out = format!(
        "# sluice.yaml: how to build this crate's flows ({}) and the deployments to make of them.\n\
         # Paths are relative to this file. Unknown keys are refused, so typos do not go unnoticed.\n\
         # Then: `sluice deploy --all`, `sluice run FLOW/default --watch`.\n\n\
         # Run before the artifacts are pushed (optional).\n\
         build:\n  command: cargo build --release --target wasm32-wasip2\n  # workdir: .\n\n\
         deployments:\n",
        names.join(", ")
    );
    for flow in flows {
        out.push_str(&format!(
            "  - name: default\n    flow: {}\n    # The compiled component (in a workspace, under the workspace's target/).\n    \
             artifact: target/wasm32-wasip2/release/{library}.wasm\n    parameters: {{}}\n",
            flow.name
        ));
        match &flow.summary {
            Some(summary) => out.push_str(&format!(
                "    # description: defaults to the flow's doc comment, \"{}\"\n",
                summary.replace(['"', '\\'], "'")
            )),
            None => out.push_str("    # description: What it is for\n"),
        }
        out.push_str(
            "    # schedule: {interval: 60}\n    \
             # schedule: {cron: \"0 2 * * *\", timezone: Europe/Paris}\n    \
             # tags: [demo]\n    # pool: default\n    # queue: default\n    \
             # limits: {memory_mib: 64, timeout: 10m, concurrency: 1, task_cpu: 1m, run_cpu: 10m}\n    \
             # grants: {allow_hosts: [api.example.com], secrets: [API_TOKEN]}\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_found_with_their_names_and_docs() {
        let text = "/// Runs it all.\n#[flow]\nfn pipeline() {}\n\n#[flow(name = \"other-name\")]\npub fn sub() {}\n\
                    /// A task.\n#[task(retries = 2)]\nfn t() {}\n";
        let flows = flows_in_text(text);
        assert_eq!(
            flows,
            vec![
                FoundFlow { name: "pipeline".into(), summary: Some("Runs it all.".into()) },
                FoundFlow { name: "other-name".into(), summary: None },
            ]
        );
    }

    #[test]
    fn the_library_name_is_what_cargo_calls_the_wasm() {
        assert_eq!(library_name("[package]\nname = \"hello-flow\"\n").as_deref(), Some("hello_flow"));
        assert_eq!(library_name("[package]\nname = \"a\"\n[lib]\nname = \"b_c\"\n").as_deref(), Some("b_c"));
        assert_eq!(library_name("[workspace]\nmembers = []\n"), None);
    }

    #[test]
    fn the_rendered_starter_is_a_valid_project_file() {
        let flows = vec![
            FoundFlow { name: "pipeline".into(), summary: Some("Runs \"two\" subflows.".into()) },
            FoundFlow { name: "subflow_1".into(), summary: None },
        ];
        let project = crate::project::parse(&render("pipeline_flow", &flows), Path::new("/p"), "sluice.yaml").unwrap();
        let names: Vec<String> = project.deployments.iter().map(|d| d.full_name()).collect();
        assert_eq!(names, ["pipeline/default", "subflow_1/default"]);
    }
}
