//! Specs the operator refuses or warns about, and the auth Secret: conditions and events, never
//! an error loop.

use super::*;

/// An invalid spec: one Warning event with the validation reason, a Degraded condition (the
/// phase of a cluster that never came up stays `Pending`), no objects applied, and the
/// controller waits for a change instead of retrying.
async fn assert_refused(spec: &str, reason: &'static str) {
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    let script = vec![Expect::get(STS, 404, mock::api_error(404)), event(reason, "Warning"), status_into(&written)];
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, .. } = run(&cluster(spec, None), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::await_change(), "{spec}");
    let status = written.lock().unwrap().clone().unwrap();
    assert_eq!(status.phase, Some(crate::crd::ClusterPhase::Pending), "{spec}");
    assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::True, reason.to_owned()), "{spec}");
    assert_eq!(condition(&status, ConditionType::Progressing).0, ConditionStatus::False, "{spec}");
    assert_eq!(status.observed_generation, Some(1));
}

#[tokio::test]
async fn zero_replicas_is_degraded_with_an_event_not_an_error() {
    assert_refused("replicas: 0", "InvalidReplicas").await;
}

#[tokio::test]
async fn a_bad_storage_size_is_degraded_with_an_event_not_an_error() {
    assert_refused("storage: { size: ten-gigs }", "InvalidStorageSize").await;
}

#[tokio::test]
async fn an_invalid_spec_already_reported_for_this_generation_publishes_no_new_event() {
    let t = timeline();
    let previous = NacosClusterStatus { observed_generation: Some(1), ..NacosClusterStatus::default() };
    let script = vec![Expect::get(STS, 404, mock::api_error(404)), Expect::status(STATUS, |_| {})];
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, .. } = run(&cluster("replicas: 0", Some(previous)), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn even_replicas_are_reconciled_with_a_warning_event_and_a_degraded_condition() {
    let spec = "replicas: 4";
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    let mut script = vec![Expect::get(STS, 404, mock::api_error(404)), event("EvenReplicas", "Warning")];
    script.extend(applies(0));
    script.extend([event("Created", "Normal"), status_into(&written)]);
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, .. } = run(&cluster(spec, None), script, registry, &t).await;
    result.unwrap();
    let status = written.lock().unwrap().clone().unwrap();
    assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::True, "EvenReplicas".into()));
}

#[tokio::test]
async fn a_missing_auth_secret_is_degraded_with_an_event_and_nothing_is_applied() {
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    let script = vec![
        Expect::get(SECRET, 404, mock::api_error(404)),
        Expect::get(STS, 404, mock::api_error(404)),
        event("AuthSecretMissing", "Warning"),
        status_into(&written),
    ];
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, .. } = run(&cluster(fixtures::AUTH, None), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    let status = written.lock().unwrap().clone().unwrap();
    assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::True, "AuthSecretMissing".into()));
}

/// The fixture's auth Secret: token under `jwt-secret`, identity `serverIdentity: s3cret`
/// under the default keys (`data` values are base64).
fn auth_secret() -> Value {
    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "nacos-auth" },
        "data": { "jwt-secret": "c2VjcmV0", "identity-key": "c2VydmVySWRlbnRpdHk=", "identity-value": "czNjcmV0" } })
}

#[tokio::test]
async fn a_complete_auth_secret_lets_the_reconcile_proceed() {
    let t = timeline();
    let mut script = vec![Expect::get(SECRET, 200, auth_secret()), Expect::get(STS, 404, mock::api_error(404))];
    script.extend(applies(0));
    script.extend([event("Created", "Normal"), Expect::status(STATUS, |_| {})]);
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    run(&cluster(fixtures::AUTH, None), script, registry, &t).await.result.unwrap();
}

#[tokio::test]
async fn every_membership_call_carries_the_identity_from_the_auth_secret() {
    let spec = &format!("{}    replicas: 5\n", fixtures::AUTH);
    let t = timeline();
    let mut script = vec![Expect::get(SECRET, 200, auth_secret()), Expect::get(STS, 200, statefulset(spec, 3, 3))];
    script.extend(applies(3));
    script.extend([
        event("ScalingStatefulSet", "Normal"),
        event("MemberAdded", "Normal"),
        Expect::status(STATUS, |_| {}),
    ]);
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    run(&cluster(spec, running()), script, registry.clone(), &t).await.result.unwrap();
    assert_eq!(scale_steps(&t), ["statefulset replicas=5", "add 4 (nacos-3) @nacos-0"]);
    let identities = registry.identities();
    assert_eq!(identities.len(), 2, "the view and the change");
    for identity in identities {
        assert!(identity.as_ref().is_some_and(|i| i.is("serverIdentity", "s3cret")), "{identity:?}");
    }
}

#[tokio::test]
async fn an_auth_secret_without_the_identity_key_is_degraded_with_an_event_naming_it() {
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    let mut secret = auth_secret();
    secret["data"].as_object_mut().unwrap().remove("identity-key");
    let script = vec![
        Expect::get(SECRET, 200, secret),
        Expect::get(STS, 404, mock::api_error(404)),
        Expect::event(EVENTS, |body| {
            assert_eq!(body["reason"], "AuthSecretKeyMissing");
            assert_eq!(body["note"], "Secret nacos-auth has no key identity-key (spec.auth.secretKeys.identityKey)");
        }),
        status_into(&written),
    ];
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, .. } = run(&cluster(fixtures::AUTH, None), script, registry.clone(), &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    let status = written.lock().unwrap().clone().unwrap();
    assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::True, "AuthSecretKeyMissing".into()));
    assert!(registry.identities().is_empty(), "no registry call without a complete Secret");
}

#[tokio::test]
async fn an_auth_secret_without_the_token_key_is_degraded_with_an_event() {
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    // The fixture renames the token key to `jwt-secret`; this Secret still uses `token`.
    let secret = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "nacos-auth" },
        "data": { "token": "c2VjcmV0" } });
    let script = vec![
        Expect::get(SECRET, 200, secret),
        Expect::get(STS, 404, mock::api_error(404)),
        event("AuthSecretKeyMissing", "Warning"),
        status_into(&written),
    ];
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, .. } = run(&cluster(fixtures::AUTH, None), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    let status = written.lock().unwrap().clone().unwrap();
    assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::True, "AuthSecretKeyMissing".into()));
}
