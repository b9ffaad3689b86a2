//! What the collector shows: `GET /metrics` (Prometheus text), `GET /healthz`,
//! `GET /api/v1/agents` (JSON registry), `/api/v1/dns/changes`, `/api/v1/anomalies`,
//! `/api/v1/alerts` (and an alert's series: `/api/v1/alerts/{fingerprint}/series`), the web
//! console (`/console/`), and the periodic OTLP export.
//!
//! Every answer is bounded: list endpoints return at most `max_list_items` entries (fewer for
//! DNS changes) and `max_response_bytes` of JSON — a cut list says so in
//! `X-Mailpulse-Truncated: true` —, at most `max_concurrent_metrics_renders` scrapes render at
//! once (others wait `metrics_queue_timeout_secs`, then get 503), and a request not answered
//! within `request_timeout_secs` gets 503.

pub mod actions;
pub mod config;
pub mod console;
pub mod otlp;
pub mod prometheus;
pub mod remote_write;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::Semaphore;

pub use config::HttpConfig;

use crate::ingest::liveness::Liveness;
use crate::ingest::refusal::RefusedSamples;
use crate::model::AgentRecord;
use crate::net::ListenerStats;
use crate::stats::CollectorStats;
use crate::store::StoreHandle;
use prometheus::{AgentLine, Exposition, ListenerLine};

/// Header set on a list response that was cut to its byte budget or item maximum.
pub const TRUNCATED_HEADER: &str = "x-mailpulse-truncated";

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
    /// Samples refused per agent and reason.
    pub refused: Arc<RefusedSamples>,
    /// Connection counters of the gRPC listener.
    pub grpc_listener: Arc<ListenerStats>,
    /// Connection counters of the HTTP listener.
    pub http_listener: Arc<ListenerStats>,
    /// Limits of this listener.
    pub http: HttpConfig,
    /// Render slots of `/metrics`.
    pub metrics_renders: Arc<Semaphore>,
    /// Scrapes answered 503 because no render slot freed in time.
    pub metrics_busy: Arc<AtomicU64>,
    /// Remediation (approvals, audit, kill switch); none when it is off.
    pub actions: Option<actions::ActionsApi>,
}

impl HttpState {
    /// The state for `http`'s limits.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: StoreHandle,
        stats: Arc<CollectorStats>,
        liveness: Arc<Liveness>,
        agent_down_after: Duration,
        bands: Arc<crate::analyze::Bands>,
        refused: Arc<RefusedSamples>,
        grpc_listener: Arc<ListenerStats>,
        http_listener: Arc<ListenerStats>,
        http: HttpConfig,
    ) -> Self {
        let renders = http.max_concurrent_metrics_renders.max(1);
        Self {
            store,
            stats,
            liveness,
            agent_down_after,
            bands,
            refused,
            grpc_listener,
            http_listener,
            http,
            metrics_renders: Arc::new(Semaphore::new(renders)),
            metrics_busy: Arc::new(AtomicU64::new(0)),
            actions: None,
        }
    }
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
    let timeout = Duration::from_secs(state.http.request_timeout_secs.max(1));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/dns/changes", get(dns_changes))
        .route("/api/v1/anomalies", get(anomalies))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/{fingerprint}", get(alert))
        .route("/api/v1/alerts/{fingerprint}/series", get(alert_series))
        .route("/api/v1/actions", get(actions::list))
        .route(
            "/api/v1/actions/{id}/{verb}",
            axum::routing::post(actions::decide),
        )
        .route("/api/v1/audit", get(actions::audit))
        .route(
            "/api/v1/remediation/{verb}",
            axum::routing::post(actions::kill_switch),
        )
        .route("/runbooks/{name}", get(runbook))
        .route("/", get(console::home))
        .route("/console", get(console::home))
        .route("/console/", get(console::index))
        .route("/console/console.js", get(console::script))
        .route("/console/console.css", get(console::style))
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            request_timeout,
        ))
        .with_state(state)
}

/// Answers 503 when the handler takes longer than `timeout`.
async fn request_timeout(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let wait = Duration::from_secs(state.http.metrics_queue_timeout_secs);
    let permit =
        match tokio::time::timeout(wait, state.metrics_renders.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                state.metrics_busy.fetch_add(1, Ordering::Relaxed);
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    "too many concurrent scrapes\n",
                )
                    .into_response();
            }
        };
    // Copying the totals takes the writer's lock briefly; formatting runs off the runtime.
    let rendered = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        render_metrics(&state)
    })
    .await;
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// What `/metrics` shows (and remote write sends). Synchronous: run it off the runtime.
pub fn render_metrics(state: &HttpState) -> String {
    {
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
        let listeners = [
            ListenerLine::of("grpc", &state.grpc_listener),
            ListenerLine::of("http", &state.http_listener),
        ];
        let mut alerts: std::collections::BTreeMap<(String, String, String), u64> =
            Default::default();
        for a in state.bands.alerts(usize::MAX) {
            if a.state == crate::alerting::State::Resolved {
                continue;
            }
            let label = |n: &str| a.labels.get(n).cloned().unwrap_or_default();
            *alerts
                .entry((
                    label("alertname"),
                    label("severity"),
                    a.state.as_str().to_owned(),
                ))
                .or_default() += 1;
        }
        let alerts: Vec<((String, String, String), u64)> = alerts.into_iter().collect();
        let remediation = state
            .actions
            .as_ref()
            .map(|api| (api.remediation.audit.counts(), api.remediation.killed()));
        prometheus::render(&Exposition {
            snapshot: &snapshot,
            agents: &agents,
            stats: &state.stats,
            store_bytes: state.store.file_bytes(),
            bands: &state.bands.all(),
            refused: &state.refused.snapshot(),
            listeners: &listeners,
            metrics_busy: state.metrics_busy.load(Ordering::Relaxed),
            alerts: &alerts,
            remediation: remediation.as_ref().map(|(c, k)| (c.as_slice(), *k)),
        })
    }
}

/// Query of `GET /api/v1/dns/changes`.
#[derive(Debug, serde::Deserialize)]
struct ChangesQuery {
    /// Only this name and names below it.
    target: Option<String>,
    /// At most this many, newest first (default 100, at most `max_dns_changes`).
    limit: Option<usize>,
}

async fn dns_changes(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<ChangesQuery>,
) -> Response {
    let (limit, capped) = capped_limit(q.limit, state.http.max_dns_changes);
    let max_bytes = state.http.max_response_bytes;
    let store = state.store.clone();
    let read =
        tokio::task::spawn_blocking(move || store.dns_changes(limit, q.target.as_deref())).await;
    match read {
        Ok(Ok(changes)) => bounded_json_list(&changes, max_bytes, capped),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Query of `GET /api/v1/anomalies` and `/api/v1/alerts`.
#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    /// At most this many, newest first (default 100, at most `max_list_items`).
    limit: Option<usize>,
}

async fn anomalies(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    let (limit, capped) = capped_limit(q.limit, state.http.max_list_items);
    let max_bytes = state.http.max_response_bytes;
    let store = state.store.clone();
    let read = tokio::task::spawn_blocking(move || store.anomalies(limit)).await;
    match read {
        Ok(Ok(list)) => bounded_json_list(&list, max_bytes, capped),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /api/v1/alerts?limit=N`: open alerts, then the most recently resolved ones.
async fn alerts(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    let (limit, capped) = capped_limit(q.limit, state.http.max_list_items);
    bounded_json_list(
        &state.bands.alerts(limit),
        state.http.max_response_bytes,
        capped,
    )
}

/// `GET /api/v1/alerts/{fingerprint}`: one alert (the `generatorURL` of what was sent).
async fn alert(
    State(state): State<HttpState>,
    axum::extract::Path(fingerprint): axum::extract::Path<String>,
) -> Response {
    match state.bands.alert(&fingerprint) {
        Some(alert) => axum::Json(alert).into_response(),
        None => (StatusCode::NOT_FOUND, "no such alert\n").into_response(),
    }
}

/// `GET /api/v1/alerts/{fingerprint}/series`: the recent judgements of the alert's series
/// (observed, expected, lower, upper per window), for its chart.
async fn alert_series(
    State(state): State<HttpState>,
    axum::extract::Path(fingerprint): axum::extract::Path<String>,
) -> Response {
    match state.bands.trace(&fingerprint) {
        Some(trace) => axum::Json(trace).into_response(),
        None => (StatusCode::NOT_FOUND, "no series for this alert\n").into_response(),
    }
}

/// `GET /runbooks/{name}.md`: a runbook that ships with the collector.
async fn runbook(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let text = name
        .strip_suffix(".md")
        .and_then(crate::alerting::runbooks::runbook);
    match text {
        Some(text) => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such runbook\n").into_response(),
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    if state.store.is_healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n").into_response()
    }
}

async fn agents(State(state): State<HttpState>) -> Response {
    let records = state.store.agents();
    let capped = records.len() > state.http.max_list_items;
    let views: Vec<AgentView> = records
        .into_iter()
        .take(state.http.max_list_items)
        .map(|record| {
            let up = state
                .liveness
                .status(&record.agent_id, state.agent_down_after)
                .up;
            AgentView { record, up }
        })
        .collect();
    bounded_json_list(&views, state.http.max_response_bytes, capped)
}

/// The limit to ask for (default 100, at most `max`) and whether the request asked for more.
fn capped_limit(asked: Option<usize>, max: usize) -> (usize, bool) {
    let asked = asked.unwrap_or(100);
    let max = max.max(1);
    (asked.min(max), asked > max)
}

/// A JSON array of as many leading `items` as fit in `max_bytes`; marked truncated when some
/// were left out (or `capped`: the request asked for more than the maximum).
pub(crate) fn bounded_json_list<T: Serialize>(
    items: &[T],
    max_bytes: usize,
    capped: bool,
) -> Response {
    let mut body = Vec::with_capacity(4096.min(max_bytes));
    body.push(b'[');
    let mut truncated = capped;
    let mut entry = Vec::new();
    for item in items {
        entry.clear();
        if serde_json::to_writer(&mut entry, item).is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        // The separator and the closing bracket must fit too.
        if body.len() + entry.len() + 2 > max_bytes {
            truncated = true;
            break;
        }
        if body.len() > 1 {
            body.push(b',');
        }
        body.extend_from_slice(&entry);
    }
    body.push(b']');
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if truncated {
        response
            .headers_mut()
            .insert(TRUNCATED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    #[tokio::test]
    async fn scrapes_beyond_the_render_slots_wait_then_get_503() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(CollectorStats::default());
        let config = StoreConfig {
            path: dir.path().join("collector.redb"),
            ..StoreConfig::default()
        };
        let (store, writer) = crate::store::open(&config, 100, stats.clone()).expect("store");
        let state = HttpState::new(
            store,
            stats,
            Arc::new(Liveness::default()),
            Duration::from_secs(180),
            Arc::new(crate::analyze::Bands::default()),
            Arc::new(RefusedSamples::default()),
            Arc::new(ListenerStats::default()),
            Arc::new(ListenerStats::default()),
            HttpConfig {
                max_concurrent_metrics_renders: 2,
                metrics_queue_timeout_secs: 1,
                ..HttpConfig::default()
            },
        );
        assert_eq!(metrics(State(state.clone())).await.status(), StatusCode::OK);
        // Both slots busy (two renders in progress): a third scrape waits, then gets 503.
        let busy = state
            .metrics_renders
            .clone()
            .acquire_many_owned(2)
            .await
            .expect("slots");
        let started = std::time::Instant::now();
        let response = metrics(State(state.clone())).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() >= Duration::from_millis(900));
        assert_eq!(state.metrics_busy.load(Ordering::Relaxed), 1);
        // A slot that frees while it waits serves it.
        let waiting = tokio::spawn(metrics(State(state.clone())));
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(busy);
        assert_eq!(waiting.await.expect("task").status(), StatusCode::OK);
        let text =
            axum::body::to_bytes(metrics(State(state.clone())).await.into_body(), usize::MAX)
                .await
                .expect("body");
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("mailpulse_collector_metrics_busy_total 1\n"),
            "{text}"
        );
        drop(state);
        writer.join().await.expect("writer stops");
    }

    #[test]
    fn lists_are_cut_to_their_byte_budget_and_say_so() {
        let items: Vec<String> = (0..100).map(|i| format!("item-{i:03}")).collect();
        let body_of = |response: Response| async move {
            let truncated = response.headers().get(TRUNCATED_HEADER).is_some();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            (bytes, truncated)
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (bytes, truncated) = body_of(bounded_json_list(&items, 1 << 20, false)).await;
            let all: Vec<String> = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!((all.len(), truncated), (100, false));

            let (bytes, truncated) = body_of(bounded_json_list(&items, 100, false)).await;
            assert!(bytes.len() <= 100, "{}", bytes.len());
            let some: Vec<String> = serde_json::from_slice(&bytes).expect("valid JSON");
            assert_eq!((some.len(), truncated), (9, true));
            assert_eq!(some[..], items[..9]);

            let (bytes, truncated) = body_of(bounded_json_list(&items, 5, false)).await;
            assert_eq!((&bytes[..], truncated), (&b"[]"[..], true));
            let (_, truncated) = body_of(bounded_json_list(&items, 1 << 20, true)).await;
            assert!(truncated, "a capped limit says so");
        });
        assert_eq!(capped_limit(None, 1000), (100, false));
        assert_eq!(capped_limit(Some(5000), 1000), (1000, true));
        assert_eq!(capped_limit(Some(0), 1000), (0, false));
    }
}
