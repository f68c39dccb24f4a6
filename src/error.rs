//! The one error type of the service layer and its rendering on the wire.
//!
//! Every variant maps to one code of CONTRACT.md "Wire conventions". Internal errors are
//! logged with their detail and shown to clients as a bare `INTERNAL_ERROR`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// What a service function can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 400: the request is malformed or breaks a documented rule.
    #[error("{0}")]
    Validation(String),
    /// 401: missing, unknown, revoked or expired credentials, or a failed sign-in.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: signed in but not allowed.
    #[error("{message}")]
    Forbidden {
        message: String,
        details: Option<Map<String, Value>>,
    },
    /// 404: no such resource (also the privacy-preserving answer).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: a duplicate.
    #[error("{0}")]
    AlreadyExists(String),
    /// 410: expired or used up.
    #[error("{0}")]
    Gone(String),
    /// 413: request body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: too many requests; retry after the given seconds.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: a dependency the server needs does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// 500: anything unexpected. The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand for service results.
pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden {
            message: msg.into(),
            details: None,
        }
    }
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Self::Unauthorized(msg.into())
    }
    pub fn already_exists(msg: impl Into<String>) -> Self {
        Self::AlreadyExists(msg.into())
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyExists(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The contract's machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "VALIDATION_ERROR",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden { .. } => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            Self::AlreadyExists(_) => "ALREADY_EXISTS",
            Self::Gone(_) => "GONE",
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The message a client may see.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "Internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Internal(format!("database: {err}"))
    }
}

impl From<sea_orm::TransactionError<ServiceError>> for ServiceError {
    fn from(err: sea_orm::TransactionError<ServiceError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(inner) => inner,
        }
    }
}

/// The error envelope: `{"status":"error","error":{"code","message","details"?}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    /// Always `"error"`.
    #[schema(example = "error")]
    pub status: &'static str,
    pub error: ErrorBody,
}

/// The `error` member of the error envelope.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// One of the contract's codes, e.g. `VALIDATION_ERROR`.
    #[schema(example = "NOT_FOUND")]
    pub code: &'static str,
    /// A human-readable description.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Map<String, Value>>,
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let details = match &self {
            Self::Forbidden { details, .. } => details.clone(),
            _ => None,
        };
        let body = ErrorEnvelope {
            status: "error",
            error: ErrorBody {
                code: self.code(),
                message: self.public_message(),
                details,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::RateLimited {
            retry_after_secs, ..
        } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
