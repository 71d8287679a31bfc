//! What travels on the Nacos wire, defined once for both directions: request and response
//! bodies, error codes, the `ServiceInfo`/instance JSON, the v1 UDP push packet and (with the
//! `grpc` feature) the gRPC `Payload` framing.

pub mod codes;
pub mod config;
#[cfg(feature = "grpc")]
pub mod frame;
pub mod naming;
pub mod service_info;
pub mod udp;

pub use service_info::{DEFAULT_CACHE_MILLIS, InstanceInfo, NameForm, ServiceInfo};

/// The SDK requests a Nacos server answers besides `ServerCheckRequest` and
/// `HealthCheckRequest` (which the channel itself answers): others get `ErrorResponse` 302.
pub const REQUEST_TYPES: &[&str] = &[
    "InstanceRequest",
    "PersistentInstanceRequest",
    "BatchInstanceRequest",
    "ServiceQueryRequest",
    "SubscribeServiceRequest",
    "ServiceListRequest",
    "ConfigQueryRequest",
    "ConfigPublishRequest",
    "ConfigRemoveRequest",
    "ConfigBatchListenRequest",
];
