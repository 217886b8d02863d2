//! The official Python `kubernetes` client against the real `tug-apiserver`:
//! runs the pytest suite in `tests/python` with `TUGBOAT_KUBECONFIG`
//! pointing at a server started here, so `cargo test --workspace` covers
//! it. Missing Python packages are a failure, not a skip: install them with
//! `pip install -r tests/python/requirements.txt`.

use std::path::Path;
use std::process::Command;

use tugboat_e2e::ApiServer;

#[test]
fn the_python_kubernetes_client_suite_passes_against_tug_apiserver() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let probe = Command::new("python3")
        .args([
            "-c",
            "import pytest, kubernetes; print(kubernetes.__version__)",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for the Python client tests and could not run: {e}")
        });
    assert!(
        probe.status.success(),
        "the Python client tests need pytest and kubernetes: run \
         `pip install -r tests/python/requirements.txt`\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let server = ApiServer::start();
    let out = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "tests/python",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(&workspace)
        .env("TUGBOAT_KUBECONFIG", &server.kubeconfig)
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pytest tests/python failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        out.status,
        std::fs::read_to_string(server.data_dir.with_extension("log")).unwrap_or_default()
    );
    assert!(stdout.contains("passed"), "pytest ran no test:\n{stdout}");
}
