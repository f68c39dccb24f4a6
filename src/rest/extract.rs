//! Extractors whose rejections use the contract's envelope: malformed JSON, wrong types,
//! unknown enum values, bad path ids and bad query values are 400; a body over the limit
//! is 413 (CONTRACT.md "Wire conventions").

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::error::ServiceError;
use crate::service::Actor;

/// `axum::Json` with the contract's rejections.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ServiceError))]
pub struct Json<T>(pub T);

/// A JSON body whose every field is optional: no body at all, an empty body, `null` and
/// `{}` all mean the defaults; anything else is read like [`Json`] (same 400/413 answers).
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ServiceError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ServiceError::PayloadTooLarge("request body is larger than 64 KiB".into())
                } else {
                    ServiceError::validation("the request body could not be read")
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let value: Option<T> = serde_json::from_slice(&bytes).map_err(|err| {
            if err.is_syntax() || err.is_eof() {
                ServiceError::validation("request body is not valid JSON")
            } else {
                ServiceError::validation(format!("invalid request body: {err}"))
            }
        })?;
        Ok(Self(value.unwrap_or_default()))
    }
}

/// `axum::extract::Path` with the contract's rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ServiceError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` with the contract's rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ServiceError))]
pub struct Query<T>(pub T);

impl From<JsonRejection> for ServiceError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ServiceError::PayloadTooLarge("request body is larger than 64 KiB".into());
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                ServiceError::validation("expected a body with Content-Type: application/json")
            }
            JsonRejection::JsonSyntaxError(_) => {
                ServiceError::validation("request body is not valid JSON")
            }
            JsonRejection::JsonDataError(err) => ServiceError::validation(err.body_text()),
            other => ServiceError::validation(other.body_text()),
        }
    }
}

impl From<PathRejection> for ServiceError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(err) => {
                ServiceError::validation(format!("invalid path parameter: {}", err.body_text()))
            }
            other => ServiceError::internal(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ServiceError {
    fn from(rejection: QueryRejection) -> Self {
        ServiceError::validation(format!("invalid query: {}", rejection.body_text()))
    }
}

/// The signed-in member, put in the request by [`super::auth::require_auth`].
impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or_else(|| ServiceError::unauthorized("Authentication required"))
    }
}
