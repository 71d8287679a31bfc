//! The one place where failures become HTTP answers.
//!
//! v1 endpoints answer like Nacos' v1 controllers: the status is the Nacos error code (400,
//! 404, 500, 503) and the body is the plain-text message. v2 endpoints answer with the
//! `{code, message, data}` envelope: `code` the detailed v2 error code, `message` its abstract,
//! `data` the detail (spec §3). Internal details are logged, not shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use registry_proto::http::v2_ok;
use registry_proto::http::{v1_error, v2_error};

use crate::configs::ConfigError;
use crate::consistency::admin::MembershipError;
use crate::model::NameError;
use crate::model::instance::InstanceError;
use crate::naming::NamingError;
use registry_proto::http::ParamError;
use registry_proto::model::metadata::MetadataError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is absent, malformed, or the body too large (read by the shared `Params`).
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A domain rule refused the request.
    #[error(transparent)]
    Naming(#[from] NamingError),
    /// A config rule refused the request.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something that should not happen; details are logged only.
    #[error("internal error")]
    Internal(String),
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        Self::Naming(NamingError::Name(e))
    }
}

impl From<MetadataError> for ApiError {
    fn from(e: MetadataError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl ApiError {
    /// A malformed parameter.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::Param(ParamError::BadRequest(detail.into()))
    }

    /// A required parameter that is absent or blank.
    pub fn missing(name: &'static str) -> Self {
        Self::Param(ParamError::MissingParam(name))
    }

    /// HTTP status, v2 detail code and v2 abstract.
    fn classify(&self) -> (StatusCode, u32, &'static str) {
        use NamingError as N;
        match self {
            Self::Param(ParamError::MissingParam(_)) => (StatusCode::BAD_REQUEST, 10000, "parameter missing"),
            Self::Param(ParamError::BadRequest(_)) => (StatusCode::BAD_REQUEST, 20002, "parameter validate error"),
            Self::Param(ParamError::PayloadTooLarge) => {
                (StatusCode::PAYLOAD_TOO_LARGE, 20002, "parameter validate error")
            }
            Self::Param(ParamError::Name(e)) => Self::Naming(NamingError::Name(e.clone())).classify(),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, 30000, "server error"),
            Self::Config(c) => match c {
                ConfigError::Key(_) => (StatusCode::BAD_REQUEST, 20008, "invalid dataId"),
                ConfigError::BlankContent | ConfigError::ContentTooLarge { .. } | ConfigError::InvalidParam(_) => {
                    (StatusCode::BAD_REQUEST, 20002, "parameter validate error")
                }
                ConfigError::NotFound | ConfigError::HistoryNotFound => {
                    (StatusCode::NOT_FOUND, 20004, "resource not found")
                }
                // Nacos answers a failed compare-and-swap with 500 on v1; v2 keeps the status.
                ConfigError::CasConflict => (StatusCode::INTERNAL_SERVER_ERROR, 20005, "resource conflict"),
                ConfigError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 30000, "server error"),
            },
            Self::Naming(n) => match n {
                N::Name(
                    NameError::Illegal { field: "serviceName", .. } | NameError::Blank { field: "serviceName" },
                ) => (StatusCode::BAD_REQUEST, 21000, "service name error"),
                N::Name(_) | N::InvalidParam(_) | N::Instance(InstanceError::Name(_)) => {
                    (StatusCode::BAD_REQUEST, 20002, "parameter validate error")
                }
                N::Instance(InstanceError::Weight(_)) => (StatusCode::BAD_REQUEST, 21001, "weight error"),
                N::Instance(InstanceError::Metadata(_)) => (StatusCode::BAD_REQUEST, 21002, "instance metadata error"),
                N::ServiceNotFound { .. } => (StatusCode::BAD_REQUEST, 21008, "service not exist"),
                N::ServiceAlreadyExists(_) => (StatusCode::BAD_REQUEST, 21007, "service already exist"),
                N::ServiceNotEmpty(_) => (StatusCode::BAD_REQUEST, 21009, "service delete failure"),
                N::InstanceNotFound => (StatusCode::NOT_FOUND, 21003, "instance not found"),
                N::KindConflict { .. } => (StatusCode::BAD_REQUEST, 21004, "instance error"),
                N::HealthCheckRunning(_) => (StatusCode::BAD_REQUEST, 21011, "health check still running"),
                N::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 30000, "server error"),
                // Capacity, not a fault: the message says which limit and how to lift it.
                N::OverBudget { .. } => (StatusCode::SERVICE_UNAVAILABLE, 30000, "server error"),
            },
        }
    }

    fn detail(&self) -> String {
        if let Self::Internal(detail) = self {
            tracing::error!(%detail, "internal error answering a request");
        }
        self.to_string()
    }

    /// Renders the v1 form: status + plain-text message.
    pub fn into_v1(self) -> Response {
        let (status, _, _) = self.classify();
        v1_error(status, self.detail())
    }

    /// Renders the v2 form: status + `{code, message, data}`.
    pub fn into_v2(self) -> Response {
        let (status, code, message) = self.classify();
        v2_error(status, code, message, self.detail())
    }
}

impl IntoResponse for ApiError {
    /// Without a version context (extractor rejections), the v1 form.
    fn into_response(self) -> Response {
        self.into_v1()
    }
}

/// Error type of v1 handlers.
#[derive(Debug)]
pub struct V1(pub ApiError);

impl<E: Into<ApiError>> From<E> for V1 {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for V1 {
    fn into_response(self) -> Response {
        self.0.into_v1()
    }
}

/// Error type of v2 handlers.
#[derive(Debug)]
pub struct V2(pub ApiError);

impl<E: Into<ApiError>> From<E> for V2 {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for V2 {
    fn into_response(self) -> Response {
        self.0.into_v2()
    }
}

/// A refused cluster membership change (admin API), in the v2 envelope: 409 with code 23000
/// and the leader's id and cluster address when this node is not the leader, 409 when the
/// change was refused, 503 otherwise.
pub fn membership_refusal(e: MembershipError) -> Response {
    match e {
        MembershipError::NotLeader { leader_id, leader_addr } => v2_error(
            StatusCode::CONFLICT,
            23000,
            "not the leader",
            serde_json::json!({ "leaderId": leader_id, "leaderClusterAddress": leader_addr }),
        ),
        MembershipError::Refused(why) => v2_error(StatusCode::CONFLICT, 23000, "membership change refused", why),
        e => v2_error(StatusCode::SERVICE_UNAVAILABLE, 30000, "server error", e.to_string()),
    }
}
