//! redb table layout (schema version [`SCHEMA_VERSION`]).

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::model::{MetricKind, SeriesDef};

/// Bumped on any incompatible change of a table or an encoding.
pub const SCHEMA_VERSION: u64 = 1;

/// `schema_version`, `created_unix_ms`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// agent_id → JSON [`crate::model::AgentRecord`] (registry, dedupe high-water mark).
pub const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
/// series id → JSON [`StoredSeries`]. Ids of expired series are missing (and reused later).
pub const SERIES: TableDefinition<u32, &[u8]> = TableDefinition::new("series");
/// series id / [`CHUNK_SERIES`] → per series `u32` id + `i64` last write (Unix ms: the later of
/// when a sample was applied and its window's start), sorted by id: what expiry compares with
/// the retention. Written with the totals at each fold.
pub const SERIES_LAST_WRITTEN: TableDefinition<u32, &[u8]> =
    TableDefinition::new("series_last_written");
/// series id / [`CHUNK_SERIES`] → the cumulative totals of those series as of the last fold
/// (point chunk encoding: one value per 1024 series, so a fold writes tens of values, not
/// tens of thousands).
pub const TOTALS: TableDefinition<u32, &[u8]> = TableDefinition::new("totals");
/// (window start Unix ms, series id / [`CHUNK_SERIES`]) → point chunk: the aggregates of up
/// to 1024 series in one stored window, in one value (one B-tree write per chunk, not per point).
pub const POINTS: TableDefinition<(i64, u32), &[u8]> = TableDefinition::new("points");
/// Write-ahead log of applied batches not folded into TOTALS/POINTS yet: fold id → record.
pub const APPLIED_BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("applied_batches");
/// The alert lifecycle: fingerprint → JSON state of an active alert.
pub const ALERT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_state");
/// Webhook notifications not yet delivered: id → JSON entry (target, body, attempts).
pub const WEBHOOK_OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_outbox");
/// The remediation audit log (sequence → JSON entry).
pub const AUDIT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
/// Remediation actions in progress: waiting for an approval, a result or a revert (id → JSON).
pub const REMEDIATION: TableDefinition<u64, &[u8]> = TableDefinition::new("remediation");

/// `kind \0 target \0 server` → JSON [`crate::model::DnsRecordState`]: latest probe answer.
pub const DNS_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("dns_records");
/// `kind \0 target \0 server` → `i64` when the collector last applied a probe of it (Unix ms,
/// little-endian) + the id of the agent whose probe created it: what the per-agent cap counts
/// and what retention prunes, without reading the answers.
pub const DNS_RECORD_META: TableDefinition<&str, &[u8]> = TableDefinition::new("dns_record_meta");
/// change id → JSON [`crate::model::DnsChange`].
pub const DNS_CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("dns_changes");
/// (target with its labels reversed and a trailing dot — `com.example._dmarc.` —, change id) →
/// nothing: the index `?target=` range-scans (a name and every name below it share a prefix).
pub const DNS_CHANGES_BY_TARGET: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("dns_changes_by_target");

/// anomaly id → JSON [`crate::model::Anomaly`].
pub const ANOMALIES: TableDefinition<u64, &[u8]> = TableDefinition::new("anomalies");

/// Series per point chunk.
pub const CHUNK_SERIES: u32 = 1024;

/// How a series definition is stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredSeries {
    metric: String,
    labels: Vec<(String, String)>,
    kind: MetricKind,
    #[serde(default)]
    bounds: Vec<f64>,
    /// The owner whose quota it counts against; absent in older stores (then its `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// An `other` series (folded label sets).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    other: bool,
}

/// A decoded [`StoredSeries`].
#[derive(Debug)]
pub struct RestoredSeries {
    /// The definition.
    pub def: SeriesDef,
    /// Whose quota it counts against.
    pub owner: String,
    /// Whether it is an `other` series.
    pub other: bool,
}

impl StoredSeries {
    /// Encodes `def`, created by `owner`.
    pub fn encode(def: &SeriesDef, owner: &str, other: bool) -> Vec<u8> {
        let stored = StoredSeries {
            owner: Some(owner.to_string()),
            other,
            metric: def.metric.to_string(),
            labels: def
                .labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            kind: def.kind,
            bounds: def.bounds.to_vec(),
        };
        serde_json::to_vec(&stored).expect("series definitions serialize")
    }

    /// Decodes a stored definition.
    pub fn decode(bytes: &[u8]) -> Result<RestoredSeries, serde_json::Error> {
        let stored: StoredSeries = serde_json::from_slice(bytes)?;
        let def = SeriesDef {
            metric: stored.metric.into(),
            labels: stored
                .labels
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            kind: stored.kind,
            bounds: stored.bounds.into(),
        };
        let owner = stored
            .owner
            .unwrap_or_else(|| def.label("host").unwrap_or_default().to_string());
        Ok(RestoredSeries {
            def,
            owner,
            other: stored.other,
        })
    }
}
