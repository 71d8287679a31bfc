//! The oldest supported Kubernetes is stated once in code (`KubeVersion::OLDEST_SUPPORTED`) and
//! repeated where users read it: the chart's `kubeVersion` and docs/operator.md. The API-server
//! tier runs at that version.

use std::path::Path;

use nacos_operator::controller::server::KubeVersion;

fn workspace_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn chart_and_docs_state_the_oldest_supported_kubernetes() {
    let oldest = KubeVersion::OLDEST_SUPPORTED;
    let chart = workspace_file("charts/nacos-operator/Chart.yaml");
    let expected = format!("kubeVersion: \">={oldest}.0-0\"");
    assert!(chart.lines().any(|l| l == expected), "Chart.yaml must say {expected}");
    let docs = workspace_file("docs/operator.md");
    let expected = format!("**Supported Kubernetes: {oldest} and later.**");
    assert!(docs.contains(&expected), "docs/operator.md must say {expected}");
}
