//! One Nacos SDK connection: a single HTTP/2 connection carrying the unary channel and the
//! bi-stream, set up as the SDKs do (`ConnectionSetupRequest` first on the stream; unary calls
//! once the server has registered the connection).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

use super::ClientError;
use crate::model::ServiceKey;
use crate::nacos::Payload;
use crate::nacos::bi_request_stream_client::BiRequestStreamClient;
use crate::nacos::request_client::RequestClient;
use crate::wire::ServiceInfo;
use crate::wire::codes::ERR_UNREGISTERED;
use crate::wire::config::{BatchListenRequest, ConfigRequest, ListenContext};
use crate::wire::frame::{decode, payload, raw_payload};
use crate::wire::naming::{BatchInstanceRequest, InstanceRequest, NamingBase, SubscribeServiceRequest, WireInstance};

/// How often, at most, a new connection asks whether the server has registered it yet.
const REGISTER_ATTEMPTS: u32 = 100;
/// Pause between those asks: the server registers a setup within a few milliseconds.
const REGISTER_PAUSE: Duration = Duration::from_millis(10);
/// Room for messages to the server on the stream (acks, mostly).
const STREAM_QUEUE: usize = 1024;

/// What a connection announces in its `ConnectionSetupRequest`.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `clientVersion`, e.g. `Nacos-Rust-Sidecar:v0.1.0`.
    pub client_version: String,
    /// Namespace the client works in.
    pub tenant: String,
    /// Labels; `module` (`naming`, `config`) decides which pushes a server sends.
    pub labels: HashMap<String, String>,
    /// Bound on the TCP + HTTP/2 connect.
    pub connect_timeout: Duration,
    /// Bound on every unary call (the Java SDK's 3 s): a server that stops answering must not
    /// hang its caller until the connection's keepalive gives up.
    pub request_timeout: Duration,
    /// Metadata headers sent on every request: credentials (`accessToken`, or a cluster's
    /// member identity header) when the server wants them.
    pub headers: BTreeMap<String, String>,
    /// TLS to the server (`None`: plain): see [`crate::tls::client_config`] (offer `h2`).
    pub tls: Option<crate::tls::Connector>,
}

impl Setup {
    /// A setup for `client_version` in the public namespace, for `module`.
    pub fn new(client_version: &str, module: &str) -> Self {
        let labels = HashMap::from([("source".to_owned(), "sdk".to_owned()), ("module".to_owned(), module.to_owned())]);
        Self {
            client_version: client_version.to_owned(),
            tenant: String::new(),
            labels,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(3),
            headers: BTreeMap::new(),
            tls: None,
        }
    }
}

/// The unary half of a connection: cheap to clone, usable from many tasks at once.
#[derive(Debug, Clone)]
pub struct Unary {
    client: RequestClient<Channel>,
    timeout: Duration,
    headers: BTreeMap<String, String>,
}

impl Unary {
    /// One request; the response's type and JSON body, whatever they are.
    pub async fn call(&self, kind: &str, body: &Value) -> Result<(String, Value), ClientError> {
        self.call_encoded(kind, serde_json::to_vec(body)?).await
    }

    /// One request whose body is already JSON-encoded.
    async fn call_encoded(&self, kind: &str, body: Vec<u8>) -> Result<(String, Value), ClientError> {
        let mut request = raw_payload(kind, body);
        if let Some(meta) = request.metadata.as_mut() {
            meta.headers.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut client = self.client.clone();
        let call = client.request(request);
        let response = tokio::time::timeout(self.timeout, call).await.map_err(|_| ClientError::Timeout)??.into_inner();
        decode(&response).ok_or(ClientError::Untyped)
    }

    /// One request that must be answered by a successful `expected` response; its body.
    pub async fn request(&self, kind: &str, body: &Value, expected: &str) -> Result<Value, ClientError> {
        self.request_encoded(kind, serde_json::to_vec(body)?, expected).await
    }

    /// [`Self::request`] with a typed body, encoded once, straight to bytes.
    async fn request_typed(
        &self,
        kind: &str,
        body: &impl serde::Serialize,
        expected: &str,
    ) -> Result<Value, ClientError> {
        self.request_encoded(kind, serde_json::to_vec(body)?, expected).await
    }

    async fn request_encoded(&self, kind: &str, body: Vec<u8>, expected: &str) -> Result<Value, ClientError> {
        let (answer, body) = self.call_encoded(kind, body).await?;
        let code = |field: &str| body.get(field).and_then(Value::as_i64).unwrap_or(0);
        if answer == "ErrorResponse" || code("resultCode") != 200 {
            let message = body.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
            return Err(ClientError::Rejected { code: code("errorCode"), message });
        }
        if answer != expected {
            return Err(ClientError::Unexpected { expected: expected.to_owned(), got: answer });
        }
        Ok(body)
    }

    /// Registers `instance` in `service` for this connection, replacing what it had there.
    pub async fn register(&self, service: &ServiceKey, instance: &WireInstance) -> Result<(), ClientError> {
        self.instance("registerInstance", service, instance).await
    }

    /// Removes this connection's `instance` from `service`.
    pub async fn deregister(&self, service: &ServiceKey, instance: &WireInstance) -> Result<(), ClientError> {
        self.instance("deregisterInstance", service, instance).await
    }

    async fn instance(&self, kind: &str, service: &ServiceKey, instance: &WireInstance) -> Result<(), ClientError> {
        let body =
            InstanceRequest { base: base_of(service), kind: Some(kind.to_owned()), instance: Some(instance.clone()) };
        self.request_typed("InstanceRequest", &body, "InstanceResponse").await.map(drop)
    }

    /// Publishes exactly `instances` in `service` for this connection (an empty list withdraws).
    pub async fn batch_register(&self, service: &ServiceKey, instances: &[WireInstance]) -> Result<(), ClientError> {
        let body = BatchInstanceRequest {
            base: base_of(service),
            kind: Some("batchRegisterInstance".to_owned()),
            instances: instances.to_vec(),
        };
        self.request_typed("BatchInstanceRequest", &body, "BatchInstanceResponse").await.map(drop)
    }

    /// Subscribes (or with `subscribe` false, unsubscribes) to `service` restricted to
    /// `clusters` (comma-separated, empty = all); the service as it is now.
    pub async fn subscribe(
        &self,
        service: &ServiceKey,
        clusters: &str,
        subscribe: bool,
    ) -> Result<ServiceInfo, ClientError> {
        let body = SubscribeServiceRequest { base: base_of(service), subscribe, clusters: Some(clusters.to_owned()) };
        let answer = self.request_typed("SubscribeServiceRequest", &body, "SubscribeServiceResponse").await?;
        Ok(serde_json::from_value(answer.get("serviceInfo").cloned().unwrap_or_default())?)
    }

    /// A config's content and MD5; `None` when it does not exist.
    pub async fn query_config(
        &self,
        tenant: &str,
        group: &str,
        data_id: &str,
    ) -> Result<Option<(String, String)>, ClientError> {
        let body = ConfigRequest {
            data_id: Some(data_id.to_owned()),
            group: Some(group.to_owned()),
            tenant: Some(tenant.to_owned()),
            ..ConfigRequest::default()
        };
        match self.request_typed("ConfigQueryRequest", &body, "ConfigQueryResponse").await {
            Ok(answer) => {
                let field = |f: &str| answer.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
                Ok(Some((field("content"), field("md5"))))
            }
            Err(ClientError::Rejected { code, .. }) if code == i64::from(crate::wire::codes::CONFIG_NOT_FOUND) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Adds (or with `listen` false, removes) config listeners; the configs whose MD5 differs
    /// from the one given, as `(tenant, group, dataId)`.
    pub async fn listen_configs(
        &self,
        contexts: Vec<ListenContext>,
        listen: bool,
    ) -> Result<Vec<(String, String, String)>, ClientError> {
        let body = BatchListenRequest { listen, config_listen_contexts: contexts };
        let answer = self.request_typed("ConfigBatchListenRequest", &body, "ConfigChangeBatchListenResponse").await?;
        let changed = answer.get("changedConfigs").and_then(Value::as_array).cloned().unwrap_or_default();
        let field = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(changed.iter().map(|c| (field(c, "tenant"), field(c, "group"), field(c, "dataId"))).collect())
    }
}

fn base_of(service: &ServiceKey) -> NamingBase {
    NamingBase {
        namespace: Some(service.namespace.clone()),
        service_name: Some(service.service.clone()),
        group_name: Some(service.group.clone()),
    }
}

/// A connected, set-up connection. The stream halves are public: a caller that reads server
/// requests itself must answer them (acks) through `to_server`.
#[derive(Debug)]
pub struct Connection {
    unary: Unary,
    addr: SocketAddr,
    /// Messages to the server on the bi-stream (responses to its requests).
    pub to_server: mpsc::Sender<Payload>,
    /// Requests from the server on the bi-stream (pushes, detection, reset).
    pub from_server: Streaming<Payload>,
}

impl Connection {
    /// Connects to the gRPC port at `addr`, opens the bi-stream, sends the setup and waits
    /// until the server has registered the connection.
    pub async fn connect(addr: SocketAddr, setup: &Setup) -> Result<Self, ClientError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(setup.connect_timeout)
            // A peer that vanishes without a FIN (partition, frozen host) is noticed in ~8 s.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true);
        let channel = match &setup.tls {
            Some(tls) => endpoint.connect_with_connector(tls.clone()).await?,
            None => endpoint.connect().await?,
        };
        let (to_server, rx) = mpsc::channel(STREAM_QUEUE);
        let body = json!({
            "clientVersion": setup.client_version,
            "labels": setup.labels,
            "tenant": setup.tenant,
        });
        to_server.send(payload("ConnectionSetupRequest", &body)).await.map_err(|_| ClientError::Closed)?;
        let from_server =
            BiRequestStreamClient::new(channel.clone()).request_bi_stream(ReceiverStream::new(rx)).await?.into_inner();
        let unary = Unary {
            client: RequestClient::new(channel),
            timeout: setup.request_timeout,
            headers: setup.headers.clone(),
        };
        for _ in 0..REGISTER_ATTEMPTS {
            match unary.request("HealthCheckRequest", &json!({}), "HealthCheckResponse").await {
                Ok(_) => return Ok(Self { unary, addr, to_server, from_server }),
                Err(ClientError::Rejected { code, .. }) if code == i64::from(ERR_UNREGISTERED) => {
                    tokio::time::sleep(REGISTER_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::NotRegistered(addr))
    }

    /// The server's gRPC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The unary half.
    pub fn unary(&self) -> &Unary {
        &self.unary
    }
}
