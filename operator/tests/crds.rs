//! Generated and hand-written YAML stays true to the code:
//! - `crds/nacoscluster.yaml` is exactly what `nacos-operator crd` prints;
//! - `docs/examples/nacoscluster.yaml` uses only fields the CRD schema knows, with the right
//!   types, and passes the operator's own validation.

use std::path::{Path, PathBuf};
use std::process::Command;

use nacos_operator::controller::OperatorEnvironment;
use nacos_operator::controller::build::build;
use nacos_operator::controller::server::ServerCapabilities;
use nacos_operator::controller::validate::validate;
use nacos_operator::crd::{NacosCluster, crd, crd_yaml};
use serde_json::Value;

const REGENERATE: &str = "cargo run -p nacos-operator -- crd > crds/nacoscluster.yaml";

fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

#[test]
fn committed_crd_matches_the_code() {
    let path = workspace_file("crds/nacoscluster.yaml");
    let expected = crd_yaml().unwrap();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != expected {
        let line = committed.lines().zip(expected.lines()).position(|(a, b)| a != b).map_or_else(
            || format!("line {}", committed.lines().count().min(expected.lines().count()) + 1),
            |n| format!("line {}", n + 1),
        );
        panic!(
            "crds/nacoscluster.yaml is out of date with operator/src/crd.rs (first difference at {line}).\n\
             Regenerate it from the workspace root:\n\n    {REGENERATE}\n"
        );
    }
}

#[test]
fn crd_subcommand_prints_the_crd() {
    let output = Command::new(env!("CARGO_BIN_EXE_nacos-operator")).arg("crd").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8(output.stdout).unwrap(), crd_yaml().unwrap());
}

#[test]
fn crd_is_namespaced_with_status_and_scale_subresources() {
    let crd = serde_json::to_value(crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "nacosclusters.nacos.rs");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    assert_eq!(version["subresources"]["scale"]["specReplicasPath"], ".spec.replicas");
    let columns: Vec<_> =
        version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Replicas", "Ready", "Leader", "Phase", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["replicas"]["minimum"], 1.0);
    assert_eq!(spec["replicas"]["default"], 3);
}

#[test]
fn no_enum_lists_null() {
    fn visit(value: &Value, path: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                if fields.get("enum").and_then(Value::as_array).is_some_and(|e| e.contains(&Value::Null)) {
                    out.push(path.to_owned());
                }
                for (name, child) in fields {
                    visit(child, &format!("{path}.{name}"), out);
                }
            }
            Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| visit(v, &format!("{path}[{i}]"), out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    visit(&serde_json::to_value(crd()).unwrap(), "", &mut found);
    assert!(found.is_empty(), "enums listing null: {found:#?}");
    // The optional enums are still optional.
    let spec = &serde_json::to_value(crd()).unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["spec"]["properties"];
    assert_eq!(spec["imagePullPolicy"]["nullable"], true);
    assert_eq!(spec["imagePullPolicy"]["enum"], serde_json::json!(["Always", "IfNotPresent", "Never"]));
}

#[test]
fn every_spec_and_status_field_is_documented() {
    let crd = serde_json::to_value(crd()).unwrap();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut undocumented = Vec::new();
    for part in ["spec", "status"] {
        undocumented_fields(&root[part], part, &mut undocumented);
    }
    assert!(undocumented.is_empty(), "fields without a description: {undocumented:#?}");
}

fn undocumented_fields(schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("description").is_none() {
        out.push(path.to_owned());
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            undocumented_fields(property, &format!("{path}.{name}"), out);
        }
    }
}

#[test]
fn example_fits_the_schema_and_validates() {
    let text = std::fs::read_to_string(workspace_file("docs/examples/nacoscluster.yaml")).unwrap();
    let crd = serde_json::to_value(crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let document: Value = serde_saphyr::from_str(&text).unwrap();
    let problems = check_document(&document, schema);
    assert!(problems.is_empty(), "docs/examples/nacoscluster.yaml does not fit the CRD: {problems:#?}");

    // The API server would add the uid; then the operator must accept and build it.
    let mut cluster: NacosCluster = serde_saphyr::from_str(&text).unwrap();
    cluster.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let validated = validate(&cluster, &OperatorEnvironment::default()).unwrap();
    assert_eq!(validated.warnings, []);
    build(&validated, &ServerCapabilities::NEWEST).unwrap();
}

/// Checks a whole object: the schema leaves out `apiVersion`, `kind` and `metadata`, which every
/// object has and the API server checks itself.
fn check_document(document: &Value, schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, field) in document.as_object().into_iter().flatten() {
        match name.as_str() {
            "apiVersion" | "kind" | "metadata" => {}
            _ => match schema["properties"].get(name) {
                Some(property) => check_against_schema(field, property, &format!(".{name}"), &mut problems),
                None => problems.push(format!(".{name}: unknown field")),
            },
        }
    }
    problems
}

/// Unknown fields, wrong JSON types and values outside an enum: the mistakes the API server
/// would refuse (or silently drop) in a hand-written example.
fn check_against_schema(value: &Value, schema: &Value, path: &str, problems: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        _ if int_or_string => value.is_string() || value.is_i64() || value.is_u64(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        problems.push(format!("{path}: {value} is not of type {}", schema["type"]));
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (name, field) in fields {
                let child = format!("{path}.{name}");
                match (properties.and_then(|p| p.get(name)), additional) {
                    (Some(property), _) => check_against_schema(field, property, &child, problems),
                    (None, Some(additional)) => check_against_schema(field, additional, &child, problems),
                    // `metadata` and other free-form objects have neither.
                    (None, None) if properties.is_none() => {}
                    (None, None) => problems.push(format!("{child}: unknown field")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_against_schema(item, item_schema, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn schema_check_catches_typos_and_wrong_types() {
    let crd = serde_json::to_value(crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let document: Value = serde_saphyr::from_str(
        "apiVersion: nacos.rs/v1alpha1\nkind: NacosCluster\nmetadata: { name: x }\n\
         spec: { replica: 3, storage: { size: 10 }, imagePullPolicy: Sometimes }\n",
    )
    .unwrap();
    let problems = check_document(&document, schema);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems.iter().any(|p| p.starts_with(".spec.replica: unknown field")), "{problems:#?}");
}
