//! The REST API: thin axum handlers, one module a resource. Each handler parses input,
//! calls one service function and wraps the result in the envelope.

pub mod auth;
pub mod channels;
pub mod conversations;
pub mod envelope;
pub mod extract;
pub mod groups;
pub mod health;
pub mod limit;
pub mod members;
pub mod openapi;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ServiceError;
use crate::state::AppState;

pub use crate::http::MAX_BODY_BYTES;

#[derive(OpenApi)]
#[openapi(
    info(title = "BrightChat", description = "Encrypted direct messages, groups and channels."),
    modifiers(&BearerAuth),
    // Referenced from every list route's `direction` parameter (utoipa does not collect
    // schemas reached only through `IntoParams`).
    components(schemas(crate::service::pagination::Direction)),
    tags(
        (name = "auth", description = "Challenge and signed sign-in"),
        (name = "members", description = "Members, blocking and presence"),
        (name = "conversations", description = "Direct messages"),
        (name = "groups", description = "Group chats, their keys, roles and moderation"),
        (name = "channels", description = "Channels: visibility, invites, moderation"),
        (name = "events", description = "Real-time events over WebSocket"),
        (name = "operations", description = "Probes and the API document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes, split into those open to anyone, the sign-up and sign-in ones (limited per
/// client address) and those needing a bearer token.
fn routes() -> (
    OpenApiRouter<AppState>,
    OpenApiRouter<AppState>,
    OpenApiRouter<AppState>,
) {
    let public = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(ws::events));
    let signing_in = OpenApiRouter::new()
        .routes(routes!(members::register))
        .routes(routes!(auth::challenge))
        .routes(routes!(auth::login));
    let protected = OpenApiRouter::new()
        .routes(routes!(auth::logout))
        .routes(routes!(members::me, members::update_me))
        .routes(routes!(members::get))
        .routes(routes!(members::block, members::unblock))
        .routes(routes!(members::set_presence))
        .routes(routes!(conversations::send, conversations::list))
        .routes(routes!(conversations::messages))
        .routes(routes!(conversations::delete_message))
        .routes(routes!(groups::promote))
        .routes(routes!(groups::create, groups::list))
        .routes(routes!(groups::get))
        .routes(routes!(groups::send, groups::history))
        .routes(routes!(groups::edit, groups::delete_message))
        .routes(routes!(groups::add_members, groups::members))
        .routes(routes!(groups::remove_member))
        .routes(routes!(groups::leave))
        .routes(routes!(groups::assign_role))
        .routes(routes!(groups::react))
        .routes(routes!(groups::unreact))
        .routes(routes!(groups::pin, groups::unpin))
        .routes(routes!(groups::mute, groups::unmute))
        .routes(routes!(groups::keys))
        .routes(routes!(groups::audit_log))
        .routes(routes!(groups::unlock))
        .routes(routes!(channels::create, channels::list))
        .routes(routes!(channels::get, channels::update, channels::delete))
        .routes(routes!(channels::members))
        .routes(routes!(channels::join))
        .routes(routes!(channels::leave))
        .routes(routes!(channels::kick))
        .routes(routes!(channels::create_invite))
        .routes(routes!(channels::redeem))
        .routes(routes!(channels::send, channels::history))
        .routes(routes!(channels::search))
        .routes(routes!(channels::edit, channels::delete_message))
        .routes(routes!(channels::assign_role))
        .routes(routes!(channels::react))
        .routes(routes!(channels::unreact))
        .routes(routes!(channels::pin, channels::unpin))
        .routes(routes!(channels::mute, channels::unmute))
        .routes(routes!(channels::keys))
        .routes(routes!(channels::audit_log))
        .routes(routes!(channels::unlock));
    (public, signing_in, protected)
}

/// The OpenAPI document of every route, finished by [`openapi::finish`] (operation ids,
/// 401 and 429 on every operation they apply to).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (public, signing_in, protected) = routes();
    let (_, mut doc) = public.merge(signing_in).merge(protected).split_for_parts();
    // Rate limits (writes, sign-in) and 401s go on every operation in `finish`.
    doc.paths.paths.insert(
        "/openapi.json".to_owned(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .tag("operations")
                .operation_id(Some("openapi"))
                .summary(Some("This OpenAPI document"))
                .response(
                    "200",
                    utoipa::openapi::Response::new("The OpenAPI document"),
                ),
        ),
    );
    openapi::finish(&mut doc);
    doc
}

/// The whole HTTP application for `state`: the REST routes, `/openapi.json` and `more`
/// (the GraphQL routes, which [`crate::build`] passes in), behind the shared layers.
pub fn router(state: AppState, more: Router<AppState>) -> Router {
    let (public, signing_in, protected) = routes();
    let signing_in = signing_in.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        limit::auth_limit,
    ));
    // Layers run outside-in: sign-in first, then the write limit of that member.
    let protected = protected
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit::write_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ));
    let (api, _) = public.merge(signing_in).merge(protected).split_for_parts();
    let document: Arc<String> = Arc::new(openapi().to_json().unwrap_or_else(|_| "{}".to_owned()));

    api.merge(more)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        (*document).clone(),
                    )
                }
            }),
        )
        // Counted per matched route, so only requests that found one.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(|_| internal_error()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::from_fn(deadline))
        .layer(tower::util::option_layer(cors(&state.config.cors_origins)))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            header::HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

/// How long a request may run before it is answered 503.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// Answers a request still running after [`REQUEST_DEADLINE`] with the contract's 503
/// envelope (`SERVICE_UNAVAILABLE`, `Retry-After`), as the OpenAPI document lists it, and
/// drops its work. A WebSocket upgrade is answered at once; the socket is not timed.
async fn deadline(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ServiceError::Unavailable(format!(
            "The request took longer than {} s; retry shortly",
            REQUEST_DEADLINE.as_secs()
        ))
        .into_response(),
    }
}

/// CORS for browsers on the configured origins (CONTRACT.md "Operations"); none when
/// unset. Preflights are answered here; bearer tokens, not cookies, so no credentials.
fn cors(origins: &crate::config::CorsOrigins) -> Option<tower_http::cors::CorsLayer> {
    use crate::config::CorsOrigins;
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|origin| header::HeaderValue::from_str(origin).ok()),
        ),
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(3600));
    Some(layer)
}

/// The span of one request: method, path and request id. The query string is left out on
/// purpose: `GET /api/events?token=…` carries a bearer token.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    )
}

async fn not_found() -> ServiceError {
    ServiceError::not_found("No such route")
}

async fn method_not_allowed() -> ServiceError {
    ServiceError::MethodNotAllowed("Method not allowed on this route".into())
}

fn internal_error() -> Response {
    ServiceError::internal("a handler panicked").into_response()
}
