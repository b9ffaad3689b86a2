//! Remediation over HTTP: `GET /api/v1/actions` (waiting, running, scheduled reverts, the kill
//! switch), `GET /api/v1/audit`, and — with the API token (`Authorization: Bearer`) —
//! `POST /api/v1/actions/{id}/approve|reject` and `POST /api/v1/remediation/kill|resume`.
//!
//! The POST endpoints take no cookie and no form: only a bearer token a page cannot send
//! across origins without the browser's CORS preflight (which this server never grants), so
//! they are safe from cross-site request forgery.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::HttpState;
use crate::remediate::Remediation;

/// What the remediation endpoints need.
#[derive(Clone)]
pub struct ActionsApi {
    pub remediation: Arc<Remediation>,
    /// The bearer token of the POST endpoints (none: they answer 403).
    pub token: Option<Arc<str>>,
}

/// Why a request is not served.
#[derive(Debug, Clone, Copy)]
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::UNAUTHORIZED {
            (self.0, [(header::WWW_AUTHENTICATE, "Bearer")], self.1).into_response()
        } else {
            (self.0, self.1).into_response()
        }
    }
}

fn api(state: &HttpState) -> Result<&ActionsApi, Refused> {
    state.actions.as_ref().ok_or(Refused(
        StatusCode::NOT_FOUND,
        "remediation is not configured\n",
    ))
}

/// Checks the bearer token (constant time). A browser's request from a page of another
/// origin (its `Origin` names another host than `Host`) is refused whatever it carries.
fn authorized(api: &ActionsApi, headers: &HeaderMap) -> Result<(), Refused> {
    if !same_origin(headers) {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "a request from another origin is refused\n",
        ));
    }
    let Some(token) = &api.token else {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "no [remediation] api_token_file is configured\n",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use subtle::ConstantTimeEq;
    if given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(Refused(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required\n",
        ))
    }
}

/// No `Origin` (not a browser, or a same-origin GET), or one whose host and port are `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}

pub async fn list(State(state): State<HttpState>) -> Response {
    match api(&state) {
        Ok(api) => axum::Json(api.remediation.pending()).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<usize>,
}

pub async fn audit(State(state): State<HttpState>, Query(q): Query<AuditQuery>) -> Response {
    let api = match api(&state) {
        Ok(api) => api,
        Err(r) => return r.into_response(),
    };
    let limit = q.limit.unwrap_or(100).min(state.http.max_list_items);
    let entries = api.remediation.audit.newest(limit);
    super::bounded_json_list(&entries, state.http.max_response_bytes, false)
}

pub async fn decide(
    State(state): State<HttpState>,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let api = match api(&state).and_then(|api| authorized(api, &headers).map(|()| api)) {
        Ok(api) => api,
        Err(r) => return r.into_response(),
    };
    let approve = match verb.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return (StatusCode::NOT_FOUND, "approve or reject\n").into_response(),
    };
    let Ok(id) = id.parse::<u64>() else {
        return (StatusCode::BAD_REQUEST, "the action id is a number\n").into_response();
    };
    match api.remediation.decide(id, approve, "api".into()).await {
        Ok(()) => (
            StatusCode::OK,
            if approve { "approved\n" } else { "rejected\n" },
        )
            .into_response(),
        Err(why) => (StatusCode::NOT_FOUND, format!("{why}\n")).into_response(),
    }
}

pub async fn kill_switch(
    State(state): State<HttpState>,
    Path(verb): Path<String>,
    headers: HeaderMap,
) -> Response {
    let api = match api(&state).and_then(|api| authorized(api, &headers).map(|()| api)) {
        Ok(api) => api,
        Err(r) => return r.into_response(),
    };
    let killed = match verb.as_str() {
        "kill" => true,
        "resume" => false,
        _ => return (StatusCode::NOT_FOUND, "kill or resume\n").into_response(),
    };
    if api.remediation.set_killed(killed, "api".into()).await {
        (
            StatusCode::OK,
            if killed { "killed\n" } else { "resumed\n" },
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "remediation stopped\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(n.clone(), v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn only_same_origin_browsers_may_post() {
        assert!(same_origin(&headers(&[(header::HOST, "127.0.0.1:9100")])));
        assert!(same_origin(&headers(&[
            (header::HOST, "127.0.0.1:9100"),
            (header::ORIGIN, "http://127.0.0.1:9100"),
        ])));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9101",
            "null",
            "http://127.0.0.1:9100.evil.example",
        ] {
            assert!(
                !same_origin(&headers(&[
                    (header::HOST, "127.0.0.1:9100"),
                    (header::ORIGIN, origin),
                ])),
                "{origin}"
            );
        }
    }
}
