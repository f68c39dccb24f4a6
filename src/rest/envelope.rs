//! The success envelope: `{"status":"success","data":…,"message":…}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The success envelope as documented in OpenAPI.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    /// Always `"success"`.
    #[schema(example = "success")]
    pub status: &'static str,
    pub data: T,
    /// A human-readable description.
    pub message: &'static str,
}

/// A handler's successful answer: status code, data and message.
pub struct Reply<T> {
    status: StatusCode,
    body: Envelope<T>,
}

impl<T> Reply<T> {
    /// 200 with `data`.
    pub fn ok(data: T, message: &'static str) -> Self {
        Self::with_status(StatusCode::OK, data, message)
    }

    /// 201 with `data`.
    pub fn created(data: T, message: &'static str) -> Self {
        Self::with_status(StatusCode::CREATED, data, message)
    }

    fn with_status(status: StatusCode, data: T, message: &'static str) -> Self {
        Self {
            status,
            body: Envelope {
                status: "success",
                data,
                message,
            },
        }
    }
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
