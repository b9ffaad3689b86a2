//! What the collector shows: `GET /metrics` (Prometheus text), `GET /healthz`,
//! `GET /api/v1/agents` (JSON registry), and the periodic OTLP export.

pub mod otlp;
pub mod prometheus;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;

use crate::ingest::liveness::Liveness;
use crate::model::AgentRecord;
use crate::stats::CollectorStats;
use crate::store::StoreHandle;
use prometheus::{AgentLine, Exposition};

/// State of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// Store (snapshot, health, registry).
    pub store: StoreHandle,
    /// Collector counters.
    pub stats: Arc<CollectorStats>,
    /// Open streams.
    pub liveness: Arc<Liveness>,
    /// Silence after which an agent counts as down.
    pub agent_down_after: Duration,
    /// Latest detector judgements.
    pub bands: std::sync::Arc<crate::analyze::Bands>,
}

/// One entry of `GET /api/v1/agents`.
#[derive(Debug, Serialize)]
pub struct AgentView {
    /// The registry entry.
    #[serde(flatten)]
    pub record: AgentRecord,
    /// Whether the agent counts as up right now.
    pub up: bool,
}

/// The HTTP routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/dns/changes", get(dns_changes))
        .route("/api/v1/anomalies", get(anomalies))
        .route("/api/v1/alerts", get(alerts))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> Response {
    // Copying the totals takes the writer's lock briefly; formatting runs off the runtime.
    let rendered = tokio::task::spawn_blocking(move || {
        let snapshot = state.store.snapshot();
        let agents: Vec<AgentLine> = snapshot
            .agents
            .iter()
            .map(|record| {
                let status = state
                    .liveness
                    .status(&record.agent_id, state.agent_down_after);
                AgentLine {
                    agent_id: record.agent_id.clone(),
                    host: record.host.clone(),
                    connected: status.connected,
                    up: status.up,
                    last_seen_unix_ms: record.last_seen_unix_ms,
                }
            })
            .collect();
        prometheus::render(&Exposition {
            snapshot: &snapshot,
            agents: &agents,
            stats: &state.stats,
            store_bytes: state.store.file_bytes(),
            bands: &state.bands.all(),
        })
    })
    .await;
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Query of `GET /api/v1/dns/changes`.
#[derive(Debug, serde::Deserialize)]
struct ChangesQuery {
    /// Only this name and names below it.
    target: Option<String>,
    /// At most this many, newest first (default 100, at most 10 000).
    limit: Option<usize>,
}

async fn dns_changes(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<ChangesQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let read =
        tokio::task::spawn_blocking(move || state.store.dns_changes(limit, q.target.as_deref()))
            .await;
    match read {
        Ok(Ok(changes)) => Json(changes).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Query of `GET /api/v1/anomalies`.
#[derive(Debug, serde::Deserialize)]
struct AnomaliesQuery {
    /// At most this many, newest first (default 100, at most 10 000).
    limit: Option<usize>,
}

async fn anomalies(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<AnomaliesQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let read = tokio::task::spawn_blocking(move || state.store.anomalies(limit)).await;
    match read {
        Ok(Ok(list)) => Json(list).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /api/v1/alerts?limit=N`: open alerts, then the most recently resolved ones.
async fn alerts(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<AnomaliesQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(100).min(10_000);
    Json(state.bands.alerts(limit)).into_response()
}

async fn healthz(State(state): State<HttpState>) -> Response {
    if state.store.is_healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n").into_response()
    }
}

async fn agents(State(state): State<HttpState>) -> Json<Vec<AgentView>> {
    let views = state
        .store
        .agents()
        .into_iter()
        .map(|record| {
            let up = state
                .liveness
                .status(&record.agent_id, state.agent_down_after)
                .up;
            AgentView { record, up }
        })
        .collect();
    Json(views)
}
