//! The audit log: every request, approval, refusal, result and revert, with who, what, when and
//! which alert — in the store (`audit_log`, the newest 100 000 kept) and, when configured, as
//! JSON Lines appended to a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::{RecordTable, StoreHandle, unix_ms};

/// Longest `detail` kept (bytes); an agent's output beyond it is cut, and says so.
pub const MAX_DETAIL_BYTES: usize = 32 * 1024;

/// One audit entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339 UTC, and Unix ms.
    pub at: String,
    pub at_unix_ms: i64,
    /// `requested`, `awaiting_approval`, `approved`, `rejected`, `expired`, `sent`, `result`,
    /// `refused`, `undeliverable`, `timeout`, `cooldown`, `rate_limited`, `too_many_hosts`,
    /// `killed`, `revert_scheduled`, `kill_switch`.
    pub event: String,
    /// Who: `playbook:<name>`, `api:<token name>`, `agent:<id>`, `collector`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub playbook: String,
    /// The trigger alert: name and fingerprint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alertname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default)]
    pub dry_run: bool,
    /// The agent's status for `result` (`ok`, `planned`, `failed`, `refused`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Why, or the agent's output (its exact argv, exit codes, output).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Writes audit entries.
#[derive(Debug)]
pub struct Audit {
    store: StoreHandle,
    file: Option<PathBuf>,
    next: Mutex<u64>,
    /// Outcomes counted since start: (kind, mode, result) → entries.
    counts: Mutex<BTreeMap<(String, String, String), u64>>,
}

/// The outcomes `mailpulse_remediation_actions_total` counts (`result` entries by the agent's
/// status, the others by their event); any other status counts as `other`.
const RESULTS: &[&str] = &[
    "ok",
    "planned",
    "failed",
    "refused",
    "undeliverable",
    "timeout",
    "cooldown",
    "rate_limited",
    "too_many_hosts",
    "killed",
    "expired",
    "rejected",
    "notified",
];

impl Audit {
    pub fn new(store: StoreHandle, file: Option<PathBuf>) -> Self {
        let next = store
            .newest(RecordTable::AuditLog, 1)
            .ok()
            .and_then(|n| n.first().map(|(seq, _)| seq + 1))
            .unwrap_or(1);
        Audit {
            store,
            file,
            next: Mutex::new(next),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records `entry` (its `seq` and time are set here); durable in the store when it returns.
    pub async fn record(&self, mut entry: AuditEntry) -> AuditEntry {
        {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            entry.seq = *next;
            *next += 1;
        }
        entry.at_unix_ms = unix_ms();
        entry.at = crate::alerting::content::rfc3339(entry.at_unix_ms);
        if entry.detail.len() > MAX_DETAIL_BYTES {
            let mut cut = MAX_DETAIL_BYTES;
            while !entry.detail.is_char_boundary(cut) {
                cut -= 1;
            }
            entry.detail.truncate(cut);
            entry.detail.push_str(" …(cut)");
        }
        self.count(&entry);
        let json = serde_json::to_vec(&entry).unwrap_or_default();
        if let Err(e) = self
            .store
            .save_records(
                RecordTable::AuditLog,
                vec![(entry.seq, json.clone())],
                Vec::new(),
            )
            .await
        {
            tracing::warn!(error = %e, "storing an audit entry failed");
        }
        if let Some(path) = &self.file {
            let line = [json.as_slice(), b"\n"].concat();
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(&line));
            if let Err(e) = written {
                tracing::warn!(file = %path.display(), error = %e, "appending to the audit file failed");
            }
        }
        tracing::info!(seq = entry.seq, event = %entry.event, actor = %entry.actor, kind = %entry.kind, agent = %entry.agent, "audit");
        entry
    }

    fn count(&self, entry: &AuditEntry) {
        let outcome = match entry.event.as_str() {
            "result" => entry.status.as_str(),
            "sent" | "awaiting_approval" | "approved" | "revert" | "revert_scheduled"
            | "kill_switch" => return,
            other => other,
        };
        let outcome = if RESULTS.contains(&outcome) {
            outcome
        } else {
            "other"
        };
        let kind = mailpulse_proto::actions::ActionKind::parse(&entry.kind)
            .map_or(if entry.kind == "notify" { "notify" } else { "" }, |k| {
                k.as_str()
            });
        let mode = match entry.mode.as_str() {
            m @ ("dry_run" | "approve" | "auto") => m,
            _ => "",
        };
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((kind.to_owned(), mode.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    /// Outcomes counted since start: ((kind, mode, result), count), sorted.
    pub fn counts(&self) -> Vec<((String, String, String), u64)> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The newest `limit` entries, newest first.
    pub fn newest(&self, limit: usize) -> Vec<AuditEntry> {
        self.store
            .newest(RecordTable::AuditLog, limit)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
            .collect()
    }
}
