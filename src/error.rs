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
    /// 409: a duplicate; `details` may name what already exists.
    #[error("{message}")]
    AlreadyExists {
        message: String,
        details: Option<Map<String, Value>>,
    },
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
        Self::AlreadyExists {
            message: msg.into(),
            details: None,
        }
    }

    /// 503 for a server too busy to take the request now (pool exhausted, lock wait over
    /// its bound): the client may retry after [`RETRY_AFTER_BUSY_SECS`].
    pub fn busy() -> Self {
        Self::Unavailable("The server is busy; retry shortly".to_owned())
    }

    /// The optional `error.details` object.
    pub fn details(&self) -> Option<&Map<String, Value>> {
        match self {
            Self::Forbidden { details, .. } | Self::AlreadyExists { details, .. } => {
                details.as_ref()
            }
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), where that applies.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::Unavailable(_) => Some(RETRY_AFTER_BUSY_SECS),
            _ => None,
        }
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
            Self::AlreadyExists { .. } => StatusCode::CONFLICT,
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
            Self::AlreadyExists { .. } => "ALREADY_EXISTS",
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

/// `Retry-After` for a 503: overload is short-lived.
pub const RETRY_AFTER_BUSY_SECS: u64 = 1;

impl From<sea_orm::DbErr> for ServiceError {
    fn from(err: sea_orm::DbErr) -> Self {
        if is_overload(&err) {
            tracing::warn!(error = %err, "database busy; answering 503");
            return Self::busy();
        }
        Self::Internal(format!("database: {err}"))
    }
}

/// Whether a database error means "too busy now" rather than a fault: no pooled connection
/// within the acquire time-out (or the connection to the database was lost), a lock wait over `lock_timeout`, a serialisation failure or
/// a deadlock victim (PostgreSQL), or a busy/locked database (SQLite). Those become 503
/// with `Retry-After`, never 500.
pub fn is_overload(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
    let sqlx = match err {
        // No connection to be had (time-out, or the database went away): try again later.
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            return true;
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match &**sqlx {
        sea_orm::sqlx::Error::PoolTimedOut
        | sea_orm::sqlx::Error::PoolClosed
        | sea_orm::sqlx::Error::Io(_)
        | sea_orm::sqlx::Error::WorkerCrashed => true,
        sea_orm::sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // PostgreSQL: lock_not_available, serialization_failure, deadlock_detected,
            // query_canceled (statement_timeout); SQLite: SQLITE_BUSY, SQLITE_LOCKED.
            Some("55P03" | "40001" | "40P01" | "57014" | "5" | "6" | "517" | "262")
        ),
        _ => false,
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
        let details = self.details().cloned();
        let body = ErrorEnvelope {
            status: "error",
            error: ErrorBody {
                code: self.code(),
                message: self.public_message(),
                details,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs()
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
