//! `spec.tls` through a whole reconcile: the managed Secrets are made once and kept, the
//! members' certificate is re-issued when the cluster grows, the registry is called over HTTPS
//! trusting the cluster CA, and a named Secret is used as it is (or waited for).

use super::*;

const CA_SECRET: &str = "/api/v1/namespaces/registry/secrets/nacos-tls-ca";
const MEMBERS_SECRET: &str = "/api/v1/namespaces/registry/secrets/nacos-tls";
const CA_APPLY: &str = "/api/v1/namespaces/registry/secrets/nacos-tls-ca?&force=true&fieldManager=nacos-operator";
const MEMBERS_APPLY: &str = "/api/v1/namespaces/registry/secrets/nacos-tls?&force=true&fieldManager=nacos-operator";
const GIVEN_SECRET: &str = "/api/v1/namespaces/registry/secrets/nacos-members-tls";

type Captured = Arc<Mutex<Option<Value>>>;

/// An apply answered like the API server; its body is kept in `into`.
fn capture(uri: &str, into: &Captured) -> Expect {
    let into = into.clone();
    Expect::new(Method::PATCH, uri, move |body| {
        *into.lock().unwrap() = Some(body.clone());
        (200, body)
    })
}

fn captured(value: &Captured) -> Value {
    value.lock().unwrap().clone().expect("not applied")
}

/// The PEM under `key` of an applied Secret (`data` is base64 on the wire).
fn pem(secret: &Value, key: &str) -> Vec<u8> {
    let data: k8s_openapi::ByteString = serde_json::from_value(secret["data"][key].clone()).unwrap();
    data.0
}

/// The applies of a reconcile with TLS: the StatefulSet's body is kept in `sts`.
fn applies_capturing(ready: i32, sts: &Captured) -> Vec<Expect> {
    let mut script = applies(ready);
    let sts = sts.clone();
    script[3] = Expect::new(Method::PATCH, STS_APPLY, move |mut body| {
        *sts.lock().unwrap() = Some(body.clone());
        let replicas = body["spec"]["replicas"].as_i64().unwrap_or(0);
        body["status"] = json!({ "replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas });
        (200, body)
    });
    script
}

#[tokio::test]
async fn managed_secrets_are_made_once_mounted_and_kept_across_reconciles() {
    let spec = fixtures::TLS;
    // First reconcile: no Secrets yet; both are applied before anything that mounts them.
    let t = timeline();
    let (ca, member_secret, sts) = (Captured::default(), Captured::default(), Captured::default());
    let mut script = vec![
        Expect::get(CA_SECRET, 404, mock::api_error(404)),
        Expect::get(MEMBERS_SECRET, 404, mock::api_error(404)),
        Expect::get(STS, 404, mock::api_error(404)),
        capture(CA_APPLY, &ca),
        capture(MEMBERS_APPLY, &member_secret),
    ];
    script.extend(applies_capturing(0, &sts));
    script.push(event("Created", "Normal"));
    script.push(Expect::event(EVENTS, |body| {
        assert_eq!(body["reason"], "CertificateIssued", "{body:#}");
        assert!(body["note"].as_str().unwrap().contains("there was none"), "{body:#}");
    }));
    script.push(Expect::status(STATUS, |_| {}));
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    run(&cluster(spec, None), script, registry, &t).await.result.unwrap();
    let (ca, issued) = (captured(&ca), captured(&member_secret));
    for secret in [&ca, &issued] {
        assert_eq!(secret["type"], "kubernetes.io/tls");
        assert_eq!(secret["metadata"]["ownerReferences"][0]["kind"], "NacosCluster");
        assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], fixtures::UID);
    }
    assert_eq!(pem(&issued, "ca.crt"), pem(&ca, "tls.crt"));
    let pod = &captured(&sts)["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][1]["secret"]["secretName"], "nacos-tls", "{pod:#}");
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "NACOS_TLS_CA" && e["value"] == "/etc/registry/tls/ca.crt"), "{env:#?}");

    // Second reconcile reads them back: nothing is written to them, and the registry is asked
    // over HTTPS trusting the cluster CA.
    let t = timeline();
    let mut script = vec![
        Expect::get(CA_SECRET, 200, ca.clone()),
        Expect::get(MEMBERS_SECRET, 200, issued.clone()),
        Expect::get(STS, 200, statefulset(spec, 3, 3)),
    ];
    script.extend(applies(3));
    script.extend([event("Available", "Normal"), Expect::status(STATUS, |_| {})]);
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    run(&cluster(spec, None), script, registry.clone(), &t).await.result.unwrap();
    assert!(
        entries(&t).iter().all(|e| !e.starts_with("PATCH /api/v1/namespaces/registry/secrets")),
        "{:#?}",
        entries(&t)
    );
    let cas = registry.tls_cas();
    assert!(!cas.is_empty());
    assert!(cas.iter().all(|c| c.as_deref() == Some(pem(&ca, "tls.crt").as_slice())), "{cas:?}");
}

#[tokio::test]
async fn scaling_up_reissues_only_the_members_certificate_for_the_new_names() {
    // Secrets made for 3 members, as the first reconcile of a 3-member cluster wrote them.
    let cluster3 = fixtures::validated(fixtures::TLS);
    let plan = crate::controller::tls::plan(&cluster3, &Default::default(), time::OffsetDateTime::now_utc()).unwrap();
    let [ca, issued] = [&plan.apply[0], &plan.apply[1]].map(|s| serde_json::to_value(s).unwrap());

    let spec = &format!("{}\nreplicas: 5\n", fixtures::TLS);
    let t = timeline();
    let reissued = Captured::default();
    let mut script = vec![
        Expect::get(CA_SECRET, 200, ca.clone()),
        Expect::get(MEMBERS_SECRET, 200, issued),
        Expect::get(STS, 200, statefulset(spec, 3, 3)),
        capture(MEMBERS_APPLY, &reissued),
    ];
    script.extend(applies(3));
    script.push(event("ScalingStatefulSet", "Normal"));
    script.push(Expect::event(EVENTS, |body| {
        assert_eq!(body["reason"], "CertificateIssued", "{body:#}");
        let note = body["note"].as_str().unwrap();
        assert!(note.contains("for 5 members") && note.contains("did not name nacos-3."), "{note}");
    }));
    script.extend([event("MemberAdded", "Normal"), Expect::status(STATUS, |_| {})]);
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    run(&cluster(spec, running()), script, registry, &t).await.result.unwrap();
    // The same CA; the new certificate names the new members.
    let reissued = captured(&reissued);
    assert_eq!(pem(&reissued, "ca.crt"), pem(&ca, "tls.crt"));
    let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem(&ca, "tls.crt")).unwrap();
    let cert = rustls::pki_types::pem::PemObject::from_pem_slice(&pem(&reissued, "tls.crt")).unwrap();
    for name in ["nacos-3.nacos-headless.registry.svc.cluster.local", "nacos-4.nacos-headless.registry.svc"] {
        assert!(crate::pki::trusts(&ca_der, &cert, name, time::OffsetDateTime::now_utc()), "{name}");
    }
}

#[tokio::test]
async fn a_named_secret_is_mounted_as_it_is_and_nothing_is_made() {
    let spec = fixtures::TLS_CERT_MANAGER;
    let given = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "nacos-members-tls" },
        "data": { "tls.crt": "Y2VydA==", "tls.key": "a2V5", "ca.crt": "Y2E=" } });
    let t = timeline();
    let sts = Captured::default();
    let mut script = vec![Expect::get(GIVEN_SECRET, 200, given), Expect::get(STS, 200, statefulset(spec, 3, 3))];
    script.extend(applies_capturing(3, &sts));
    script.extend([event("Available", "Normal"), Expect::status(STATUS, |_| {})]);
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    run(&cluster(spec, None), script, registry.clone(), &t).await.result.unwrap();
    assert_eq!(captured(&sts)["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"], "nacos-members-tls");
    // Client-facing TLS is off: the registry is called over plain HTTP.
    assert!(registry.tls_cas().iter().all(Option::is_none));
}

#[tokio::test]
async fn a_missing_named_secret_or_key_is_degraded_and_waited_for() {
    let incomplete = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "nacos-members-tls" },
        "data": { "tls.crt": "Y2VydA==", "tls.key": "a2V5" } });
    for (answer, reason) in
        [((404, mock::api_error(404)), "TlsSecretMissing"), ((200, incomplete), "TlsSecretKeyMissing")]
    {
        let t = timeline();
        let written = Arc::new(Mutex::new(None));
        let script = vec![
            Expect::get(GIVEN_SECRET, answer.0, answer.1),
            Expect::get(STS, 404, mock::api_error(404)),
            event(reason, "Warning"),
            status_into(&written),
        ];
        let registry = Arc::new(FakeRegistry::down(t.clone()));
        let result = run(&cluster(fixtures::TLS_CERT_MANAGER, None), script, registry, &t).await.result;
        assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
        let status = written.lock().unwrap().clone().unwrap();
        assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::True, reason.to_owned()));
    }
}
