//! Liveness and readiness probes.

use axum::extract::State;
use serde::Serialize;

use super::envelope::{Envelope, Reply};
use crate::error::{ErrorEnvelope, ServiceError};
use crate::state::AppState;

/// A probe's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the check passed.
    pub status: &'static str,
}

/// 200 whenever the server is serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Serving", body = Envelope<Health>)))]
pub async fn healthz() -> Reply<Health> {
    Reply::ok(Health { status: "ok" }, "Serving")
}

/// 200 only when every supervised background task runs and the database, the search
/// backend and (when configured) Redis answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Envelope<Health>),
        (status = 503, description = "A dependency does not answer, or a background task is down", body = ErrorEnvelope),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Reply<Health>, ServiceError> {
    if let Some(task) = state.tasks.first_down() {
        return Err(ServiceError::Unavailable(format!(
            "The background task `{task}` is down; it is being restarted"
        )));
    }
    if !state.db.ping().await {
        return Err(ServiceError::Unavailable(
            "The database does not answer".into(),
        ));
    }
    if !state.search.index.healthy().await {
        return Err(ServiceError::Unavailable(format!(
            "The search backend ({}) does not answer",
            state.search.index.name()
        )));
    }
    if let Some(cluster) = &state.cluster
        && !cluster.ping().await
    {
        return Err(ServiceError::Unavailable(
            "Redis (BRIGHTCHAT_REDIS_URL) does not answer".into(),
        ));
    }
    Ok(Reply::ok(Health { status: "ok" }, "Ready"))
}
