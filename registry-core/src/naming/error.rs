//! Why a naming operation failed. The HTTP API maps each variant to a status and v2 code in
//! `api/http/error.rs`; the gRPC handlers answer with the message.

use crate::consistency::{ApplyError, SubmitError};
use crate::model::NameError;
use crate::model::instance::InstanceError;

/// Why a naming operation failed. The API layer maps each variant to a status and code.
#[derive(Debug, thiserror::Error)]
pub enum NamingError {
    /// A name broke its rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The instance is invalid.
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// A parameter value is invalid.
    #[error("{0}")]
    InvalidParam(String),
    /// The service does not exist.
    #[error("service not found, namespace: {namespace}, serviceName: {service}")]
    ServiceNotFound {
        /// Namespace.
        namespace: String,
        /// Grouped service name.
        service: String,
    },
    /// The service already exists.
    #[error("specified service {0} already exists!")]
    ServiceAlreadyExists(String),
    /// The service still has instances.
    #[error("Service {0} is not empty, can't be delete. Please unregister instance first")]
    ServiceNotEmpty(String),
    /// No instance matches.
    #[error("no matched ip found!")]
    InstanceNotFound,
    /// An ephemeral instance into a persistent service, or the reverse.
    #[error("Current service {service} is {kind} service, can't register {other} instance.")]
    KindConflict {
        /// Grouped service name.
        service: String,
        /// The service's kind.
        kind: &'static str,
        /// The instance's kind.
        other: &'static str,
    },
    /// Manual health change while an active health check owns the instance.
    #[error("health check is still working, service: {0}")]
    HealthCheckRunning(String),
    /// The index holds its budget of instances ([naming] max_instances).
    #[error(
        "the registry holds its limit of {max} instances ([naming] max_instances); deregister some or raise the limit"
    )]
    OverBudget {
        /// The limit.
        max: usize,
    },
    /// The write could not be made durable (Raft unavailable).
    #[error("{0}")]
    Unavailable(String),
}

impl From<SubmitError> for NamingError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(ApplyError::ServiceAlreadyExists(s)) => Self::ServiceAlreadyExists(s),
            SubmitError::Rejected(ApplyError::ServiceNotEmpty(s)) => Self::ServiceNotEmpty(s),
            // Config refusals never come from naming commands.
            SubmitError::Rejected(other) => Self::InvalidParam(other.to_string()),
            SubmitError::Raft(e) => Self::Unavailable(e.to_string()),
        }
    }
}
