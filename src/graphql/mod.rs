//! The GraphQL facade (async-graphql) over the same service layer as REST: every
//! resolver calls the service function its REST twin calls, so a rule cannot differ
//! between the two. `POST /graphql` runs operations (`GET` serves GraphiQL);
//! `/graphql/ws` serves subscriptions over `graphql-transport-ws` and the legacy
//! `graphql-ws`, signed in by the `connection_init` payload.

mod mutation;
mod object;
mod query;
mod subscription;

use async_graphql::dataloader::DataLoader;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::{Context, Data, ErrorExtensions, Schema};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Extension;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use crate::error::ServiceError;
use crate::service::{Actor, auth};
use crate::state::AppState;

pub use mutation::Mutation;
pub use object::MemberLoader;
pub use query::Query;
pub use subscription::Subscription;

/// The schema type.
pub type BrightSchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complex query accepted (each field counts 1).
pub const MAX_COMPLEXITY: usize = 2_000;

/// The schema without runtime data (for the SDL).
fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation, Subscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

/// The schema serving `state`.
pub fn schema(state: AppState) -> BrightSchema {
    let loader = DataLoader::new(MemberLoader(state.clone()), tokio::spawn);
    builder().data(state).data(loader).finish()
}

/// The schema in SDL (`brightchat schema` prints it; `schema.graphql` holds it).
pub fn sdl() -> String {
    builder().finish().sdl()
}

impl ErrorExtensions for ServiceError {
    fn extend(&self) -> async_graphql::Error {
        if let ServiceError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let code = self.code();
        let details = self.details().cloned();
        async_graphql::Error::new(self.public_message()).extend_with(|_, e| {
            e.set("code", code);
            if let Some(details) = details.clone() {
                e.set(
                    "details",
                    async_graphql::Value::from_json(details.into()).unwrap_or_default(),
                );
            }
        })
    }
}

/// Maps a service result into a GraphQL one, with the contract's code in `extensions`.
pub(crate) fn gql<T>(result: Result<T, ServiceError>) -> async_graphql::Result<T> {
    result.map_err(|err| err.extend())
}

/// The signed-in member, or `UNAUTHORIZED`.
pub(crate) fn actor<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Actor> {
    ctx.data_opt::<Actor>()
        .ok_or_else(|| ServiceError::unauthorized("Authentication required").extend())
}

/// The application state.
pub(crate) fn state<'a>(ctx: &'a Context<'_>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// The `/graphql` and `/graphql/ws` routes.
pub fn routes(state: &AppState) -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/graphql", get(graphiql).post(execute))
        .route("/graphql/ws", get(subscriptions))
        .layer(Extension(schema(state.clone())))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            crate::rest::MAX_BODY_BYTES,
        ))
}

/// `POST /graphql`: an optional `Authorization: Bearer` header signs the request in.
pub async fn execute(
    State(state): State<AppState>,
    Extension(schema): Extension<BrightSchema>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let mut request = request.into_inner();
    if let Some(token) = crate::rest::auth::bearer_token(&headers) {
        match auth::authenticate(&state, &token).await {
            Ok(actor) => request = request.data(actor),
            Err(err) => {
                let response = async_graphql::Response::from_errors(vec![
                    err.extend()
                        .into_server_error(async_graphql::Pos::default()),
                ]);
                return GraphQLResponse::from(response).into_response();
            }
        }
    }
    GraphQLResponse::from(schema.execute(request).await).into_response()
}

/// `GET /graphql`: GraphiQL.
pub async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

/// `GET /graphql/ws`: subscriptions. The `connection_init` payload carries `{"token": …}`
/// or `{"Authorization": "Bearer …"}`.
pub async fn subscriptions(
    State(state): State<AppState>,
    Extension(schema): Extension<BrightSchema>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let token = payload
                        .get("token")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                        .or_else(|| {
                            ["Authorization", "authorization"].iter().find_map(|key| {
                                payload
                                    .get(*key)
                                    .and_then(|v| v.as_str())
                                    .and_then(|v| v.split_once(' '))
                                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                                    .map(|(_, token)| token.trim().to_owned())
                            })
                        })
                        .ok_or_else(|| {
                            ServiceError::unauthorized("Authentication required").extend()
                        })?;
                    let actor = auth::authenticate(&state, &token)
                        .await
                        .map_err(|err| err.extend())?;
                    let mut data = Data::default();
                    data.insert(actor);
                    Ok(data)
                })
                .serve()
        })
}
