//! The GraphQL facade (async-graphql) over the same service layer as REST: every
//! resolver calls the service function its REST twin calls, so a rule cannot differ
//! between the two. `POST /graphql` runs operations (`GET` serves GraphiQL);
//! `/graphql/ws` serves subscriptions over `graphql-transport-ws` and the legacy
//! `graphql-ws`, signed in by the `connection_init` payload.

pub mod cost;
pub mod guard;
pub mod http;
pub mod limits;
mod mutation;
mod object;
mod query;
mod subscription;
pub mod ws;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, ErrorExtensions, Schema};
use axum::Extension;

use crate::error::ServiceError;
use crate::service::Actor;
use crate::state::AppState;

pub use mutation::Mutation;
pub use object::MemberLoader;
pub use query::Query;
pub use subscription::{SnapshotPermits, Subscription};

/// The schema type.
pub type BrightSchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complex operation accepted. A field costs 1, a list field its page size (50 when
/// absent) times what is selected in each item, a mutation [`cost::MUTATION`]: one page of
/// 100 messages with every field fits; fifty such pages in one document do not.
pub const MAX_COMPLEXITY: usize = cost::MAX_COMPLEXITY;

/// The schema without runtime data (for the SDL).
fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation, Subscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .extension(guard::ParseGuard)
        .extension(limits::RateLimit)
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

/// The `/graphql` and `/graphql/ws` routes. The body limit is the router's
/// `DefaultBodyLimit`, which [`http::post`] turns into a JSON 413.
pub fn routes(state: &AppState) -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/graphql", get(http::get).post(http::post))
        .route("/graphql/ws", get(ws::subscriptions))
        .layer(Extension(schema(state.clone())))
}
