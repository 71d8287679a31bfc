//! The `[tls]` section and what it makes: TLS on the client-facing ports (HTTP, gRPC SDK,
//! DNS over TLS), mutual TLS on the cluster port and on the channels to other members
//! (docs/tls.md). The files are followed: a renewed certificate, key or CA is used from the
//! next handshake on. [`TlsMetrics`] is what `/metrics` shows of it.

use std::path::PathBuf;
use std::sync::Arc;

use registry_proto::contract::tls::{ALPN_DOT, ALPN_H2, ALPN_HTTP1};
use registry_proto::tls::{self as kit, Credentials, Identity, Outcomes, TlsError, TrustAnchors};
use rustls::{ClientConfig, ServerConfig};
use serde::Deserialize;

/// The `[tls]` section. Without `cert` and `key` every port is plain.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM, leaf first) this member presents on its TLS ports and to members.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// CA bundle (PEM) the members' certificates chain to; required for the cluster port.
    pub ca: Option<PathBuf>,
    /// TLS on the HTTP and gRPC SDK ports (with `cert`/`key`).
    pub client_facing: bool,
    /// Mutual TLS on the cluster port and on the channels to members (with `cert`/`key`/`ca`).
    pub cluster: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { cert: None, key: None, ca: None, client_facing: true, cluster: true }
    }
}

impl TlsConfig {
    /// This member's certificate and key, when both are set.
    fn identity(&self) -> Option<Identity> {
        Some(Identity::new(self.cert.as_ref()?, self.key.as_ref()?))
    }

    /// Whether the client-facing ports use TLS.
    pub fn client_facing_on(&self) -> bool {
        self.client_facing && self.identity().is_some()
    }

    /// Refuses half-configured TLS: a certificate without key, a cluster without CA.
    pub fn check(&self) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => return Err("tls.cert and tls.key go together".into()),
            (None, None) => return Ok(()),
            (Some(_), Some(_)) => {}
        }
        if self.cluster && self.ca.is_none() {
            return Err("tls.cluster (mutual TLS between members) needs tls.ca; or set tls.cluster = false".into());
        }
        Ok(())
    }
}

/// The TLS configs this member runs with, built once at start (the files are then followed).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// HTTP port (ALPN `http/1.1`); `None`: plain.
    pub http: Option<Arc<ServerConfig>>,
    /// gRPC SDK port (ALPN `h2`); `None`: plain.
    pub grpc: Option<Arc<ServerConfig>>,
    /// DNS-over-TLS port (ALPN `dot`), with client-facing TLS.
    pub dns: Option<Arc<ServerConfig>>,
    /// Cluster port, client certificates required; `None`: plain.
    pub cluster_server: Option<Arc<ServerConfig>>,
    /// Channels to members, presenting this member's certificate; `None`: plain.
    pub cluster_client: Option<kit::Connector>,
    /// This member's certificate and key, shared by every config above (`None`: no TLS).
    pub credentials: Option<Credentials>,
    /// The CA file, shared by every config of this process that trusts it (`None`: no TLS or
    /// no `tls.ca`).
    pub anchors: Option<TrustAnchors>,
}

impl Tls {
    /// Reads the files named by `config` (errors name the file).
    pub fn load(config: &TlsConfig) -> Result<Self, TlsError> {
        let Some(identity) = config.identity() else { return Ok(Self::default()) };
        let identity = Credentials::load(&identity)?;
        // One reader of the CA file for every config below and [`PeerHttp`].
        let mut tls = Self { anchors: config.ca.as_deref().map(TrustAnchors::load).transpose()?, ..Self::default() };
        if config.client_facing {
            tls.http = Some(kit::server_config(&identity, None, &[ALPN_HTTP1])?);
            tls.grpc = Some(kit::server_config(&identity, None, &[ALPN_H2])?);
            tls.dns = Some(kit::server_config(&identity, None, &[ALPN_DOT])?);
        }
        if config.cluster
            && let Some(ca) = &tls.anchors
        {
            tls.cluster_server = Some(kit::server_config(&identity, Some(ca), &[ALPN_H2])?);
            let client: Arc<ClientConfig> = kit::client_config(ca, Some(&identity), &[ALPN_H2])?;
            tls.cluster_client = Some(kit::Connector::new(client));
        }
        tls.credentials = Some(identity);
        Ok(tls)
    }
}

/// Longest wait for another member's HTTP port (Nacos: 2 s connect, 2 s read).
const PEER_HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How this member calls other members' HTTP ports (v1 forwarding, the console's cluster
/// view): HTTPS when the client-facing ports use TLS, verifying members against `tls.ca`.
#[derive(Debug, Clone)]
pub struct PeerHttp {
    scheme: &'static str,
    client: Option<reqwest::Client>,
}

impl PeerHttp {
    /// From the `[tls]` section: plain HTTP without client-facing TLS; HTTPS trusting the
    /// cluster CA (and presenting this member's certificate) with it. Client-facing TLS without
    /// a CA leaves no way to verify members: no client (forwarding then stays local).
    /// `tls`: this member's certificate and CA, from [`Tls::load`].
    pub fn new(config: &TlsConfig, tls: &Tls) -> Result<Self, TlsError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(PEER_HTTP_TIMEOUT)
            .timeout(PEER_HTTP_TIMEOUT * 2)
            .tcp_nodelay(true);
        let (scheme, builder) = match (tls.credentials.as_ref().filter(|_| config.client_facing), &tls.anchors) {
            (None, _) => ("http", Some(builder)),
            (Some(identity), Some(ca)) => {
                let tls = kit::client_config(ca, Some(identity), &[ALPN_HTTP1])?;
                ("https", Some(builder.use_preconfigured_tls(ClientConfig::clone(&tls))))
            }
            (Some(_), None) => ("https", None),
        };
        let client = builder.and_then(|b| {
            b.build().map_err(|e| tracing::warn!(error = %e, "no HTTP client for calls to members")).ok()
        });
        Ok(Self { scheme, client })
    }

    /// The client, when members can be called.
    pub fn client(&self) -> Option<&reqwest::Client> {
        self.client.as_ref()
    }

    /// The URL of `path` on the member whose HTTP address is `addr` (`host:port`).
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }
}

/// What `/metrics` shows of TLS: handshakes per TLS listener, the reloads of the serving
/// certificate and of the CA file, and the end of the certificate's validity. Empty without TLS.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    credentials: Option<Credentials>,
    anchors: Option<TrustAnchors>,
    listeners: Vec<(&'static str, Arc<Outcomes>)>,
}

impl TlsMetrics {
    /// For `tls`'s certificate and CA; listeners are added with [`Self::listener`].
    pub fn new(tls: &Tls) -> Self {
        Self { credentials: tls.credentials.clone(), anchors: tls.anchors.clone(), listeners: Vec::new() }
    }

    /// Counts `handshakes` under `name` (`http`, `grpc`, `cluster`, `dns`).
    pub fn listener(&mut self, name: &'static str, handshakes: Arc<Outcomes>) {
        self.listeners.push((name, handshakes));
    }

    /// Per TLS listener: its name and handshakes.
    pub fn handshakes(&self) -> impl Iterator<Item = (&'static str, &Outcomes)> + '_ {
        self.listeners.iter().map(|(name, h)| (*name, &**h))
    }

    /// The certificate's reloads and the end of its validity (Unix seconds, when readable);
    /// `None` without TLS.
    pub fn certificate(&self) -> Option<(&Outcomes, Option<i64>)> {
        let c = self.credentials.as_ref()?;
        Some((c.reloads(), c.not_after()))
    }

    /// The CA file's reloads; `None` without TLS or without `tls.ca`.
    pub fn ca(&self) -> Option<&Outcomes> {
        self.anchors.as_ref().map(TrustAnchors::reloads)
    }
}
