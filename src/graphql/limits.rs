//! Rate limits on GraphQL mutations (see [`crate::service::limits`]).
//!
//! Every root field of a mutation spends one token, so one request with 50 aliased
//! mutations spends 50: `registerMember`, `authChallenge` and `login` from the client
//! address's auth bucket, every other field from the signed-in member's write bucket
//! (fields without a signed-in member are refused `UNAUTHORIZED` by their resolvers and
//! spend nothing). The whole operation is charged before any field runs: an operation over
//! the budget is refused as a whole (`data: null`, one `RATE_LIMITED` error with
//! `extensions.retryAfter`) and nothing of it is done. Over HTTP that answer is 429 with
//! `Retry-After`. Fields under `@skip`/`@include` are counted all the same.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ErrorExtensions, Name, Pos, ServerError, ServerResult, Variables};

use crate::error::ServiceError;
use crate::service::Actor;
use crate::state::AppState;

/// Root mutation fields that spend the auth limit (per client address).
pub const AUTH_FIELDS: [&str; 3] = ["registerMember", "authChallenge", "login"];

/// Request data: the client address (see [`crate::service::limits::client_addr`]).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

/// The schema extension charging mutations to the rate limits.
pub struct RateLimit;

impl ExtensionFactory for RateLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RateLimitExtension::default())
    }
}

/// Tokens one operation spends.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Cost {
    auth: u32,
    write: u32,
}

/// One per request: the cost of each mutation operation in its document.
#[derive(Default)]
struct RateLimitExtension {
    costs: Mutex<Vec<(Option<Name>, Cost)>>,
}

#[async_trait::async_trait]
impl Extension for RateLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let costs = document
            .operations
            .iter()
            .filter(|(_, op)| op.node.ty == OperationType::Mutation)
            .map(|(name, op)| {
                let cost = cost(&op.node.selection_set.node, &document, &mut HashSet::new());
                (name.cloned(), cost)
            })
            .collect();
        if let Ok(mut slot) = self.costs.lock() {
            *slot = costs;
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        let cost = self
            .costs
            .lock()
            .ok()
            .and_then(|costs| match operation_name {
                Some(wanted) => costs
                    .iter()
                    .find(|(name, _)| name.as_deref() == Some(wanted))
                    .map(|(_, cost)| *cost),
                None if costs.len() == 1 => costs.first().map(|(_, cost)| *cost),
                None => None,
            });
        if let Some(cost) = cost
            && let Err(err) = charge(ctx, cost).await
        {
            return async_graphql::Response::from_errors(vec![server_error(&err)]);
        }
        next.run(ctx, operation_name).await
    }
}

/// Spends `cost`: the auth bucket first, then the write bucket.
async fn charge(ctx: &ExtensionContext<'_>, cost: Cost) -> Result<(), ServiceError> {
    let Some(state) = ctx.data_opt::<AppState>() else {
        return Ok(());
    };
    let cluster = state.cluster.as_deref();
    if cost.auth > 0
        && let Some(ClientAddr(client)) = ctx.data_opt::<ClientAddr>()
    {
        let key = client.to_string();
        state.limits.auth.check(cluster, &key, cost.auth).await?;
    }
    if cost.write > 0
        && let Some(actor) = ctx.data_opt::<Actor>()
    {
        let key = actor.member_id.to_string();
        state.limits.write.check(cluster, &key, cost.write).await?;
    }
    Ok(())
}

/// The GraphQL error for `err`, with `extensions.retryAfter` when it has one.
pub fn server_error(err: &ServiceError) -> ServerError {
    let mut error = err.extend().into_server_error(Pos::default());
    if let Some(secs) = err.retry_after_secs() {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("retryAfter", secs);
    }
    error
}

/// The root fields of `set` through fragments (`seen` ends fragment cycles, which
/// validation refuses later anyway).
fn cost(set: &SelectionSet, document: &ExecutableDocument, seen: &mut HashSet<Name>) -> Cost {
    let mut total = Cost::default();
    for selection in &set.items {
        let part = match &selection.node {
            Selection::Field(field) => {
                if AUTH_FIELDS.contains(&field.node.name.node.as_str()) {
                    Cost { auth: 1, write: 0 }
                } else if field.node.name.node.starts_with("__") {
                    Cost::default()
                } else {
                    Cost { auth: 0, write: 1 }
                }
            }
            Selection::InlineFragment(inline) => {
                cost(&inline.node.selection_set.node, document, seen)
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if !seen.insert(name.clone()) {
                    continue;
                }
                document
                    .fragments
                    .get(name)
                    .map_or(Cost::default(), |fragment| {
                        cost(&fragment.node.selection_set.node, document, seen)
                    })
            }
        };
        total.auth = total.auth.saturating_add(part.auth);
        total.write = total.write.saturating_add(part.write);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(query: &str) -> Cost {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        let (_, op) = document.operations.iter().next().expect("an operation");
        cost(&op.node.selection_set.node, &document, &mut HashSet::new())
    }

    #[test]
    fn every_root_field_counts_through_aliases_and_fragments() {
        assert_eq!(
            of(
                "mutation { a: logout b: logout ...F ... on Mutation { login(memberId: \"x\") { token } } } \
                fragment F on Mutation { c: logout authChallenge(memberId: \"x\") { challenge } }"
            ),
            Cost { auth: 2, write: 3 }
        );
        assert_eq!(of("mutation { __typename }"), Cost::default());
    }
}
