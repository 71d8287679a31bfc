//! Prometheus text exposition at `/metrics` and at Nacos' `/nacos/actuator/prometheus`: open
//! to scrapers (no credentials), whatever `[auth]` says. Names are listed in docs/metrics.md;
//! docs/grafana-dashboard.json charts them.

use std::fmt::{Display, Write};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::on;

use super::openapi::{Guard, Reply, Route, Table};
use crate::api::ApiState;
use crate::telemetry::load;
use registry_proto::tls::Outcomes;

/// Prometheus scrape endpoints (open: Prometheus scrapes without credentials).
pub const TABLE: Table = Table {
    tag: "metrics",
    guard: Guard::None,
    routes: &[
        Route::get("/metrics", "Prometheus metrics", |m| on(m, metrics)).reply(Reply::Prometheus),
        Route::get("/nacos/actuator/prometheus", "Prometheus metrics (Nacos' path)", |m| on(m, metrics))
            .reply(Reply::Prometheus),
    ],
};

fn gauge(out: &mut String, name: &str, help: &str, v: impl Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: impl Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let mut out = String::with_capacity(16 * 1024);
    naming_and_configs(&s, &mut out);
    cluster(&s, &mut out);
    s.push.stats_ref().render_prometheus(&mut out);
    s.naming.health_checks().render_prometheus(&mut out);
    s.http_requests.render_prometheus(&mut out);
    s.grpc_requests.render_prometheus(&mut out);
    if let Some(dns) = &s.dns {
        dns.render_prometheus(&mut out);
    }
    tls(&s, &mut out);
    queues(&s, &mut out);
    limits(&s, &mut out);
    process(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn naming_and_configs(s: &ApiState, out: &mut String) {
    let c = s.naming.counts();
    for (name, help, v) in [
        ("registry_services", "Services known to this node", c.services),
        ("registry_instances", "Instances known to this node", c.instances),
        ("registry_http_beat_clients", "v1 heartbeat clients tracked by this node", c.beat_clients),
        (
            "registry_instances_limit",
            "Most instances the index holds ([naming] max_instances; 0: none)",
            s.naming.config().max_instances,
        ),
        ("registry_grpc_connections", "Registered gRPC connections", s.connections.len()),
        (
            "registry_grpc_connections_closing",
            "Ended gRPC connections whose cleanup has not finished (they count against [grpc] max_connections)",
            s.connections.closing(),
        ),
        ("registry_subscribers", "Subscriptions (UDP and gRPC)", s.push.subscriber_count()),
        (
            "registry_change_events_queued",
            "Change events the slowest reader (push, config notifier, DNS cache, health checker) has not taken; at [queues] change_events it resynchronises",
            s.naming.change_events_queued(),
        ),
        ("registry_config_long_polls_held", "Config long-polls held waiting for a change", s.configs.hub().held()),
        (
            "registry_config_listeners",
            "Config keys listened to by gRPC connections ((key, connection) pairs)",
            s.config_notify.len(),
        ),
    ] {
        gauge(out, name, help, v);
    }
    let counters: [(&str, &str, u64); 8] = [
        (
            "registry_grpc_connections_refused_total",
            "gRPC connection setups refused at the connection limit ([grpc] max_connections)",
            s.connections.refused_setups(),
        ),
        (
            "registry_grpc_requests_rate_limited_total",
            "gRPC requests refused by the per-connection rate limit ([grpc] max_requests_per_second)",
            s.connections.rate_limited(),
        ),
        (
            "registry_namespace_requests_rate_limited_total",
            "Client-API requests refused by their namespace's rate ([limits] namespace_requests_per_second)",
            s.namespace_rates.refused(),
        ),
        (
            "registry_beat_expirations_total",
            "v1 instances this node removed because their beats stopped",
            c.beat_expirations,
        ),
        (
            "registry_config_changes_notified_total",
            "Config changes the notifier handled (long-polls woken, gRPC listeners notified)",
            s.config_notify.changes_handled(),
        ),
        (
            "registry_config_notifications_total",
            "Config change notifications sent to gRPC listeners (first attempts)",
            s.config_notify.notifications(),
        ),
        (
            "registry_push_control_dropped_total",
            "New-subscription notes and push acks dropped because the push engine's queue was full",
            s.push.control_dropped(),
        ),
        (
            "registry_config_notify_control_dropped_total",
            "Config notification acks dropped because the notifier's queue was full (the notification is resent)",
            s.config_notify.control_dropped(),
        ),
    ];
    for (name, help, v) in counters {
        counter(out, name, help, v);
    }
}

fn cluster(s: &ApiState, out: &mut String) {
    let status = s.admin.raft_status();
    let is_leader = status.leader == Some(status.node_id);
    for (name, help, v) in [
        ("registry_raft_term", "Current Raft term", status.term),
        ("registry_raft_last_log_index", "Index of the last entry in this member's Raft log", status.last_log),
        (
            "registry_raft_commit_index",
            "Highest index known committed (leader: matched by a quorum; others: applied)",
            status.commit_index,
        ),
        ("registry_raft_applied_index", "Index of the last entry applied to this member's state", status.last_applied),
        ("registry_raft_leader_id", "Node id of the leader this member knows (0: none)", status.leader.unwrap_or(0)),
        ("registry_raft_is_leader", "1 when this member is the Raft leader", u64::from(is_leader)),
        ("registry_raft_members", "Members of the Raft membership (voters and learners)", status.members.len() as u64),
    ] {
        gauge(out, name, help, v);
    }
    let cluster = s.admin.counters();
    let w = cluster.writes;
    for (name, help, v) in [
        ("registry_raft_proposals_total", "Raft entries proposed by the write batcher", w.proposals),
        ("registry_raft_proposed_commands_total", "Commands carried by those entries", w.proposed_commands),
        ("registry_raft_log_flushes_total", "Durable commits (fsyncs) of the Raft log", w.log_flushes),
        ("registry_raft_log_flushed_entries_total", "Raft log entries carried by those commits", w.log_entries),
        (
            "registry_raft_refused_answers_total",
            "Raft answers not counted: a voter answered from a store other than the one its membership binds (lost data directory)",
            cluster.identity.refused_answers,
        ),
        (
            "registry_cluster_refused_requests_total",
            "Member-to-member requests refused because they carried another cluster's id",
            cluster.identity.refused_requests,
        ),
        (
            "registry_raft_writes_refused_no_quorum_total",
            "Persistent writes answered with an error because no quorum acknowledged the leader (refused, lost quorum in flight, or timed out)",
            cluster.quorum_failures,
        ),
        (
            "registry_raft_snapshot_installs_total",
            "Snapshots received from a leader and installed (a member too far behind for the log)",
            cluster.snapshot_installs,
        ),
        (
            "registry_distro_sync_failures_total",
            "Distro batches to a peer that failed (kept and resent with back-off)",
            cluster.distro_sync_failures,
        ),
    ] {
        counter(out, name, help, v);
    }
    let d = s.admin.distro_summary();
    gauge(
        out,
        "registry_distro_disagreement_seconds",
        "How long some member's ephemeral view has differed from this one's (0: all agree)",
        cluster.distro_disagreement_seconds,
    );
    gauge(
        out,
        "registry_distro_agreement",
        "1 when every peer confirmed this member's Distro digest in the last verify round",
        u8::from(cluster.distro_disagreement_seconds == 0.0),
    );
    gauge(out, "registry_distro_owned_clients", "Ephemeral clients this member owns", d.owned);
    gauge(out, "registry_distro_copied_clients", "Copies of other members' ephemeral clients held here", d.copies);
    gauge(
        out,
        "registry_distro_snapshot_loaded",
        "1 once this member applied a peer's Distro snapshot at start (0: standalone, or no peer answered and it started from local data)",
        u8::from(cluster.distro_snapshot_loaded),
    );
    let (grpc, v1) = (cluster.distro_copies_expired_grpc, cluster.distro_copies_expired_v1);
    let _ = writeln!(
        out,
        "# HELP registry_distro_copies_expired_total Copies of other members' clients removed because their owner stopped confirming them (gRPC: after distro.expire_after_ms; v1: after the delete timeout)\n# TYPE registry_distro_copies_expired_total counter\nregistry_distro_copies_expired_total{{client=\"grpc\"}} {grpc}\nregistry_distro_copies_expired_total{{client=\"v1\"}} {v1}"
    );
}

/// TLS, when on: handshakes per listener, the certificate's and the CA file's reloads, the
/// certificate's expiry.
fn tls(s: &ApiState, out: &mut String) {
    let Some((reloads, not_after)) = s.tls.certificate() else { return };
    let outcome: [fn(&Outcomes) -> u64; 2] = [Outcomes::ok, Outcomes::failed];
    for ((name, help), pick) in [
        ("registry_tls_handshakes_total", "TLS handshakes completed, per listener"),
        (
            "registry_tls_handshake_failures_total",
            "TLS handshakes refused or timed out (not TLS, bad client certificate, no common protocol), per listener",
        ),
    ]
    .into_iter()
    .zip(outcome)
    {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (listener, handshakes) in s.tls.handshakes() {
            let _ = writeln!(out, "{name}{{listener=\"{listener}\"}} {}", pick(handshakes));
        }
    }
    // One family per outcome, a series per kind of file: the certificate/key pair, the CA.
    let files = [("identity", Some(reloads)), ("ca", s.tls.ca())];
    for ((name, help), pick) in [
        (
            "registry_tls_certificate_reloads_total",
            "Changed TLS files read and put in force: the certificate/key pair (kind=identity), the CA file (kind=ca)",
        ),
        (
            "registry_tls_certificate_reload_failures_total",
            "Changes to the TLS files that could not be used (the previous ones stay in force), per kind",
        ),
    ]
    .into_iter()
    .zip(outcome)
    {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (kind, outcomes) in files {
            if let Some(outcomes) = outcomes {
                let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", pick(outcomes));
            }
        }
    }
    if let Some(at) = not_after {
        gauge(
            out,
            "registry_tls_certificate_expiry_seconds",
            "End of the validity of the certificate served, seconds since the epoch",
            at,
        );
    }
}

/// The bound of each queue between tasks, under its configuration key.
fn queues(s: &ApiState, out: &mut String) {
    let name = "registry_queue_capacity";
    let _ = writeln!(
        out,
        "# HELP {name} Bound of a queue between tasks, labelled with its configuration key (docs/configuration.md, \"Queues and their bounds\")\n# TYPE {name} gauge"
    );
    for (queue, capacity) in s.queues.iter() {
        let _ = writeln!(out, "{name}{{queue=\"{queue}\"}} {capacity}");
    }
}

/// Each configured limit, under its configuration key (0: none).
fn limits(s: &ApiState, out: &mut String) {
    let name = "registry_limit";
    let _ = writeln!(
        out,
        "# HELP {name} A configured request, size or connection limit, labelled with its configuration key (0: no limit)\n# TYPE {name} gauge"
    );
    for (limit, value) in &s.limits {
        let _ = writeln!(out, "{name}{{limit=\"{limit}\"}} {value}");
    }
}

/// Process figures from `/proc` (absent where it cannot be read), in the standard
/// `process_*` names Prometheus client libraries use.
fn process(out: &mut String) {
    let p = load::process();
    if let Some(cpu) = p.cpu_seconds {
        counter(out, "process_cpu_seconds_total", "User and system CPU time spent, seconds", cpu);
    }
    if let Some(rss) = p.resident_bytes {
        gauge(out, "process_resident_memory_bytes", "Resident memory size, bytes", rss);
    }
    if let Some(vsz) = p.virtual_bytes {
        gauge(out, "process_virtual_memory_bytes", "Virtual memory size, bytes", vsz);
    }
    if let Some(fds) = p.open_fds {
        gauge(out, "process_open_fds", "Open file descriptors", fds);
    }
    if let Some(start) = p.start_time_seconds {
        gauge(out, "process_start_time_seconds", "Start time of the process since the epoch, seconds", start);
    }
    if let Some(threads) = p.threads {
        gauge(out, "process_threads", "Threads of the process", threads);
    }
}
