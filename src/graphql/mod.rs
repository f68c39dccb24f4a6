//! The GraphQL facade (async-graphql) over the same service layer as REST. Its issue
//! adds queries, mutations and subscriptions; REST is the whole API until then.
