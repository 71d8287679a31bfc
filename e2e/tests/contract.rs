//! What holds without a kind cluster: the entry script's skip contract (STYLE.md Part D), the
//! image names the scripts build agreeing with the ones the operator and the chart deploy, and
//! docs/kubernetes.md stating the operator's supported Kubernetes range.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::workspace_file;
use nacos_operator::controller::server::KubeVersion;
use nacos_operator::controller::{REGISTRY_IMAGE_REPOSITORY, SIDECAR_IMAGE_REPOSITORY};

/// bash's absolute path: the script runs with a PATH that holds none of its tools.
fn bash() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("bash")).find(|p| p.is_file()).expect("bash on PATH")
}

/// Runs `e2e/kind/run` with `PATH=dir` (and `E2E_REQUIRED` when `required`).
fn run_entry_script(dir: &Path, required: bool) -> Output {
    let mut command = Command::new(bash());
    command.arg(workspace_file("e2e/kind/run")).env("PATH", dir).env_remove("E2E_REQUIRED");
    if required {
        command.env("E2E_REQUIRED", "1");
    }
    command.output().expect("run e2e/kind/run")
}

/// A fresh directory of this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("e2e-contract-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn entry_script_skips_with_one_line_naming_the_missing_tools() {
    let empty = scratch("empty");
    let out = run_entry_script(&empty, false);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SKIP e2e-kind: kind docker kubectl helm not on PATH\n");
    assert_eq!(text(&out.stderr), "");

    let out = run_entry_script(&empty, true);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), "e2e-kind: kind docker kubectl helm not on PATH (E2E_REQUIRED=1)\n");
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn entry_script_skips_when_no_docker_engine_answers() {
    // Every tool present, but `docker info` fails as it does without an engine.
    let tools = scratch("tools");
    for tool in ["kind", "docker", "kubectl", "helm"] {
        let path = tools.join(tool);
        std::fs::write(&path, "#!/bin/sh\nexit 1\n").expect("write a stub");
        let mut permissions = std::fs::metadata(&path).expect("stub").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).expect("make the stub executable");
    }
    let out = run_entry_script(&tools, false);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SKIP e2e-kind: no Docker engine (docker info failed)\n");

    let out = run_entry_script(&tools, true);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "e2e-kind: no Docker engine (docker info failed) (E2E_REQUIRED=1)\n");
    let _ = std::fs::remove_dir_all(&tools);
}

#[test]
fn built_images_are_the_ones_the_operator_and_the_chart_deploy() {
    let out = Command::new(bash())
        .arg(workspace_file("scripts/dockerfile-check"))
        .arg("--list")
        .output()
        .expect("run scripts/dockerfile-check --list");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let repository = |dockerfile: &str| -> String {
        let line = listed.lines().find(|l| l.starts_with(&format!("{dockerfile} ")));
        let line = line.unwrap_or_else(|| panic!("{dockerfile} is not in scripts/dockerfile-check:\n{listed}"));
        assert!(workspace_file(dockerfile).is_file(), "{dockerfile} does not exist");
        line.split_whitespace().nth(1).unwrap_or_default().to_owned()
    };

    let values = std::fs::read_to_string(workspace_file("charts/nacos-operator/values.yaml")).expect("values.yaml");
    let values: serde_json::Value = serde_saphyr::from_str(&values).expect("values.yaml parses");
    assert_eq!(repository("operator/Dockerfile"), values["image"]["repository"].as_str().unwrap_or_default());
    assert_eq!(repository("registry-core/Dockerfile"), REGISTRY_IMAGE_REPOSITORY);
    assert_eq!(repository("sidecar/Dockerfile"), SIDECAR_IMAGE_REPOSITORY);
    assert_eq!(listed.lines().count(), 3, "an image without a check here:\n{listed}");
}

#[test]
fn kubernetes_guide_states_the_oldest_supported_kubernetes() {
    let docs = std::fs::read_to_string(workspace_file("docs/kubernetes.md")).expect("docs/kubernetes.md");
    let expected = format!("**Supported Kubernetes: {} and later.**", KubeVersion::OLDEST_SUPPORTED);
    assert!(docs.contains(&expected), "docs/kubernetes.md must say {expected}");
}
