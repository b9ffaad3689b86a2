//! Telling people: every configured Alertmanager gets the firing alerts (API v2), every
//! configured webhook gets each firing and each resolution (the Alertmanager webhook payload,
//! version 4, signed with HMAC-SHA256) through a durable outbox.
//!
//! # Alertmanager
//! Like Prometheus with an HA pair: every Alertmanager gets every alert. Firing alerts are sent
//! after each change and again every `resend_interval_secs`, with `endsAt` four resend
//! intervals ahead (a lease: if the collector stops sending, Alertmanager resolves them); a
//! resolution is sent with `endsAt` = when it resolved, until every Alertmanager took it (at
//! most a day). An Alertmanager that was down gets the firing alerts at the next push.
//!
//! # Webhooks
//! Each firing and each resolution becomes one outbox entry per webhook, stored before it is
//! sent and deleted once the receiver answered 2xx; failures are retried with exponential
//! backoff (1 s doubling to 5 minutes), also across restarts, and dropped after `max_attempts`
//! (counted as dead letters). A receiver may get a repeat; the fingerprint makes it idempotent.
//! The signature header is `X-Mailpulse-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">` with the webhook's secret: a receiver checks it and refuses old timestamps
//! (replays).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::content::rfc3339;
use super::http::{Endpoint, TlsOptions};
use super::{AlertState, Transition};
use crate::stats::CollectorStats;
use crate::store::{StoreHandle, unix_ms};

/// One `[[alerting.alertmanagers]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerTarget {
    /// Base URL, e.g. `http://127.0.0.1:9093` (alerts go to `<url>/api/v2/alerts`).
    pub url: String,
    /// `Authorization: Bearer` with the first line of this file.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Basic authentication: user name, and the file holding the password.
    #[serde(default)]
    pub basic_auth_username: Option<String>,
    #[serde(default)]
    pub basic_auth_password_file: Option<PathBuf>,
    /// TLS for an `https` URL: CA, client certificate and key, server name.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Seconds a push may take (default 10).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// One `[[alerting.webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Where the payload is POSTed.
    pub url: String,
    /// The payload's `receiver` (default `mailpulse`).
    #[serde(default = "default_receiver")]
    pub receiver: String,
    /// The HMAC-SHA256 key: the first line of this file (keep it readable by the collector only).
    pub secret_file: PathBuf,
    /// TLS for an `https` URL: CA, client certificate and key, server name.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Seconds a delivery may take (default 10).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Attempts before a notification is given up (default 20: about 1 h 20 min of retries).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl AlertmanagerTarget {
    /// The Alertmanager at `url`, without authentication, with the default timeout.
    pub fn at(url: impl Into<String>) -> Self {
        AlertmanagerTarget {
            url: url.into(),
            bearer_token_file: None,
            basic_auth_username: None,
            basic_auth_password_file: None,
            tls: TlsOptions::default(),
            timeout_secs: default_timeout_secs(),
        }
    }
}

fn default_timeout_secs() -> u64 {
    10
}
fn default_receiver() -> String {
    "mailpulse".into()
}
fn default_max_attempts() -> u32 {
    20
}

/// What the analyzer hands over after a round.
#[derive(Debug)]
pub struct Round {
    /// Every alert firing now.
    pub firing: Vec<AlertState>,
    /// What changed in the round.
    pub transitions: Vec<Transition>,
    /// Answered once the round's webhook notifications are stored: only then may the
    /// lifecycle store that they were told (a crash in between repeats, never loses them).
    pub queued: tokio::sync::oneshot::Sender<()>,
}

/// A configured target that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{what} {url}: {message}")]
    Target {
        what: &'static str,
        url: String,
        message: String,
    },
}

struct Manager {
    endpoint: Endpoint,
    headers: Vec<(&'static str, String)>,
}

pub struct Hook {
    endpoint: Endpoint,
    receiver: String,
    key: ring::hmac::Key,
    max_attempts: u32,
}

impl Hook {
    /// POSTs `body` once, signed like every notification; the HTTP status, or why none came.
    pub async fn post_signed(&self, body: Bytes) -> Result<u16, String> {
        let signed = signature(&self.key, unix_ms().div_euclid(1000), &body);
        self.endpoint
            .post_json(&[("x-mailpulse-signature", signed)], body)
            .await
            .map(|a| a.status)
            .map_err(|e| e.to_string())
    }

    /// The receiver's URL.
    pub fn url(&self) -> &str {
        self.endpoint.url()
    }
}

/// One stored webhook notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OutboxEntry {
    /// The webhook's URL (entries for a webhook no longer configured are dropped).
    url: String,
    body: String,
    attempts: u32,
    next_attempt_unix_ms: i64,
}

fn first_line(
    path: &std::path::Path,
    what: &'static str,
    url: &str,
) -> Result<String, NotifyError> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().next().unwrap_or_default().trim().to_owned())
        .map_err(|e| NotifyError::Target {
            what,
            url: url.into(),
            message: format!("{}: {e}", path.display()),
        })
}

fn managers(targets: &[AlertmanagerTarget]) -> Result<Vec<Manager>, NotifyError> {
    targets
        .iter()
        .map(|t| {
            let bad = |message: String| NotifyError::Target {
                what: "alertmanager",
                url: t.url.clone(),
                message,
            };
            let endpoint =
                Endpoint::new(&t.url, &t.tls, Duration::from_secs(t.timeout_secs.max(1)))
                    .map_err(|e| bad(e.to_string()))?
                    .join("/api/v2/alerts");
            let mut headers = Vec::new();
            if let Some(file) = &t.bearer_token_file {
                let token = first_line(file, "alertmanager", &t.url)?;
                headers.push(("authorization", format!("Bearer {token}")));
            }
            if let Some(user) = &t.basic_auth_username {
                let password = match &t.basic_auth_password_file {
                    Some(file) => first_line(file, "alertmanager", &t.url)?,
                    None => String::new(),
                };
                headers.push((
                    "authorization",
                    format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
                ));
            }
            Ok(Manager { endpoint, headers })
        })
        .collect()
}

/// The webhook receivers of `targets`, checked (URL, secret of at least 16 bytes).
pub fn hooks(targets: &[WebhookTarget]) -> Result<Vec<Hook>, NotifyError> {
    targets
        .iter()
        .map(|t| {
            let endpoint =
                Endpoint::new(&t.url, &t.tls, Duration::from_secs(t.timeout_secs.max(1))).map_err(
                    |e| NotifyError::Target {
                        what: "webhook",
                        url: t.url.clone(),
                        message: e.to_string(),
                    },
                )?;
            let secret = first_line(&t.secret_file, "webhook", &t.url)?;
            if secret.len() < 16 {
                return Err(NotifyError::Target {
                    what: "webhook",
                    url: t.url.clone(),
                    message: "the secret must be at least 16 characters".into(),
                });
            }
            Ok(Hook {
                endpoint,
                receiver: t.receiver.clone(),
                key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
                max_attempts: t.max_attempts.max(1),
            })
        })
        .collect()
}

/// The notifier's targets, checked (files read, URLs parsed) before the collector starts.
pub struct Notifier {
    managers: Vec<Manager>,
    hooks: Vec<Hook>,
    external_url: String,
    resend: Duration,
}

impl Notifier {
    /// Checks and loads the targets.
    pub fn new(
        alertmanagers: &[AlertmanagerTarget],
        webhooks: &[WebhookTarget],
        external_url: String,
        resend_interval_secs: u64,
    ) -> Result<Self, NotifyError> {
        Ok(Notifier {
            managers: managers(alertmanagers)?,
            hooks: hooks(webhooks)?,
            external_url,
            resend: Duration::from_secs(resend_interval_secs.max(1)),
        })
    }

    /// Whether there is anyone to tell.
    pub fn has_targets(&self) -> bool {
        !self.managers.is_empty() || !self.hooks.is_empty()
    }
}

/// The signature header value of `body` at `unix_secs` with `key`.
pub fn signature(key: &ring::hmac::Key, unix_secs: i64, body: &[u8]) -> String {
    let mut message = format!("{unix_secs}.").into_bytes();
    message.extend_from_slice(body);
    let tag = ring::hmac::sign(key, &message);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_secs},v1={hex}")
}

/// An alert as Alertmanager API v2 takes it.
fn am_alert(state: &AlertState, ends_at_ms: i64, external_url: &str) -> Value {
    json!({
        "labels": state.labels,
        "annotations": state.annotations,
        "startsAt": rfc3339(state.active_since_unix_ms),
        "endsAt": rfc3339(ends_at_ms),
        "generatorURL": generator_url(external_url, &state.fingerprint),
    })
}

fn generator_url(external_url: &str, fingerprint: &str) -> String {
    format!("{external_url}/api/v1/alerts/{fingerprint}")
}

/// The Alertmanager webhook payload (version 4) for one alert.
fn webhook_payload(state: &AlertState, receiver: &str, external_url: &str) -> Value {
    let firing = state.state != super::State::Resolved;
    let status = if firing { "firing" } else { "resolved" };
    let ends_at = state
        .resolved_unix_ms
        .map_or("0001-01-01T00:00:00Z".to_owned(), rfc3339);
    let group_labels: BTreeMap<&str, &str> = state
        .labels
        .get("alertname")
        .map(|a| ("alertname", a.as_str()))
        .into_iter()
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={:?}}}/{}", state.labels.get("alertname").map_or("", String::as_str), state.fingerprint),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": state.labels,
        "commonAnnotations": state.annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": state.labels,
            "annotations": state.annotations,
            "startsAt": rfc3339(state.active_since_unix_ms),
            "endsAt": ends_at,
            "generatorURL": generator_url(external_url, &state.fingerprint),
            "fingerprint": state.fingerprint,
        }],
    })
}

/// Runs the notifier until `shutdown`: takes the analyzer's rounds from `rounds`.
pub async fn run(
    notifier: Notifier,
    store: StoreHandle,
    stats: Arc<CollectorStats>,
    mut rounds: mpsc::Receiver<Round>,
    mut shutdown: watch::Receiver<bool>,
) {
    let notifier = Arc::new(notifier);
    let mut firing: Vec<AlertState> = Vec::new();
    // Resolutions not yet taken by every Alertmanager: (state, taken by manager i).
    let mut resolutions: Vec<(AlertState, Vec<bool>)> = Vec::new();
    let mut outbox = Outbox::load(&store, &notifier);
    let mut resend = tokio::time::interval(notifier.resend);
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let push = tokio::select! {
            _ = shutdown.changed() => return,
            round = rounds.recv() => {
                let Some(round) = round else { return };
                firing = round.firing;
                let changed = !round.transitions.is_empty();
                for t in round.transitions {
                    let state = match t {
                        Transition::Fired(s) => s,
                        Transition::Resolved(s) => {
                            resolutions.push((s.clone(), vec![false; notifier.managers.len()]));
                            s
                        }
                    };
                    outbox.add(&store, &notifier, &state).await;
                }
                let _ = round.queued.send(());
                changed
            }
            _ = resend.tick() => true,
            _ = retry.tick() => {
                outbox.deliver_due(&store, &notifier, &stats).await;
                false
            }
        };
        if push && !notifier.managers.is_empty() {
            push_to_managers(&notifier, &stats, &firing, &mut resolutions).await;
        }
        outbox.deliver_due(&store, &notifier, &stats).await;
    }
}

async fn push_to_managers(
    notifier: &Notifier,
    stats: &CollectorStats,
    firing: &[AlertState],
    resolutions: &mut Vec<(AlertState, Vec<bool>)>,
) {
    let now = unix_ms();
    let lease = now + 4 * notifier.resend.as_millis() as i64;
    let day_ago = now - 86_400_000;
    resolutions.retain(|(s, taken)| {
        !taken.iter().all(|t| *t) && s.resolved_unix_ms.unwrap_or(now) > day_ago
    });
    // One Alertmanager after another (an HA pair or three): a down one costs at most its
    // timeout.
    for (i, manager) in notifier.managers.iter().enumerate() {
        let mut alerts: Vec<Value> = firing
            .iter()
            .map(|s| am_alert(s, lease, &notifier.external_url))
            .collect();
        alerts.extend(
            resolutions
                .iter()
                .filter(|(_, taken)| !taken[i])
                .map(|(s, _)| {
                    am_alert(s, s.resolved_unix_ms.unwrap_or(now), &notifier.external_url)
                }),
        );
        if alerts.is_empty() {
            continue;
        }
        let body = Bytes::from(serde_json::to_vec(&alerts).unwrap_or_default());
        let result = manager.endpoint.post_json(&manager.headers, body).await;
        if matches!(&result, Ok(a) if (200..300).contains(&a.status)) {
            CollectorStats::add(&stats.alertmanager_pushes, 1);
            debug!(
                url = manager.endpoint.url(),
                alerts = alerts.len(),
                "alerts pushed"
            );
            for (_, taken) in resolutions.iter_mut() {
                taken[i] = true;
            }
        } else {
            CollectorStats::add(&stats.alertmanager_push_errors, 1);
            warn!(url = manager.endpoint.url(), outcome = ?result, "pushing alerts to an Alertmanager failed");
        }
    }
}

/// The webhook outbox, mirrored in the store.
struct Outbox {
    entries: BTreeMap<u64, OutboxEntry>,
    next_id: u64,
}

/// Most entries kept; beyond, the oldest are dropped as dead letters.
const MAX_OUTBOX: usize = 10_000;

impl Outbox {
    fn load(store: &StoreHandle, notifier: &Notifier) -> Self {
        let stored = store
            .records(crate::store::RecordTable::WebhookOutbox)
            .unwrap_or_else(|e| {
                warn!(error = %e, "reading the webhook outbox failed; starting empty");
                Vec::new()
            });
        let entries: BTreeMap<u64, OutboxEntry> = stored
            .into_iter()
            .filter_map(|(id, bytes)| Some((id, serde_json::from_slice(&bytes).ok()?)))
            .filter(|(_, e): &(u64, OutboxEntry)| {
                notifier.hooks.iter().any(|h| h.endpoint.url() == e.url)
            })
            .collect();
        let next_id = entries.keys().next_back().map_or(1, |k| k + 1);
        Outbox { entries, next_id }
    }

    async fn add(&mut self, store: &StoreHandle, notifier: &Notifier, state: &AlertState) {
        let mut upserts = Vec::new();
        for hook in &notifier.hooks {
            let body = webhook_payload(state, &hook.receiver, &notifier.external_url).to_string();
            let entry = OutboxEntry {
                url: hook.endpoint.url().to_owned(),
                body,
                attempts: 0,
                next_attempt_unix_ms: 0,
            };
            let id = self.next_id;
            self.next_id += 1;
            if let Ok(bytes) = serde_json::to_vec(&entry) {
                upserts.push((id, bytes));
            }
            self.entries.insert(id, entry);
        }
        let mut removals = Vec::new();
        while self.entries.len() > MAX_OUTBOX {
            if let Some((id, _)) = self.entries.pop_first() {
                removals.push(id);
            }
        }
        if let Err(e) = store
            .save_records(crate::store::RecordTable::WebhookOutbox, upserts, removals)
            .await
        {
            warn!(error = %e, "storing webhook notifications failed");
        }
    }

    async fn deliver_due(
        &mut self,
        store: &StoreHandle,
        notifier: &Notifier,
        stats: &CollectorStats,
    ) {
        let now = unix_ms();
        let due: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.next_attempt_unix_ms <= now)
            .map(|(id, _)| *id)
            .take(100)
            .collect();
        if due.is_empty() {
            return;
        }
        let (mut upserts, mut removals) = (Vec::new(), Vec::new());
        for id in due {
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            let Some(hook) = notifier
                .hooks
                .iter()
                .find(|h| h.endpoint.url() == entry.url)
            else {
                self.entries.remove(&id);
                removals.push(id);
                continue;
            };
            let body = Bytes::from(entry.body.clone());
            let signed = signature(&hook.key, unix_ms().div_euclid(1000), &body);
            let result = hook
                .endpoint
                .post_json(&[("x-mailpulse-signature", signed)], body)
                .await;
            if matches!(&result, Ok(a) if (200..300).contains(&a.status)) {
                CollectorStats::add(&stats.webhook_deliveries, 1);
                self.entries.remove(&id);
                removals.push(id);
                continue;
            }
            CollectorStats::add(&stats.webhook_delivery_failures, 1);
            entry.attempts += 1;
            if entry.attempts >= hook.max_attempts {
                CollectorStats::add(&stats.webhook_dead_letters, 1);
                warn!(url = %entry.url, attempts = entry.attempts, outcome = ?result, "webhook notification given up");
                self.entries.remove(&id);
                removals.push(id);
                continue;
            }
            let backoff_ms = 1_000i64
                .saturating_mul(1i64 << entry.attempts.min(20))
                .min(300_000);
            entry.next_attempt_unix_ms = unix_ms() + backoff_ms;
            debug!(url = %entry.url, attempts = entry.attempts, outcome = ?result, "webhook delivery failed; retrying");
            if let Ok(bytes) = serde_json::to_vec(&*entry) {
                upserts.push((id, bytes));
            }
        }
        if let Err(e) = store
            .save_records(crate::store::RecordTable::WebhookOutbox, upserts, removals)
            .await
        {
            warn!(error = %e, "updating the webhook outbox failed");
        }
    }
}

/// Standard base64 with padding (for basic authentication).
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::State;

    fn state() -> AlertState {
        AlertState {
            fingerprint: "0123456789abcdef".into(),
            labels: [
                ("alertname", "bounce_ratio"),
                ("host", "mx1"),
                ("severity", "warning"),
            ]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect(),
            annotations: [("summary", "bounces")]
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            state: State::Firing,
            active_since_unix_ms: 1_728_292_800_000,
            firing_since_unix_ms: Some(1_728_292_800_000),
            resolved_unix_ms: None,
            last_window_unix_ms: 1_728_292_800_000,
            detectors: vec!["ratio".into()],
            windows: 1,
            peak_score: 0.99,
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_of_time_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let signed = signature(&key, 1_700_000_000, b"{}");
        assert!(signed.starts_with("t=1700000000,v1="), "{signed}");
        assert_ne!(
            signed,
            signature(&key, 1_700_000_000, b"{ }"),
            "the body is signed"
        );
        assert_ne!(
            signed,
            signature(&key, 1_700_000_001, b"{}"),
            "so is the time"
        );
    }

    #[test]
    fn payloads_have_alertmanagers_shape() {
        let firing = webhook_payload(&state(), "ops", "http://mp.test:9470");
        assert_eq!(firing["version"], "4");
        assert_eq!(firing["status"], "firing");
        assert_eq!(firing["receiver"], "ops");
        assert_eq!(firing["alerts"][0]["fingerprint"], "0123456789abcdef");
        assert_eq!(firing["alerts"][0]["startsAt"], "2024-10-07T09:20:00Z");
        assert_eq!(firing["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(firing["groupLabels"]["alertname"], "bounce_ratio");
        assert_eq!(firing["commonLabels"]["host"], "mx1");
        assert_eq!(
            firing["alerts"][0]["generatorURL"],
            "http://mp.test:9470/api/v1/alerts/0123456789abcdef"
        );
        let mut resolved = state();
        resolved.state = State::Resolved;
        resolved.resolved_unix_ms = Some(1_728_293_400_000);
        let payload = webhook_payload(&resolved, "ops", "http://mp.test:9470");
        assert_eq!(payload["status"], "resolved");
        assert_eq!(payload["alerts"][0]["endsAt"], "2024-10-07T09:30:00Z");
        let am = am_alert(&state(), 1_728_293_400_000, "http://mp.test:9470");
        assert_eq!(am["endsAt"], "2024-10-07T09:30:00Z");
        assert_eq!(am["labels"]["alertname"], "bounce_ratio");
    }

    #[test]
    fn targets_take_prometheus_like_tls_options() {
        let config: super::super::AlertingConfig = toml::from_str(
            r#"
            [[alertmanagers]]
            url = "https://am.example.net:9093"
            tls = { ca_path = "/ca.pem", cert_path = "/c.pem", key_path = "/c.key", server_name = "am" }
            [[webhooks]]
            url = "https://hook.example.net/"
            secret_file = "/s"
            tls = { ca_path = "/ca.pem" }
            "#,
        )
        .expect("parses");
        let tls = &config.alertmanagers[0].tls;
        assert_eq!(
            tls.cert_path.as_deref(),
            Some(std::path::Path::new("/c.pem"))
        );
        assert_eq!(tls.server_name.as_deref(), Some("am"));
        assert!(config.webhooks[0].tls.ca_path.is_some());
        let unknown = toml::from_str::<super::super::AlertingConfig>(
            "[[alertmanagers]]\nurl = \"https://x/\"\ntls = { insecure = true }\n",
        );
        assert!(unknown.is_err(), "unknown TLS keys are errors");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b""), "");
    }
}
