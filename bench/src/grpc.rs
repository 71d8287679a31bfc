//! The bench's side of the shared client (`registry_proto::client`): how it connects, and the
//! one instance shape it registers. Framing and the connection itself are the shared crate's,
//! so the bench measures the same client code the sidecar runs.

use std::net::SocketAddr;

use registry_proto::client::{Connection, Setup};
use registry_proto::model::ServiceKey;
use registry_proto::nacos::Payload;
use registry_proto::wire::frame::decode;
use registry_proto::wire::naming::WireInstance;
use serde_json::Value;

pub use registry_proto::wire::frame::{payload, raw_payload};

/// A connected, set-up SDK connection (module `naming`).
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Connection> {
    Ok(Connection::connect(addr, &Setup::new("nacos-bench", "naming")).await?)
}

/// The type and JSON of a payload (empty type and `Null` when it has none).
pub fn open(p: &Payload) -> (String, Value) {
    decode(p).unwrap_or_default()
}

/// Registers (or replaces) the connection's instance `127.0.0.1:port` in `service`.
pub async fn register(conn: &Connection, service: &str, port: u64) -> anyhow::Result<()> {
    let instance = WireInstance { ip: Some("127.0.0.1".into()), port: i64::try_from(port)?, ..WireInstance::default() };
    Ok(conn.unary().register(&key(service)?, &instance).await?)
}

/// Subscribes the connection to `service`.
pub async fn subscribe(conn: &Connection, service: &str) -> anyhow::Result<()> {
    conn.unary().subscribe(&key(service)?, "", true).await?;
    Ok(())
}

fn key(service: &str) -> anyhow::Result<ServiceKey> {
    Ok(ServiceKey::new("public", "DEFAULT_GROUP", service)?)
}
