//! Contracts between the registry, the operator and (later) the sidecar: values one side writes
//! and the other reads. Each is defined once, here, so the writer and the reader cannot drift.
//!
//! This module needs no feature: the operator depends on this crate with default features off
//! and gets only these constants, without tonic or the generated protocol code.

/// Port layout of a member when only its HTTP port is given: Nacos SDKs dial the gRPC port as
/// HTTP + 1000, and `--members host:port` derives each member's cluster port as HTTP + 1001.
/// Members may also be given explicit, unrelated ports; then nothing derives them.
pub mod ports {
    /// Default HTTP port (Open API v1/v2), Nacos' 8848.
    pub const DEFAULT_HTTP: u16 = 8848;
    /// gRPC (SDK channel) port = HTTP port + this (Nacos' rule, which SDKs apply).
    pub const GRPC_OFFSET: u16 = 1000;
    /// Cluster (member-to-member) port = HTTP port + this.
    pub const CLUSTER_OFFSET: u16 = 1001;
    /// Largest HTTP port whose derived ports both exist.
    pub const MAX_HTTP: u16 = u16::MAX - CLUSTER_OFFSET;

    /// The gRPC port derived from an HTTP port; 0 (ephemeral) stays 0, `None` past 65535.
    pub const fn grpc(http: u16) -> Option<u16> {
        derived(http, GRPC_OFFSET)
    }

    /// The cluster port derived from an HTTP port; 0 (ephemeral) stays 0, `None` past 65535.
    pub const fn cluster(http: u16) -> Option<u16> {
        derived(http, CLUSTER_OFFSET)
    }

    const fn derived(http: u16, offset: u16) -> Option<u16> {
        if http == 0 { Some(0) } else { http.checked_add(offset) }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn derived_ports_follow_nacos_and_keep_ephemeral_ports_ephemeral() {
            assert_eq!((grpc(DEFAULT_HTTP), cluster(DEFAULT_HTTP)), (Some(9848), Some(9849)));
            assert_eq!((grpc(0), cluster(0)), (Some(0), Some(0)));
            assert_eq!(cluster(MAX_HTTP), Some(u16::MAX));
            assert_eq!(cluster(MAX_HTTP + 1), None);
        }
    }
}

/// Our extensions of the config HTTP API.
pub mod config {
    /// Request header carrying the reader's labels (a JSON object or `k=v,k2=v2`), matched
    /// against label gray rules as gRPC connection labels are; the sidecar sets it to the pod's
    /// labels on config requests it passes on.
    pub const LABELS_HEADER: &str = "Config-Labels";
}

/// What the operator's webhook gives the injected sidecar and what the sidecar must serve: the
/// environment it writes into the `nacos-sidecar` container and the admin endpoint its preStop
/// hook calls. The probe variables' values follow [`crate::probe::spec`].
pub mod sidecar {
    /// Port of the sidecar's admin endpoint (health, [`DRAIN_PATH`]) inside the pod. The sidecar
    /// shares the pod's network namespace with the application, so this is a high port that
    /// applications rarely use.
    pub const ADMIN_PORT: u16 = 15090;

    /// Path the preStop hook calls on [`ADMIN_PORT`]: the sidecar deregisters the instance and
    /// answers once the registry accepted that, so clients stop choosing the pod before its
    /// containers get SIGTERM.
    pub const DRAIN_PATH: &str = "/drain";

    /// Instance metadata key the sidecar sets (any non-empty value) on the instances whose
    /// health it reports itself: the registry's own health checks skip them, so the sidecar's
    /// probe is the one source of their health.
    pub const HEALTH_REPORTED_METADATA: &str = "nacos.rs/health-reported-by";

    /// Key of the MySQL user in the Secret a pod names for its `mysql` probe.
    pub const MYSQL_SECRET_USER_KEY: &str = "username";
    /// Key of the MySQL password in that Secret.
    pub const MYSQL_SECRET_PASSWORD_KEY: &str = "password";

    /// Environment variable names, in the order the webhook writes them.
    pub mod env {
        /// `host:port` of the registry's HTTP port (the cluster's client Service).
        pub const SERVER_ADDR: &str = "NACOS_SERVER_ADDR";
        /// Service name the instance registers under.
        pub const SERVICE: &str = "NACOS_SIDECAR_SERVICE";
        /// Instance port (a number; the webhook resolves named ports).
        pub const PORT: &str = "NACOS_SIDECAR_PORT";
        /// Nacos group; absent means the sidecar's default.
        pub const GROUP: &str = "NACOS_SIDECAR_GROUP";
        /// Nacos namespace (tenant), not the Kubernetes namespace; absent means public.
        pub const NAMESPACE: &str = "NACOS_SIDECAR_NAMESPACE";
        /// Probe kind: `tcp`, `http`, `mysql` or `none`.
        pub const PROBE: &str = "NACOS_SIDECAR_PROBE";
        /// Port probed (for `tcp` and `http`).
        pub const PROBE_PORT: &str = "NACOS_SIDECAR_PROBE_PORT";
        /// Path requested (for `http`), starting with `/`.
        pub const PROBE_PATH: &str = "NACOS_SIDECAR_PROBE_PATH";
        /// MySQL user of the `mysql` probe; the webhook sets it from the Secret's
        /// [`super::MYSQL_SECRET_USER_KEY`] (`valueFrom.secretKeyRef`), never as a value.
        pub const MYSQL_USER: &str = "NACOS_SIDECAR_MYSQL_USER";
        /// Its password, from the Secret's [`super::MYSQL_SECRET_PASSWORD_KEY`].
        pub const MYSQL_PASSWORD: &str = "NACOS_SIDECAR_MYSQL_PASSWORD";
        /// The admin port the sidecar listens on ([`super::ADMIN_PORT`]).
        pub const ADMIN_PORT: &str = "NACOS_SIDECAR_ADMIN_PORT";
        /// Pod labels file in the downward-API format (`key="value"` lines), read once at
        /// start; they become the upstream connection's labels (and the `Config-Labels` of HTTP
        /// config requests), so label-based gray configs reach this pod.
        pub const LABELS_FILE: &str = "NACOS_SIDECAR_LABELS_FILE";
        /// Pod name (downward API `metadata.name`).
        pub const POD_NAME: &str = "POD_NAME";
        /// Kubernetes namespace of the pod (downward API `metadata.namespace`).
        pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
        /// Pod IP, the address registered (downward API `status.podIP`).
        pub const POD_IP: &str = "POD_IP";
        /// Node the pod runs on (downward API `spec.nodeName`).
        pub const NODE_NAME: &str = "NODE_NAME";

        // Read by the sidecar, not written by the webhook (a pod spec may set them).

        /// Local HTTP port of the Nacos API on 127.0.0.1 (gRPC = this + 1000); default 8848.
        pub const HTTP_PORT: &str = "NACOS_SIDECAR_HTTP_PORT";
        /// Directory of the failover cache (instances and configs survive a sidecar restart).
        pub const CACHE_DIR: &str = "NACOS_SIDECAR_CACHE_DIR";
        /// Seconds between disabling the instance and deregistering it on drain; default 5.
        pub const DRAIN_SECONDS: &str = "NACOS_SIDECAR_DRAIN_SECONDS";
        /// Nacos cluster of the declared instance; default `DEFAULT`.
        pub const CLUSTER: &str = "NACOS_SIDECAR_CLUSTER";
        /// Weight of the declared instance; default 1.
        pub const WEIGHT: &str = "NACOS_SIDECAR_WEIGHT";
        /// `false` registers the declared instance as persistent (health from the sidecar's
        /// probe); default `true` (ephemeral, bound to the sidecar's connection).
        pub const EPHEMERAL: &str = "NACOS_SIDECAR_EPHEMERAL";
        /// Extra instance metadata as a JSON object or `k1=v1,k2=v2`.
        pub const METADATA: &str = "NACOS_SIDECAR_METADATA";
        /// UDP and TCP port of the sidecar's DNS resolver on 127.0.0.1 (the zone of
        /// [`crate::contract::dns::env::ZONE`] from the cache, other names forwarded); unset: off.
        pub const DNS_PORT: &str = "NACOS_SIDECAR_DNS_PORT";
    }
}

/// Authentication as Nacos clients and the operator see it (spec §8): the environment the
/// operator injects into members from the `NacosCluster`'s auth Secret, and the credential names
/// clients send.
pub mod auth {
    /// Request header (gRPC `Payload.metadata.headers`) and HTTP parameter carrying a token.
    pub const ACCESS_TOKEN: &str = "accessToken";
    /// HTTP parameter / header naming a user that authenticates with [`PASSWORD`] directly.
    pub const USERNAME: &str = "username";
    /// HTTP parameter / header with the password of [`USERNAME`].
    pub const PASSWORD: &str = "password";
    /// The Nacos name of the built-in administrator, created on the first bootstrap.
    pub const ADMIN_USER: &str = "nacos";

    /// Environment variable names.
    pub mod env {
        /// `true` enforces auth on the client APIs (Nacos' `nacos.core.auth.enabled`).
        pub const ENABLE: &str = "NACOS_AUTH_ENABLE";
        /// Token signing secret, base64, at least 32 bytes decoded
        /// (`nacos.core.auth.plugin.nacos.token.secret.key`).
        pub const TOKEN: &str = "NACOS_AUTH_TOKEN";
        /// Header name that marks a member-to-member call (`nacos.core.auth.server.identity.key`).
        pub const IDENTITY_KEY: &str = "NACOS_AUTH_IDENTITY_KEY";
        /// Value that header must carry (`nacos.core.auth.server.identity.value`).
        pub const IDENTITY_VALUE: &str = "NACOS_AUTH_IDENTITY_VALUE";
        /// Password of the administrator `nacos` on the first bootstrap (else one is generated
        /// into `<data_dir>/admin-password`, never logged).
        pub const ADMIN_PASSWORD: &str = "NACOS_AUTH_ADMIN_PASSWORD";
    }
}

/// TLS (docs/tls.md): what the registry reads for its own listeners and member channels, and
/// what the sidecar reads for its upstream connection. Values are PEM file paths.
pub mod tls {
    /// ALPN of gRPC (SDK and cluster ports).
    pub const ALPN_H2: &[u8] = b"h2";
    /// ALPN of the HTTP port (HTTP/1.1 only).
    pub const ALPN_HTTP1: &[u8] = b"http/1.1";
    /// ALPN of the DNS-over-TLS port (RFC 7858; the IANA registry's `dot`). Clients that offer
    /// no ALPN are served too.
    pub const ALPN_DOT: &[u8] = b"dot";

    /// The registry's environment variable names.
    pub mod env {
        /// Certificate chain this member presents (HTTP, gRPC and cluster ports; to members).
        pub const CERT: &str = "NACOS_TLS_CERT";
        /// Its private key.
        pub const KEY: &str = "NACOS_TLS_KEY";
        /// CA bundle members' certificates must chain to (mutual TLS on the cluster port).
        pub const CA: &str = "NACOS_TLS_CA";
        /// `false` keeps the HTTP and gRPC SDK ports plain while the cluster port uses TLS.
        pub const CLIENT_FACING: &str = "NACOS_TLS_CLIENT_FACING";
        /// `false` keeps the cluster port plain while the client-facing ports use TLS.
        pub const CLUSTER: &str = "NACOS_TLS_CLUSTER";
    }

    /// The sidecar's environment variable names (its upstream connection).
    pub mod sidecar_env {
        /// CA bundle the registry's certificate must chain to; set: TLS upstream.
        pub const CA: &str = "NACOS_SIDECAR_TLS_CA";
        /// Client certificate to present upstream (optional; with [`KEY`]).
        pub const CERT: &str = "NACOS_SIDECAR_TLS_CERT";
        /// Its private key.
        pub const KEY: &str = "NACOS_SIDECAR_TLS_KEY";
        /// Name the registry's certificate must carry; default: the host of the first
        /// `NACOS_SERVER_ADDR` entry.
        pub const SERVER_NAME: &str = "NACOS_SIDECAR_TLS_SERVER_NAME";
    }
}

/// The registry's DNS server (docs/dns.md): what the operator sets on the registry container
/// when the `NacosCluster` asks for DNS, and what the registry reads.
pub mod dns {
    /// Zone served when none is configured.
    pub const DEFAULT_ZONE: &str = "nacos.local";

    /// Environment variable names.
    pub mod env {
        /// UDP and TCP port of the DNS server; unset: no DNS server.
        pub const PORT: &str = "NACOS_DNS_PORT";
        /// DNS-over-TLS port (RFC 7858, conventionally 853), beside the plain one; needs
        /// client-facing TLS. Unset: no DNS over TLS.
        pub const TLS_PORT: &str = "NACOS_DNS_TLS_PORT";
        /// Zone served (default [`super::DEFAULT_ZONE`]).
        pub const ZONE: &str = "NACOS_DNS_ZONE";
    }
}
