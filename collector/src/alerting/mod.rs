//! Alerts that reach people: rules ([`rules`]) decide the severity and `for` duration of the
//! analyzer's alerts; the lifecycle ([`lifecycle`]) takes them pending → firing → resolved,
//! keyed by Alertmanager's fingerprint of their labels, and keeps that state in the store so
//! a restarted collector does not announce again what it already announced; [`content`] writes
//! the labels and annotations.

pub mod content;
pub mod http;
pub mod lifecycle;
pub mod notify;
pub mod recommend;
pub mod rules;
pub mod runbooks;

use serde::Deserialize;

pub use lifecycle::{AlertState, Lifecycle, State, Transition, Update, fingerprint};
pub use rules::{Decision, RuleSpec, Rules, Severity, UnknownView, builtin_rule, check_views};

use crate::store::StoreHandle;

/// The `[alerting]` section of the collector configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// The collector's address as people reach it (`generatorURL`, runbook links); default:
    /// `http://` and the HTTP listen address.
    pub external_url: Option<String>,
    /// Where the runbooks are; default: the collector's own `/runbooks` (they ship with it).
    pub runbook_base_url: Option<String>,
    /// Rules, first match wins; alerts no rule matches get their view's built-in rule.
    pub rules: Vec<RuleSpec>,
    /// Alertmanagers that get every alert (all of them, as Prometheus does for an HA pair).
    pub alertmanagers: Vec<notify::AlertmanagerTarget>,
    /// Receivers of the Alertmanager webhook payload, signed.
    pub webhooks: Vec<notify::WebhookTarget>,
    /// Seconds between two pushes of the firing alerts to the Alertmanagers (default 60);
    /// `endsAt` is four of them ahead.
    pub resend_interval_secs: u64,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            external_url: None,
            runbook_base_url: None,
            rules: Vec::new(),
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            resend_interval_secs: 60,
        }
    }
}

impl AlertingConfig {
    /// The external URL, given the HTTP listen address.
    pub fn external_url(&self, http_listen_addr: std::net::SocketAddr) -> String {
        self.external_url
            .clone()
            .unwrap_or_else(|| format!("http://{http_listen_addr}"))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The runbook base URL, given the HTTP listen address.
    pub fn runbook_base_url(&self, http_listen_addr: std::net::SocketAddr) -> String {
        self.runbook_base_url
            .clone()
            .unwrap_or_else(|| format!("{}/runbooks", self.external_url(http_listen_addr)))
    }
}

/// Reads the lifecycle states the store kept (a state that does not decode is skipped and
/// deleted at the next change of its fingerprint).
pub fn restore(store: &StoreHandle) -> Vec<AlertState> {
    match store.alert_states() {
        Ok(states) => states
            .into_iter()
            .filter_map(|(fingerprint, bytes)| {
                let state = serde_json::from_slice::<AlertState>(&bytes);
                if state.is_err() {
                    tracing::warn!(%fingerprint, "stored alert state does not decode; ignored");
                }
                state.ok()
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading stored alert states failed; starting without");
            Vec::new()
        }
    }
}

/// Stores what `update` changed.
pub async fn persist(store: &StoreHandle, update: &Update) {
    let upserts = update
        .stored
        .iter()
        .filter_map(|s| {
            serde_json::to_vec(s)
                .ok()
                .map(|bytes| (s.fingerprint.clone(), bytes))
        })
        .collect();
    if let Err(e) = store
        .save_alert_states(upserts, update.removed.clone())
        .await
    {
        tracing::warn!(error = %e, "storing alert states failed");
    }
}
