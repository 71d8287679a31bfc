//! The reconciler that drives the pipeline, its error policy, and the controller loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use snafu::{ResultExt, Snafu};
use time::OffsetDateTime;

use super::build::{MANAGED_BY_LABEL, MANAGER, build};
use super::dereference::{AuthSecret, TlsSecrets, dereference};
use super::membership::{Observed, Step, decide};
use super::registry::{Caller, RegistryAdmin};
use super::server::ServerCapabilities;
use super::triggers::{Watched, changes};
use super::update_status::{Finding, MembershipReport, Observations, applied_status, blocked_status, patch_status};
use super::validate::{Warning, validate};
use super::{OperatorEnvironment, apply, dereference as deref_step, scale, tls, update_status};
use crate::crd::{ConditionStatus, ConditionType, NacosCluster, NacosClusterStatus};
use crate::metrics::Metrics;
use crate::projection::{Locate, Projections, client_service};

/// Requeue after a settled reconcile: members and leader are refreshed from the registry,
/// which the controller does not watch.
const SETTLED_REQUEUE: Duration = Duration::from_secs(60);
/// Requeue while a membership change is under way: the next step follows quickly.
const CHANGING_REQUEUE: Duration = Duration::from_secs(2);
/// Requeue while waiting for members, a leader or a learner to catch up.
const WAITING_REQUEUE: Duration = Duration::from_secs(10);
/// Requeue while a step is refused or a Secret is missing (Secrets are not watched).
const BLOCKED_REQUEUE: Duration = Duration::from_secs(30);
/// First retry delay after an error; doubles per consecutive error of the same object.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay after errors.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Everything a reconcile needs, shared by all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes events; shared so repeated events aggregate into series.
    pub recorder: Recorder,
    /// The registry's membership admin API.
    pub registry: Arc<dyn RegistryAdmin>,
    /// The operator's environment.
    pub env: OperatorEnvironment,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// What the API server knows: objects are built for it.
    pub server: ServerCapabilities,
    /// Consecutive failures per cluster (`namespace/name`), for the backoff; cleared on success.
    failures: Mutex<HashMap<String, u32>>,
    /// The service projections of the clusters.
    projections: Projections,
    /// Where a cluster's projection reaches the registry.
    locate: Locate,
}

impl Context {
    /// A context; `instance` names this operator replica in events (its pod name).
    pub fn new(
        client: Client,
        registry: Arc<dyn RegistryAdmin>,
        env: OperatorEnvironment,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter { controller: MANAGER.into(), instance });
        let server = ServerCapabilities::NEWEST;
        Self {
            client,
            recorder,
            registry,
            env,
            metrics,
            server,
            failures: Mutex::default(),
            projections: Projections::default(),
            locate: Arc::new(client_service),
        }
    }

    /// The same context reaching each cluster's registry for the service projection at the
    /// addresses `locate` gives (default: the client Service's DNS name).
    pub fn with_registry_locator(self, locate: Locate) -> Self {
        Self { locate, ..self }
    }

    /// The same context for an API server with `server`'s capabilities (default:
    /// [`ServerCapabilities::NEWEST`]), as [`ServerCapabilities::discover`] found them.
    pub fn with_server(self, server: ServerCapabilities) -> Self {
        Self { server, ..self }
    }

    /// Counts a failure of `key` and returns how many in a row there were.
    fn record_failure(&self, key: String) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key).or_default();
        *count = count.saturating_add(1);
        *count
    }

    fn clear_failures(&self, key: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// Publishes an event about `cluster`; a failure is logged, never fatal.
    async fn event(&self, cluster: &NacosCluster, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(error) = self.recorder.publish(&event, &cluster.object_ref(&())).await {
            tracing::warn!(cluster = %cluster.name_any(), %reason, %error, "cannot publish an event");
        }
    }
}

/// Why a reconcile failed: one variant per step that talks to the API server. The variant
/// name is the `step` label of the error metric.
#[derive(Debug, Snafu, strum::IntoStaticStr)]
pub enum Error {
    /// Reading referenced objects failed.
    #[snafu(display("dereference failed"))]
    Dereference {
        /// Cause.
        source: deref_step::Error,
    },
    /// Building the objects failed.
    #[snafu(display("building the cluster's objects failed"))]
    Build {
        /// Cause.
        source: super::build::Error,
    },
    /// Making the members' TLS certificate failed.
    #[snafu(display("issuing the members' TLS certificate failed"))]
    Tls {
        /// Cause.
        source: super::tls::Error,
    },
    /// Applying the objects failed.
    #[snafu(display("applying the cluster's objects failed"))]
    Apply {
        /// Cause.
        source: apply::Error,
    },
    /// Starting, stopping or cleaning up the service projection failed.
    #[snafu(display("the service projection failed"))]
    Projection {
        /// Cause.
        source: crate::projection::Error,
    },
    /// Writing the status failed.
    #[snafu(display("updating the status failed"))]
    UpdateStatus {
        /// Cause.
        source: update_status::Error,
    },
}

impl Error {
    /// The pipeline step that failed.
    pub fn step(&self) -> &'static str {
        self.into()
    }
}

/// Reconciles one `NacosCluster`.
pub async fn reconcile(cluster: Arc<NacosCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // Boxed: the pipeline's future holds every step's state (~24 KB), too much for the stack
    // of the task that polls it.
    let result = Box::pin(reconcile_cluster(&cluster, &ctx)).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    if result.is_ok() {
        ctx.clear_failures(&key(&cluster));
    }
    result
}

/// Retries a failed reconcile after 5 s, doubling per consecutive failure of the same cluster
/// up to 5 min, so a broken API server or a persistent conflict is not hammered.
pub fn error_policy(cluster: Arc<NacosCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.observe_error(error.step());
    let failures = ctx.record_failure(key(&cluster));
    let delay = backoff(failures);
    tracing::warn!(
        cluster = %key(&cluster), step = error.step(), failures, retry_in = ?delay,
        error = %snafu::Report::from_error(error), "reconcile failed"
    );
    Action::requeue(delay)
}

/// Delay before retry number `failures` (1-based).
pub(crate) fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

fn key(cluster: &NacosCluster) -> String {
    format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any())
}

async fn reconcile_cluster(cluster: &NacosCluster, ctx: &Context) -> Result<Action, Error> {
    let now = Time(Timestamp::now());
    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    // Spec problems are announced once per generation; the condition stays meanwhile.
    let new_generation = previous.observed_generation != generation;

    let fetched = dereference(&ctx.client, cluster).await.context(DereferenceSnafu)?;
    let stateful_set = fetched.stateful_set.as_ref();

    let validated = match validate(cluster, &ctx.env) {
        Ok(validated) => validated,
        Err(error) => {
            let message = snafu::Report::from_error(&error).to_string();
            if new_generation {
                ctx.event(cluster, EventType::Warning, error.reason(), "Validate", message.clone()).await;
            }
            let status = blocked_status(&previous, stateful_set, generation, error.reason(), &message, &now);
            patch_status(&ctx.client, cluster, status).await.context(UpdateStatusSnafu)?;
            return Ok(Action::await_change());
        }
    };

    let secret_problem = match &fetched.auth_secret {
        AuthSecret::Missing { name } => Some((
            "AuthSecretMissing",
            format!("Secret {name} named by spec.auth.secretName does not exist in namespace {}", validated.namespace),
        )),
        AuthSecret::MissingKey { name, key, field } => {
            Some(("AuthSecretKeyMissing", format!("Secret {name} has no key {key} (spec.auth.secretKeys.{field})")))
        }
        AuthSecret::InvalidIdentity { name } => Some((
            "AuthSecretIdentityInvalid",
            format!("the identity key and value in Secret {name} cannot form an HTTP header"),
        )),
        AuthSecret::NotReferenced | AuthSecret::Present { .. } => None,
    };
    let secret_problem = secret_problem.or_else(|| match &fetched.tls {
        TlsSecrets::Missing { name } => Some((
            "TlsSecretMissing",
            format!("Secret {name} named by spec.tls.secretName does not exist in namespace {}", validated.namespace),
        )),
        TlsSecrets::MissingKey { name, key } => {
            Some(("TlsSecretKeyMissing", format!("Secret {name} named by spec.tls.secretName has no key {key}")))
        }
        TlsSecrets::Off | TlsSecrets::Managed(_) | TlsSecrets::Given { .. } => None,
    });
    if let Some((reason, message)) = secret_problem {
        // Members could not start without it, nor the operator manage their membership; nothing
        // is applied until it is complete.
        ctx.event(cluster, EventType::Warning, reason, "Dereference", message.clone()).await;
        let status = blocked_status(&previous, stateful_set, generation, reason, &message, &now);
        patch_status(&ctx.client, cluster, status).await.context(UpdateStatusSnafu)?;
        return Ok(Action::requeue(BLOCKED_REQUEUE));
    }

    let findings: Vec<Finding> = validated
        .warnings
        .iter()
        .map(|warning| Finding { reason: warning_reason(warning), message: warning.to_string() })
        .collect();
    if new_generation {
        for finding in &findings {
            ctx.event(cluster, EventType::Warning, finding.reason, "Validate", finding.message.clone()).await;
        }
    }

    let resources = build(&validated, &ctx.server).context(BuildSnafu)?;
    let certificates = match &fetched.tls {
        TlsSecrets::Managed(existing) => {
            Some(tls::plan(&validated, existing, OffsetDateTime::now_utc()).context(TlsSnafu)?)
        }
        _ => None,
    };
    let identity = fetched.auth_secret.identity();
    // The operator's calls to members go over HTTPS, trusting the cluster CA, when their HTTP
    // port serves TLS.
    let tls_ca = match (&fetched.tls, &certificates) {
        (_, Some(plan)) => Some(plan.ca_pem.as_slice()),
        (TlsSecrets::Given { ca_pem }, None) => Some(ca_pem.as_slice()),
        _ => None,
    };
    let caller =
        Caller { identity, tls_ca: tls_ca.filter(|_| validated.tls.as_ref().is_some_and(|t| t.client_facing)) };
    ctx.projections
        .ensure(&ctx.client, &validated, &ctx.locate, identity, caller.tls_ca, ctx.server.endpoints)
        .await
        .context(ProjectionSnafu)?;

    let current = stateful_set.and_then(|s| s.spec.as_ref()).and_then(|s| s.replicas);
    let ready = stateful_set.and_then(|s| s.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0);
    let view = match current {
        Some(replicas) => scale::observe(ctx.registry.as_ref(), caller, &validated, to_u64(replicas)).await,
        // No StatefulSet, no members to ask.
        None => None,
    };
    let plan = decide(&Observed {
        desired: to_u64(validated.replicas),
        statefulset_replicas: current.map(to_u64),
        ready_replicas: to_u64(ready),
        view: view.as_ref(),
    });
    let replicas = i32::try_from(plan.statefulset_replicas).unwrap_or(validated.replicas);

    let secrets = certificates.as_ref().map(|plan| plan.apply.as_slice()).unwrap_or_default();
    // Boxed: five applies in sequence make a large future (clippy::large_futures).
    let applied =
        match Box::pin(apply::apply(&ctx.client, &validated, secrets, resources, replicas, ctx.server.pdb)).await {
            Ok(applied) => applied,
            Err(source) => {
                report_apply_failure(cluster, ctx, &previous, stateful_set, &source, &now).await;
                return Err(Error::Apply { source });
            }
        };
    match current {
        None => {
            let note = format!("created the StatefulSet, Services and configuration for {replicas} members");
            ctx.event(cluster, EventType::Normal, "Created", "Apply", note).await;
        }
        Some(before) if before != replicas => {
            let note = format!("StatefulSet replicas {before} -> {replicas}");
            ctx.event(cluster, EventType::Normal, "ScalingStatefulSet", "Apply", note).await;
        }
        Some(_) => {}
    }

    if let Some(issue) = certificates.as_ref().and_then(|plan| plan.issued.as_ref()) {
        let note = format!("issued the members' TLS certificate for {} members ({issue})", validated.replicas);
        ctx.event(cluster, EventType::Normal, "CertificateIssued", "Apply", note).await;
    }

    let report = scale::execute(ctx.registry.as_ref(), caller, &validated, view.as_ref(), &plan.step).await;
    match (&plan.step, &report) {
        (_, MembershipReport::Refused { reason, message }) => {
            ctx.event(cluster, EventType::Warning, reason, "ChangeMembership", message.clone()).await;
        }
        (Step::AddLearner { .. }, MembershipReport::Changing { message, .. }) => {
            ctx.event(cluster, EventType::Normal, "MemberAdded", "ChangeMembership", message.clone()).await;
        }
        (Step::Promote { .. }, MembershipReport::Changing { message, .. }) => {
            ctx.event(cluster, EventType::Normal, "MemberPromoted", "ChangeMembership", message.clone()).await;
        }
        (Step::Remove { .. }, MembershipReport::Changing { message, .. }) => {
            ctx.event(cluster, EventType::Normal, "MemberRemoved", "ChangeMembership", message.clone()).await;
        }
        _ => {}
    }

    let requeue = match &report {
        MembershipReport::Settled => SETTLED_REQUEUE,
        MembershipReport::Changing { .. } => CHANGING_REQUEUE,
        MembershipReport::Waiting { .. } => WAITING_REQUEUE,
        MembershipReport::Refused { .. } => BLOCKED_REQUEUE,
    };
    let observations = Observations {
        desired: validated.replicas,
        name: &validated.name,
        generation,
        view: view.as_ref(),
        membership: report,
        findings,
    };
    let status = applied_status(&previous, &applied, &observations, &now);
    match (is_available(&previous), is_available(&status)) {
        (false, true) => {
            let note = condition_message(&status, ConditionType::Available);
            ctx.event(cluster, EventType::Normal, "Available", "UpdateStatus", note).await;
        }
        (true, false) => {
            let note = condition_message(&status, ConditionType::Available);
            ctx.event(cluster, EventType::Warning, "Unavailable", "UpdateStatus", note).await;
        }
        _ => {}
    }
    patch_status(&ctx.client, cluster, status).await.context(UpdateStatusSnafu)?;
    Ok(Action::requeue(requeue))
}

/// Makes a failed apply visible on the cluster: a Warning event and `Degraded=True` with reason
/// `ApplyFailed` and the API server's answer. The error still goes to the error policy (retry
/// with backoff); a failure to write the status is only logged, the apply error is the news.
async fn report_apply_failure(
    cluster: &NacosCluster,
    ctx: &Context,
    previous: &NacosClusterStatus,
    stateful_set: Option<&StatefulSet>,
    error: &apply::Error,
    now: &Time,
) {
    const REASON: &str = "ApplyFailed";
    let message = snafu::Report::from_error(error).to_string();
    ctx.event(cluster, EventType::Warning, REASON, "Apply", message.clone()).await;
    let status = blocked_status(previous, stateful_set, cluster.metadata.generation, REASON, &message, now);
    if let Err(error) = patch_status(&ctx.client, cluster, status).await {
        tracing::warn!(cluster = %key(cluster), error = %snafu::Report::from_error(error), "cannot report the failed apply");
    }
}

fn is_available(status: &NacosClusterStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == ConditionType::Available && c.status == ConditionStatus::True)
}

fn condition_message(status: &NacosClusterStatus, type_: ConditionType) -> String {
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.message.clone()).unwrap_or_default()
}

fn warning_reason(warning: &Warning) -> &'static str {
    match warning {
        Warning::EvenReplicas { .. } => "EvenReplicas",
        Warning::DnsOnLoadBalancer => "DnsOnLoadBalancer",
    }
}

fn to_u64(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Why the controller could not start.
#[derive(Debug, Snafu)]
pub enum RunError {
    /// The `NacosCluster` API is not served.
    #[snafu(display("cannot list NacosClusters; is the CRD installed? (kubectl apply -f crds/nacoscluster.yaml)"))]
    CrdNotQueryable {
        /// Cause.
        source: kube::Error,
    },
}

/// Runs the controller until SIGTERM/Ctrl-C: watches `NacosCluster`s and the objects they own
/// (owned objects are watched only when labelled `managed-by=nacos-operator`, so the watch
/// caches stay small; the PodDisruptionBudget under the version the server serves). Only events
/// that change something a reconcile acts on wake it ([`triggers`](super::triggers)): the
/// operator's own no-op applies and status writes do not.
pub async fn run(ctx: Arc<Context>) -> Result<(), RunError> {
    let client = ctx.client.clone();
    let clusters: Api<NacosCluster> = Api::all(client.clone());
    clusters.list(&ListParams::default().limit(1)).await.context(CrdNotQueryableSnafu)?;
    let (reader, writer) = reflector::store();
    let cluster_events = watcher(clusters, watcher::Config::default()).reflect(writer);
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
    let pdb_resource = ctx.server.pdb.api_resource();
    let pdbs = Api::<DynamicObject>::all_with(client.clone(), &pdb_resource);
    Controller::for_stream(changes(cluster_events, Watched::Owner), reader)
        .owns_stream(changes(watcher(Api::<ConfigMap>::all(client.clone()), owned.clone()), Watched::Owned))
        .owns_stream(changes(watcher(Api::<Service>::all(client.clone()), owned.clone()), Watched::Owned))
        .owns_stream(changes(watcher(Api::<StatefulSet>::all(client), owned.clone()), Watched::Owned))
        .owns_stream_with(changes(watcher(pdbs, owned), Watched::Owned), pdb_resource)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;
