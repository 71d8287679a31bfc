//! A minimal Nacos gRPC client: one TCP connection carrying the unary channel and the
//! bi-stream, as real SDKs do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use registry_proto::Any;
use registry_proto::nacos::bi_request_stream_client::BiRequestStreamClient;
use registry_proto::nacos::request_client::RequestClient;
use registry_proto::nacos::{Metadata, Payload};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// Frames a message.
pub fn payload(kind: &str, body: &Value) -> Payload {
    Payload {
        metadata: Some(Metadata { r#type: kind.to_owned(), headers: HashMap::new(), client_ip: "127.0.0.1".into() }),
        body: Some(Any { type_url: String::new(), value: serde_json::to_vec(body).unwrap_or_default() }),
    }
}

/// Frames an already encoded JSON body.
pub fn raw_payload(kind: &str, body: Vec<u8>) -> Payload {
    Payload {
        metadata: Some(Metadata { r#type: kind.to_owned(), headers: HashMap::new(), client_ip: "127.0.0.1".into() }),
        body: Some(Any { type_url: String::new(), value: body }),
    }
}

/// The type and JSON of a payload.
pub fn open(p: &Payload) -> (String, Value) {
    let kind = p.metadata.as_ref().map(|m| m.r#type.clone()).unwrap_or_default();
    let body = p.body.as_ref().and_then(|b| serde_json::from_slice(&b.value).ok()).unwrap_or(Value::Null);
    (kind, body)
}

/// A connected, set-up SDK connection.
pub struct Conn {
    unary: RequestClient<Channel>,
    /// Messages to the server on the stream.
    pub to_server: mpsc::Sender<Payload>,
    /// Messages from the server on the stream.
    pub from_server: Streaming<Payload>,
}

impl Conn {
    /// Connects, opens the stream and sends the setup (module `naming`).
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        let (to_server, rx) = mpsc::channel(1024);
        let setup = json!({
            "clientVersion": "nacos-bench",
            "labels": { "source": "sdk", "module": "naming" },
            "tenant": "",
        });
        to_server.send(payload("ConnectionSetupRequest", &setup)).await?;
        let from_server =
            BiRequestStreamClient::new(channel.clone()).request_bi_stream(ReceiverStream::new(rx)).await?.into_inner();
        let mut conn = Self { unary: RequestClient::new(channel), to_server, from_server };
        // The setup is registered asynchronously; wait until a health check passes.
        for _ in 0..100 {
            let (kind, _) = conn.call("HealthCheckRequest", &json!({})).await?;
            if kind == "HealthCheckResponse" {
                return Ok(conn);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("connection to {addr} never became registered")
    }

    /// Registers (or replaces) this connection's instance `127.0.0.1:port` in `service`.
    pub async fn register(&mut self, service: &str, port: u64) -> anyhow::Result<()> {
        let instance = json!({ "ip": "127.0.0.1", "port": port, "weight": 1.0, "healthy": true,
                               "enabled": true, "ephemeral": true, "clusterName": "DEFAULT", "metadata": {} });
        let request = json!({ "namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": service,
                              "type": "registerInstance", "instance": instance });
        let (kind, _) = self.call("InstanceRequest", &request).await?;
        anyhow::ensure!(kind == "InstanceResponse", "register answered {kind}");
        Ok(())
    }

    /// Subscribes this connection to `service`.
    pub async fn subscribe(&mut self, service: &str) -> anyhow::Result<()> {
        let request = json!({ "namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": service,
                              "subscribe": true, "clusters": "" });
        let (kind, _) = self.call("SubscribeServiceRequest", &request).await?;
        anyhow::ensure!(kind == "SubscribeServiceResponse", "subscribe answered {kind}");
        Ok(())
    }

    /// One unary request.
    pub async fn call(&mut self, kind: &str, body: &Value) -> anyhow::Result<(String, Value)> {
        let response = self.unary.request(payload(kind, body)).await?.into_inner();
        Ok(open(&response))
    }
}
