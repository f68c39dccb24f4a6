//! `/graphql` over HTTP, per the GraphQL-over-HTTP convention (issue 9, item 5).
//!
//! Every answer is `application/json`. A request that is not a GraphQL request at all
//! (broken JSON, a batch array, a missing `query`) is 400 and one over the body limit is 413,
//! each as `{"errors":[{"message","extensions":{"code"}}]}`; everything else is 200 with
//! `data` and/or `errors`, and every error carries `extensions.code`. `GET /graphql` with
//! `?query=` runs a query (never a mutation: 405); without it, GraphiQL.

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::OperationType;
use async_graphql::{ErrorExtensionValues, ErrorExtensions, ServerError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};

use super::limits::ClientAddr;
use super::{BrightSchema, guard};
use crate::error::ServiceError;
use crate::service::auth;
use crate::state::AppState;

/// `POST /graphql`: one operation as `{"query", "variables"?, "operationName"?}`; an
/// optional `Authorization: Bearer` header signs it in. Batches (a JSON array) are refused:
/// each entry would need its own cost budget, and no client we serve sends them.
pub async fn post(
    State(state): State<AppState>,
    Extension(schema): Extension<BrightSchema>,
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = crate::http::request_client(&state, connect.as_deref(), &headers);
    let body = match body {
        Ok(body) => body,
        Err(BytesRejection::FailedToBufferBody(failed))
            if failed.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            return refuse(&ServiceError::PayloadTooLarge(format!(
                "The request body is larger than {} bytes",
                crate::http::MAX_BODY_BYTES
            )));
        }
        Err(_) => {
            return refuse(&ServiceError::validation(
                "The request body could not be read",
            ));
        }
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return refuse(&ServiceError::validation(
            "Batched requests are not supported; send one operation per request",
        ));
    }
    let request = serde_json::from_slice::<async_graphql::Request>(&body);
    let Some(request) = request.ok().filter(|r| !r.query.trim().is_empty()) else {
        return refuse(&ServiceError::validation(
            "The body must be a JSON object with a `query` string, and optionally \
             `variables` (an object) and `operationName`",
        ));
    };
    run(&state, &schema, &headers, client, request).await
}

/// `GET /graphql`: with `?query=`, runs that query; otherwise serves GraphiQL.
pub async fn get(
    State(state): State<AppState>,
    Extension(schema): Extension<BrightSchema>,
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let client = crate::http::request_client(&state, connect.as_deref(), &headers);
    let Some(query) = query.filter(|q| has_query_param(q)) else {
        return graphiql().into_response();
    };
    let request = async_graphql::http::parse_query_string(&query);
    let Some(request) = request.ok().filter(|r| !r.query.trim().is_empty()) else {
        return refuse(&ServiceError::validation(
            "The query string must carry `query`, and optionally `variables` (JSON) and \
             `operationName`",
        ));
    };
    // Mutations change state and GET must not (GraphQL-over-HTTP): look at the operations
    // first. The guard makes this parse as safe as the schema's own.
    if let Err(refusal) = guard::check(&request.query) {
        let response = async_graphql::Response::from_errors(vec![refusal.into_server_error()]);
        return Json(response).into_response();
    }
    if let Ok(document) = async_graphql::parser::parse_query(&request.query)
        && document
            .operations
            .iter()
            .any(|(_, op)| op.node.ty != OperationType::Query)
    {
        let mut answer = refuse(&ServiceError::MethodNotAllowed(
            "Only queries run over GET; send mutations and subscriptions by POST or WebSocket"
                .into(),
        ));
        answer
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
        return answer;
    }
    run(&state, &schema, &headers, client, request).await
}

fn has_query_param(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair == "query" || pair.starts_with("query="))
}

/// GraphiQL, pointed at this server.
fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

/// Signs the request in (when a bearer token is given) and executes it. An operation
/// refused by a rate limit (see [`super::limits`]) answers 429 with `Retry-After`.
async fn run(
    state: &AppState,
    schema: &BrightSchema,
    headers: &HeaderMap,
    client: std::net::IpAddr,
    request: async_graphql::Request,
) -> Response {
    let mut request = request.data(ClientAddr(client));
    if let Some(token) = crate::http::bearer_token(headers) {
        match auth::authenticate(state, &token).await {
            Ok(actor) => request = request.data(actor),
            Err(err) => {
                let response = async_graphql::Response::from_errors(vec![
                    err.extend()
                        .into_server_error(async_graphql::Pos::default()),
                ]);
                return Json(response).into_response();
            }
        }
    }
    let response = with_codes(schema.execute(request).await);
    let retry_after = rate_limited(&response);
    let mut answer = Json(response).into_response();
    if let Some(secs) = retry_after {
        *answer.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    answer
}

/// The seconds to wait when `response` is a whole operation refused by a rate limit.
fn rate_limited(response: &async_graphql::Response) -> Option<u64> {
    let [error] = response.errors.as_slice() else {
        return None;
    };
    if response.data != async_graphql::Value::Null {
        return None;
    }
    let extensions = error.extensions.as_ref()?;
    if extensions.get("code") != Some(&async_graphql::Value::from("RATE_LIMITED")) {
        return None;
    }
    match extensions.get("retryAfter")? {
        async_graphql::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Gives every error without `extensions.code` the code `VALIDATION_ERROR`: our own
/// errors always carry one, so the rest are async-graphql's parse, validation and input
/// coercion errors, all about the document or its variables.
pub fn with_codes(mut response: async_graphql::Response) -> async_graphql::Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "VALIDATION_ERROR");
        }
    }
    response
}

/// A request refused before execution, with the status its error implies.
pub fn refuse(err: &ServiceError) -> Response {
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", err.code());
    let mut error = ServerError::new(err.public_message(), None);
    error.extensions = Some(extensions);
    let body = async_graphql::Response::from_errors(vec![error]);
    (err.status(), Json(body)).into_response()
}
