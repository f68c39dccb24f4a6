//! Finishing touches on the generated OpenAPI document, applied in one place to every
//! operation rather than repeated in each `#[utoipa::path]`:
//!
//! - every operation gets a unique, stable `operationId`, `<tag>_<handler>` (for example
//!   `channels_list`, `groups_send`), so generated clients name their functions by resource;
//! - every authenticated operation (one with a security requirement, or taking a token like
//!   `GET /api/events`) lists 401 `UNAUTHORIZED`;
//! - every write under `/api` (what rate limits and slow mode apply to: the sign-in routes
//!   per address, every other write per member) lists 429 `RATE_LIMITED` with its
//!   `Retry-After` header; reads never answer 429 and do not list it (CONTRACT.md: the
//!   document lists every status a route can answer, 401 and 429 included);
//! - every operation taking a path or query parameter or a body lists 400
//!   `VALIDATION_ERROR` (a malformed id in the path, a bad parameter, broken JSON: all 400,
//!   never 422), and every one taking a body lists 413 `PAYLOAD_TOO_LARGE` (over
//!   [`crate::http::MAX_BODY_BYTES`]);
//! - every operation under `/api` lists 503 `SERVICE_UNAVAILABLE` with `Retry-After`: the server is
//!   busy (database pool or a write lock over its bound), search is down, or the request ran
//!   past the 30-second timeout.
//!
//! A status a handler already documents keeps its own description; a 429 or 503 without a
//! `Retry-After` header gets one.

use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

/// Routes answered with no prefix of their own that still need a token: the WebSocket
/// upgrade takes it in the query or header rather than through the security scheme.
const TOKEN_ROUTES: [&str; 1] = ["/api/events"];

/// Which of the methods in `finish`'s order write (get, put, post, delete, options, head,
/// patch, trace).
const WRITES: [bool; 8] = [false, true, true, true, false, false, true, false];

/// Applies the document-wide rules above to `doc`.
pub fn finish(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.options.as_mut(),
            item.head.as_mut(),
            item.patch.as_mut(),
            item.trace.as_mut(),
        ];
        for (operation, write) in operations.into_iter().zip(WRITES) {
            let Some(operation) = operation else {
                continue;
            };
            name_operation(operation);
            let authenticated = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty())
                || TOKEN_ROUTES.contains(&path.as_str());
            if authenticated {
                add(operation, "401", "Not authenticated: no valid bearer token");
            }
            let has_parameters = operation
                .parameters
                .as_ref()
                .is_some_and(|parameters| !parameters.is_empty());
            let has_body = operation.request_body.is_some();
            if has_parameters || has_body {
                add(
                    operation,
                    "400",
                    "VALIDATION_ERROR: a malformed id, parameter or body",
                );
            }
            if has_body {
                add(
                    operation,
                    "413",
                    "PAYLOAD_TOO_LARGE: the body is over 64 KiB",
                );
            }
            if !path.starts_with("/api/") {
                continue;
            }
            if write {
                add_retry_after(add(
                    operation,
                    "429",
                    "RATE_LIMITED: over a rate limit; retry after Retry-After seconds",
                ));
            }
            add_retry_after(add(
                operation,
                "503",
                "SERVICE_UNAVAILABLE: the server is busy or a dependency is down; retry after \
                 Retry-After seconds",
            ));
        }
    }
}

/// Lists `status` on `operation` with the error envelope, unless the handler already
/// documents it; returns the entry.
fn add<'a>(
    operation: &'a mut Operation,
    status: &str,
    description: &str,
) -> &'a mut RefOr<Response> {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error_response(description))
}

/// Gives a 429 or 503 answer its `Retry-After` header.
fn add_retry_after(entry: &mut RefOr<Response>) {
    if let RefOr::T(response) = entry {
        response
            .headers
            .entry("Retry-After".to_owned())
            .or_insert_with(|| RefOr::T(retry_after()));
    }
}

/// Prefixes the handler's name with the operation's first tag: `list` under `channels`
/// becomes `channels_list`. An operation already named that way is left as it is.
fn name_operation(operation: &mut Operation) {
    let tag = operation
        .tags
        .as_ref()
        .and_then(|tags| tags.first())
        .cloned();
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut())
        && !id.starts_with(&format!("{tag}_"))
    {
        *id = format!("{tag}_{id}");
    }
}

/// An answer with the error envelope as its body.
fn error_response(description: &str) -> RefOr<Response> {
    let mut response = Response::new(description);
    response.content.insert(
        "application/json".to_owned(),
        RefOr::T(Content::new(Some(Ref::from_schema_name("ErrorEnvelope")))),
    );
    RefOr::T(response)
}

/// The `Retry-After` header of a 429: whole seconds to wait.
fn retry_after() -> Header {
    let mut header = Header::new(Object::with_type(Type::Integer));
    header.description = Some("Seconds to wait before retrying".to_owned());
    header
}
