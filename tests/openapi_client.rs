//! The served OpenAPI document, checked by outside tools as a client's
//! author would use them (installed by `make openapi-deps`, pinned, into
//! `target/openapi-venv`): `openapi-spec-validator` must find it valid
//! OpenAPI 3.1, `openapi-python-client` must generate a client from it, and
//! that client must drive a real server through push → deploy → run →
//! poll → logs (`tests/openapi/driver.py`), parsing every answer with the
//! models the document describes.

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::http::get;
use support::{Sluice, guest, repo, target_dir};

/// The venv `tests/openapi/setup.sh` makes.
fn venv() -> PathBuf {
    let venv = std::env::var_os("OPENAPI_VENV").map(PathBuf::from).unwrap_or_else(|| target_dir().join("openapi-venv"));
    assert!(
        venv.join("bin/openapi-python-client").exists() && venv.join("bin/openapi-spec-validator").exists(),
        "the OpenAPI tools are not installed in {}: run `make openapi-deps` (tests/openapi/setup.sh)",
        venv.display()
    );
    venv
}

/// Runs a tool of the venv (its `bin` first on PATH, so the generator finds its formatter).
fn tool(venv: &std::path::Path, name: &str) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![venv.join("bin")];
    paths.extend(std::env::split_paths(&path));
    let mut command = Command::new(venv.join("bin").join(name));
    command.env("PATH", std::env::join_paths(paths).unwrap());
    command
}

fn succeeded(what: &str, output: &std::process::Output) -> String {
    let (stdout, stderr) = support::texts(output);
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn a_generated_python_client_validates_the_document_and_drives_a_run() {
    let venv = venv();
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "1"]);
    let (status, document) = get(&address, "/api/openapi.json");
    assert_eq!(status, 200, "{document}");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();

    let validated = tool(&venv, "openapi-spec-validator").arg(&file).output().unwrap();
    let said = succeeded("openapi-spec-validator", &validated);
    assert!(said.contains("OK"), "{said}");

    let package = work.path().join("sluice_api_client");
    let generated = tool(&venv, "openapi-python-client")
        .args(["generate", "--meta", "none", "--path"])
        .arg(&file)
        .arg("--output-path")
        .arg(&package)
        .output()
        .unwrap();
    succeeded("openapi-python-client generate", &generated);
    assert!(package.join("api/deployments/create_run.py").exists(), "no client was generated");

    let driven = tool(&venv, "python")
        .arg(repo().join("tests/openapi/driver.py"))
        .env("PYTHONPATH", work.path())
        .env("SLUICE_URL", format!("http://{address}"))
        .env("SLUICE_TOKEN", sluice.admin_token())
        .env("HELLO_WASM", guest("hello_flow"))
        .output()
        .unwrap();
    let said = succeeded("the generated client's run", &driven);
    assert!(said.contains("passed"), "{said}");
}
