use serde_json::{Value, json};

use super::*;
use crate::fixtures;

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

fn settings() -> Settings {
    Settings { environment: fixtures::env(), default_cluster: None }
}

/// A pod as the API server sends it for a Deployment's ReplicaSet: no name yet, the namespace on
/// the request.
fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "generateName": "orders-7d9f-", "labels": { "app": "orders" }, "annotations": annotations },
        "spec": {
            "containers": [{
                "name": "orders",
                "image": "shop/orders:1.4",
                "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }]
            }]
        }
    })
}

fn review_with(operation: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "shop",
            "operation": operation,
            "userInfo": { "username": "system:serviceaccount:kube-system:replicaset-controller" },
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    }))
    .unwrap()
}

fn review(annotations: Value) -> Vec<u8> {
    review_with("CREATE", pod(annotations))
}

fn annotated() -> Value {
    json!({
        "nacos.rs/inject": "true",
        "nacos.rs/cluster": "registry/nacos",
        "nacos.rs/service": "orders",
        "nacos.rs/port": "http",
        "nacos.rs/probe": "http:/healthz",
        "nacos.rs/group": "shop"
    })
}

/// The whole pure path: parse, decide, and complete against `clusters` as the handler would.
fn respond(body: &[u8], clusters: &[NacosCluster], settings: &Settings) -> AdmissionResponse {
    let request = parse_review(body).unwrap();
    match decide(&request, settings) {
        Decision::Respond(response) => *response,
        Decision::Lookup(injection) => {
            let cluster = clusters.iter().find(|c| {
                c.metadata.namespace.as_deref() == Some(injection.cluster.namespace.as_str())
                    && c.metadata.name.as_deref() == Some(injection.cluster.name.as_str())
            });
            complete(&request, &injection, cluster, None, settings)
        }
    }
}

fn patch_of(response: &AdmissionResponse) -> Option<Value> {
    response.patch.as_ref().map(|bytes| serde_json::from_slice(bytes).unwrap())
}

fn assert_untouched(response: &AdmissionResponse) {
    assert!(response.allowed, "{response:?}");
    assert_eq!(response.patch, None);
    assert_eq!(response.uid, UID);
}

fn assert_denied(response: &AdmissionResponse, needles: &[&str]) {
    assert!(!response.allowed, "{response:?}");
    assert_eq!(response.patch, None);
    assert_eq!(response.uid, UID);
    for needle in needles {
        assert!(response.result.message.contains(needle), "{needle:?} not in {:?}", response.result.message);
    }
}

#[test]
fn annotated_pod_gets_exactly_the_expected_patch() {
    let response = respond(&review(annotated()), &[fixtures::cluster(fixtures::DEFAULTS)], &settings());

    assert!(response.allowed);
    assert_eq!(response.uid, UID);
    let field = |name: &str, path: &str| json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } });
    assert_eq!(
        patch_of(&response).unwrap(),
        json!([{
            "op": "add",
            "path": "/spec/volumes",
            "value": [{
                "name": "nacos-sidecar-podinfo",
                "downwardAPI": { "items": [{ "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } }] }
            }]
        }, {
            "op": "add",
            "path": "/spec/containers/-",
            "value": {
                "name": "nacos-sidecar",
                "image": "registry.test/sidecar:1.0.0",
                "env": [
                    { "name": "NACOS_SERVER_ADDR", "value": "nacos.registry.svc.cluster.local:8848" },
                    { "name": "NACOS_SIDECAR_SERVICE", "value": "orders" },
                    { "name": "NACOS_SIDECAR_PORT", "value": "8080" },
                    { "name": "NACOS_SIDECAR_GROUP", "value": "shop" },
                    { "name": "NACOS_SIDECAR_PROBE", "value": "http" },
                    { "name": "NACOS_SIDECAR_PROBE_PORT", "value": "8080" },
                    { "name": "NACOS_SIDECAR_PROBE_PATH", "value": "/healthz" },
                    { "name": "NACOS_SIDECAR_ADMIN_PORT", "value": "15090" },
                    { "name": "NACOS_SIDECAR_LABELS_FILE", "value": "/etc/nacos-sidecar/podinfo/labels" },
                    field("POD_NAME", "metadata.name"),
                    field("POD_NAMESPACE", "metadata.namespace"),
                    field("POD_IP", "status.podIP"),
                    field("NODE_NAME", "spec.nodeName"),
                ],
                "volumeMounts": [{ "name": "nacos-sidecar-podinfo", "mountPath": "/etc/nacos-sidecar/podinfo", "readOnly": true }],
                "lifecycle": { "preStop": { "httpGet": { "path": "/drain", "port": 15090 } } },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": { "drop": ["ALL"] },
                    "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true
                }
            }
        }])
    );
}

#[test]
fn unannotated_pod_is_allowed_without_patch() {
    let clusters = [fixtures::cluster(fixtures::DEFAULTS)];
    assert_untouched(&respond(&review(Value::Null), &clusters, &settings()));
    assert_untouched(&respond(&review(json!({ "team": "shop" })), &clusters, &settings()));
    let mut declined = annotated();
    declined["nacos.rs/inject"] = json!("false");
    assert_untouched(&respond(&review(declined), &clusters, &settings()));
}

#[test]
fn already_injected_pod_gets_no_second_sidecar() {
    let clusters = [fixtures::cluster(fixtures::DEFAULTS)];
    let first = respond(&review(annotated()), &clusters, &settings());
    // Apply the patch the API server would apply, then review the result again (reinvocation).
    let mut injected = pod(annotated());
    let operations: json_patch::Patch = serde_json::from_value(patch_of(&first).unwrap()).unwrap();
    json_patch::patch(&mut injected, &operations.0).unwrap();
    assert_eq!(injected["spec"]["containers"][1]["name"], "nacos-sidecar");

    assert_untouched(&respond(&review_with("CREATE", injected), &clusters, &settings()));
}

#[test]
fn other_operations_and_kinds_pass_through() {
    let clusters = [fixtures::cluster(fixtures::DEFAULTS)];
    assert_untouched(&respond(&review_with("UPDATE", pod(annotated())), &clusters, &settings()));
    let mut body: Value = serde_json::from_slice(&review(annotated())).unwrap();
    body["request"]["kind"]["kind"] = json!("ConfigMap");
    assert_untouched(&respond(&serde_json::to_vec(&body).unwrap(), &clusters, &settings()));
}

#[test]
fn malformed_bodies_are_refused_with_a_reason() {
    for body in [
        &b"not json"[..],
        b"{}",
        b"[1,2]",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#,
    ] {
        let error = parse_review(body).unwrap_err();
        assert!(matches!(error, BadReview::Parse { .. }), "{error}");
    }
    let error = parse_review(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).unwrap_err();
    assert!(matches!(error, BadReview::NoRequest), "{error}");
}

#[test]
fn object_that_is_not_a_pod_is_denied_not_panicked_on() {
    let mut object = pod(annotated());
    object["spec"]["containers"] = json!("orders");
    let response = respond(&review_with("CREATE", object), &[], &settings());
    assert_denied(&response, &["not a valid Pod"]);

    let response = respond(&review_with("CREATE", Value::Null), &[], &settings());
    assert_denied(&response, &["no pod"]);
}

#[test]
fn invalid_annotations_are_denied_with_every_problem() {
    let annotations = json!({
        "nacos.rs/inject": "true",
        "nacos.rs/cluster": "Registry/Nacos",
        "nacos.rs/port": "grpc",
        "nacos.rs/probe": "exec:true"
    });
    let response = respond(&review(annotations), &[], &settings());
    assert_denied(
        &response,
        &["nacos.rs/cluster: \"Registry/Nacos\"", "nacos.rs/service is missing", "nacos.rs/port: \"grpc\""],
    );

    let annotations = json!({
        "nacos.rs/inject": "true", "nacos.rs/service": "orders", "nacos.rs/port": "8080", "nacos.rs/probe": "exec:true"
    });
    let response = respond(&review(annotations), &[], &settings());
    assert_denied(&response, &["nacos.rs/cluster is missing", "nacos.rs/probe: \"exec:true\""]);
}

#[test]
fn missing_cluster_is_denied() {
    let response = respond(&review(annotated()), &[], &settings());
    assert_denied(&response, &["NacosCluster registry/nacos not found"]);
}

#[test]
fn invalid_cluster_is_denied_with_the_reason() {
    let response = respond(&review(annotated()), &[fixtures::cluster("replicas: 0")], &settings());
    assert_denied(&response, &["NacosCluster registry/nacos is invalid"]);
}

#[test]
fn cluster_with_injection_disabled_admits_the_pod_unchanged_with_a_warning() {
    let cluster = fixtures::cluster("sidecarInjection: { enabled: false }");
    let response = respond(&review(annotated()), &[cluster], &settings());
    assert_untouched(&response);
    assert!(response.warnings.unwrap()[0].contains("disabled on NacosCluster registry/nacos"));
}

#[test]
fn cluster_sidecar_settings_and_ports_shape_the_container() {
    let cluster = fixtures::cluster(
        r#"
        ports: { http: 18848 }
        sidecarInjection:
          image: mirror.example/sidecar:2.0
          imagePullPolicy: Always
          resources:
            requests: { cpu: 10m, memory: 32Mi }
        "#,
    );
    let response = respond(&review(annotated()), &[cluster], &settings());
    let container = &patch_of(&response).unwrap()[1]["value"];
    assert_eq!(container["image"], "mirror.example/sidecar:2.0");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"], json!({ "requests": { "cpu": "10m", "memory": "32Mi" } }));
    assert_eq!(
        container["env"][0],
        json!({ "name": "NACOS_SERVER_ADDR", "value": "nacos.registry.svc.cluster.local:18848" })
    );
}

#[test]
fn cluster_defaults_to_the_pod_namespace_or_the_operator_default() {
    // `NAME` alone is looked up in the pod's namespace.
    let mut annotations = annotated();
    annotations["nacos.rs/cluster"] = json!("nacos");
    let request = parse_review(&review(annotations.clone())).unwrap();
    let Decision::Lookup(injection) = decide(&request, &settings()) else { panic!("no lookup") };
    assert_eq!(injection.cluster, ClusterRef { namespace: "shop".into(), name: "nacos".into() });

    // No annotation: the operator's default cluster.
    annotations.as_object_mut().unwrap().remove("nacos.rs/cluster");
    let default = ClusterRef { namespace: "registry".into(), name: "main".into() };
    let settings = Settings { default_cluster: Some(default.clone()), ..settings() };
    let request = parse_review(&review(annotations)).unwrap();
    let Decision::Lookup(injection) = decide(&request, &settings) else { panic!("no lookup") };
    assert_eq!(injection.cluster, default);
}

#[test]
fn probe_annotation_forms() {
    let pod: Pod = serde_json::from_value(pod(Value::Null)).unwrap();
    let http = |port, path: &str| Some(ProbeSpec::Http { port, path: path.into() });
    for (value, expected) in [
        ("tcp", Some(ProbeSpec::Tcp { port: 9000 })),
        ("tcp:7000", Some(ProbeSpec::Tcp { port: 7000 })),
        ("tcp:http", Some(ProbeSpec::Tcp { port: 8080 })),
        ("http:/healthz", http(9000, "/healthz")),
        ("http:8081/ready", http(8081, "/ready")),
        ("http:http/", http(8080, "/")),
        ("mysql", Some(ProbeSpec::Mysql { port: 9000 })),
        ("mysql:3306", Some(ProbeSpec::Mysql { port: 3306 })),
        ("mysql:http", Some(ProbeSpec::Mysql { port: 8080 })),
        ("none", Some(ProbeSpec::None)),
        ("http:healthz", None),
        ("mysql:db", None),
        ("mysql:root:secret", None),
        ("http:", None),
        ("tcp:0", None),
        ("tcp:70000", None),
        ("tcp:grpc", None),
        ("none:1", None),
        ("grpc", None),
    ] {
        assert_eq!(parse_probe(&pod, value, 9000), expected, "{value}");
    }
}

/// A pod with volumes of its own gets the labels volume appended, not its list replaced.
#[test]
fn labels_volume_is_appended_to_the_pods_volumes() {
    let mut object = pod(annotated());
    object["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    let response = respond(&review_with("CREATE", object), &[fixtures::cluster(fixtures::DEFAULTS)], &settings());
    let patch = patch_of(&response).unwrap_or_else(|| panic!("not injected: {response:?}"));
    assert_eq!(patch[0]["path"], "/spec/volumes/-");
    assert_eq!(patch[0]["value"]["name"], "nacos-sidecar-podinfo");
    let mut pod = pod(annotated());
    pod["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    json_patch::patch(&mut pod, &serde_json::from_value::<json_patch::Patch>(patch).unwrap()).unwrap();
    let names: Vec<&str> =
        pod["spec"]["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["data", "nacos-sidecar-podinfo"]);
}

/// With client-facing TLS the patch gives the sidecar the cluster CA: as the pod annotation,
/// which the downward API writes into the podinfo volume, and the env naming that file. The
/// patched pod carries all three; a cluster with TLS between members only gets none of them.
#[test]
fn client_facing_tls_gives_the_sidecar_the_cluster_ca() {
    let now = time::OffsetDateTime::now_utc();
    let authority = crate::pki::Authority::generate("test CA", time::Duration::days(1), now).unwrap();
    let pem = authority.ca_pem();
    let injected = |spec: &str, ca: Option<&[u8]>| {
        let request = parse_review(&review(annotated())).unwrap();
        let Decision::Lookup(injection) = decide(&request, &settings()) else { panic!("not looked up") };
        let cluster = fixtures::cluster(spec);
        assert_eq!(
            trust_secret(&cluster, &settings()).is_some(),
            spec.contains("clientFacing: true"),
            "the CA is read for client-facing TLS only"
        );
        complete(&request, &injection, Some(&cluster), ca, &settings())
    };
    let response = injected("tls: { clientFacing: true }", Some(pem.as_bytes()));
    let mut pod = pod(annotated());
    let patch = patch_of(&response).unwrap_or_else(|| panic!("not injected: {response:?}"));
    json_patch::patch(&mut pod, &serde_json::from_value::<json_patch::Patch>(patch).unwrap()).unwrap();
    assert_eq!(pod["metadata"]["annotations"]["nacos.rs/tls-ca"], pem);
    assert_eq!(pod["metadata"]["annotations"]["nacos.rs/service"], "orders", "the owner's annotations stay");
    let items = &pod["spec"]["volumes"][0]["downwardAPI"]["items"];
    assert_eq!(
        items[1],
        json!({ "path": "ca.crt", "fieldRef": { "fieldPath": "metadata.annotations['nacos.rs/tls-ca']" } })
    );
    let env = pod["spec"]["containers"][1]["env"].as_array().unwrap();
    assert!(env.contains(&json!({ "name": "NACOS_SIDECAR_TLS_CA", "value": "/etc/nacos-sidecar/podinfo/ca.crt" })));

    let members_only = patch_of(&injected("tls: {}", None)).unwrap();
    assert!(!members_only.to_string().contains("tls-ca") && !members_only.to_string().contains("TLS_CA"));

    let malformed = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    for unusable in [None, Some(&b""[..]), Some(&b"not a certificate"[..]), Some(&malformed[..])] {
        assert_denied(&injected("tls: { clientFacing: true }", unusable), &["nacos-tls has no usable PEM ca.crt"]);
    }
    let given = "tls: { clientFacing: true, secretName: nacos-cert }";
    assert_denied(&injected(given, None), &["Secret nacos-cert has no usable PEM ca.crt"]);
}

/// The `mysql` probe's login comes only from the Secret the pod names, as `secretKeyRef` env.
#[test]
fn mysql_probe_reads_its_login_from_the_named_secret() {
    let mut annotations = annotated();
    annotations["nacos.rs/probe"] = json!("mysql:3306");
    annotations["nacos.rs/probe-mysql-secret"] = json!("orders-db-probe");
    let response = respond(&review(annotations), &[fixtures::cluster(fixtures::DEFAULTS)], &settings());
    let container = &patch_of(&response).unwrap_or_else(|| panic!("not injected: {response:?}"))[1]["value"];
    let env = container["env"].as_array().unwrap();
    let secret = |name: &str, key: &str| {
        json!({ "name": name,
                "valueFrom": { "secretKeyRef": { "name": "orders-db-probe", "key": key, "optional": false } } })
    };
    let probe: Vec<&Value> =
        env.iter().filter(|e| e["name"].as_str().unwrap().starts_with("NACOS_SIDECAR_P")).collect();
    assert_eq!(
        probe,
        [
            &json!({ "name": "NACOS_SIDECAR_PORT", "value": "8080" }),
            &json!({ "name": "NACOS_SIDECAR_PROBE", "value": "mysql" }),
            &json!({ "name": "NACOS_SIDECAR_PROBE_PORT", "value": "3306" }),
        ]
    );
    let login: Vec<&Value> = env.iter().filter(|e| e["name"].as_str().unwrap().contains("MYSQL")).collect();
    assert_eq!(
        login,
        [&secret("NACOS_SIDECAR_MYSQL_USER", "username"), &secret("NACOS_SIDECAR_MYSQL_PASSWORD", "password")]
    );
    assert!(env.iter().all(|e| e.get("value").is_none() || !e["name"].as_str().unwrap().contains("MYSQL")));
}

#[test]
fn mysql_probe_without_a_secret_and_a_secret_without_mysql_are_denied() {
    let mut annotations = annotated();
    annotations["nacos.rs/probe"] = json!("mysql");
    let response = respond(&review(annotations.clone()), &[fixtures::cluster(fixtures::DEFAULTS)], &settings());
    assert_denied(&response, &["nacos.rs/probe: mysql needs nacos.rs/probe-mysql-secret", "username and password"]);

    annotations["nacos.rs/probe-mysql-secret"] = json!("Bad_Name");
    let response = respond(&review(annotations.clone()), &[fixtures::cluster(fixtures::DEFAULTS)], &settings());
    assert_denied(&response, &["nacos.rs/probe-mysql-secret: \"Bad_Name\" is not a Secret name"]);

    annotations["nacos.rs/probe"] = json!("tcp");
    annotations["nacos.rs/probe-mysql-secret"] = json!("db-probe");
    let response = respond(&review(annotations), &[fixtures::cluster(fixtures::DEFAULTS)], &settings());
    assert_denied(&response, &["nacos.rs/probe-mysql-secret is only used with the mysql probe"]);
}

#[test]
fn cluster_references() {
    let parse = |value| ClusterRef::parse(value, "shop").map(|c| c.to_string());
    assert_eq!(parse("nacos").as_deref(), Some("shop/nacos"));
    assert_eq!(parse(" registry/nacos ").as_deref(), Some("registry/nacos"));
    for bad in ["", "/nacos", "registry/", "a/b/c", "Nacos", "-nacos", "nacos_1"] {
        assert_eq!(parse(bad), None, "{bad:?}");
    }
}

/// `docs/examples/injected-app.yaml` really gets the sidecar from the cluster of
/// `docs/examples/nacoscluster.yaml`: the documented annotations stay true to the code.
#[test]
fn documented_example_app_is_injected() {
    let read = |file: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let deployment: Value = serde_saphyr::from_str(&read("docs/examples/injected-app.yaml")).unwrap();
    let cluster: NacosCluster = serde_saphyr::from_str(&read("docs/examples/nacoscluster.yaml")).unwrap();
    let cluster = NacosCluster {
        metadata: kube::api::ObjectMeta { uid: Some(fixtures::UID.into()), ..cluster.metadata },
        ..cluster
    };
    let mut pod = deployment["spec"]["template"].clone();
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");

    let response = respond(&review_with("CREATE", pod), &[cluster], &settings());
    let container = &patch_of(&response).unwrap_or_else(|| panic!("not injected: {response:?}"))[1]["value"];
    assert_eq!(container["name"], "nacos-sidecar");
    let env = |name: &str| container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned();
    assert_eq!(env("NACOS_SIDECAR_SERVICE").unwrap()["value"], "orders");
    assert_eq!(env("NACOS_SIDECAR_PORT").unwrap()["value"], "8080");
    assert_eq!(env("NACOS_SIDECAR_PROBE_PATH").unwrap()["value"], "/healthz");
}
