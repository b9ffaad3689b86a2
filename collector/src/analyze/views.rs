//! Detection views: which stored series are judged, rolled up how, by which detector.
//!
//! Agents ship fine-grained series (`messages_bounced{domain, relay, dsn_class, reason_class,
//! instance}`, `smtpd_connections{client_net}`, …): tens of thousands per host, most of them
//! sparse. Judging each one would drown an operator in coin flips and cost a model each. A
//! [`View`] instead names what an administrator watches — "bounces per host", "bounce ratio per
//! destination domain", "deferred queue per host" — as a sum of matching series grouped by a few
//! labels. The host is always part of the key (when a series has one), so every view series is
//! one host's.
//!
//! View kinds and their detectors ([`crate::detect::causal`]):
//! - [`ViewKind::Volume`]: the per-window sum (counters: events in the window; gauges: the
//!   level) against a causal seasonal band with level shifts, plus the small-count test for
//!   counters ([`VolumeDetector`](crate::detect::VolumeDetector)); fleet outliers on the hosts'
//!   band residuals.
//! - [`ViewKind::Ratio`]: failures / attempts per window with a beta-binomial test against the
//!   key's seasonal baseline (same hours of earlier days), so 3 of 20 and 300 of 2 000 weigh
//!   their evidence ([`RatioDetector`](crate::detect::RatioDetector)); fleet outliers on the
//!   hosts' rates.
//! - [`ViewKind::Forecast`]: a gauge extrapolated with intervals to a limit ("spool full in
//!   5 h", "deferred queue above 10 000 in 2 h";
//!   [`ForecastDetector`](crate::detect::ForecastDetector)).
//!
//! Selectors are written `metric` or `metric{label="value",label2="value2"}`.

use serde::Deserialize;

pub use crate::detect::Side;
use crate::detect::causal::DEFAULT_MIN_EXCESS;
use crate::model::SeriesDef;

/// One view of the configuration (`[[detect.views]]`).
///
/// ```toml
/// [[detect.views]]
/// name = "bounce_ratio"            # the exposed family and the alert's name
/// kind = "ratio"                   # volume | ratio | forecast
/// by = ["domain"]                  # labels kept besides host
/// failures = ["messages_bounced"]
/// total = ["messages_delivered", "messages_deferred", "messages_bounced"]
/// ```
/// Keys a kind does not use are errors, like unknown keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "ViewSpec")]
pub struct View {
    /// The exposed family: `mailpulse_<name>_{expected,lower,upper,anomaly_score}`, and the
    /// name anomalies and alerts carry. Letters, digits and `_`.
    pub name: String,
    /// Labels kept besides `host` (the others are summed over).
    pub by: Vec<String>,
    pub kind: ViewKind,
}

/// What a view computes, and how it is judged.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewKind {
    /// The sum of the matching series per window against a seasonal band.
    Volume {
        /// The series summed (one metric; counters or gauges, not mixed).
        series: Selector,
        /// Which side of the band is an anomaly (default above).
        alert_on: Side,
        /// Least distance beyond the band edge, in the series' units, for an anomaly (default
        /// 3; a band can be narrow at night: one message above a band of 0.4 is no incident).
        min_excess: f64,
    },
    /// `failures / total` per window, beta-binomial against the key's baseline.
    Ratio {
        /// Series counted as failures (part of the total only if listed there too).
        failures: Vec<Selector>,
        /// Series counted as attempts.
        total: Vec<Selector>,
        /// Fewest failures in the tested windows for an anomaly (default 5).
        min_failures: u64,
    },
    /// A gauge extrapolated to a limit: `limit`, or `limit_share` of a capacity gauge.
    Forecast {
        /// The gauge forecast.
        series: Selector,
        /// A fixed limit in the gauge's units.
        limit: Option<f64>,
        /// Or: a capacity gauge of the same key (e.g. `filesystem_size_bytes`) ...
        capacity: Option<Selector>,
        /// ... and the share of it that is the limit (default 0).
        limit_share: f64,
        /// Reaching the limit within this many seconds (pessimistic bound) is an anomaly.
        warn_within_secs: u64,
        /// Windows of history the forecast is fitted on (default 72: six hours at 5 minutes).
        history_windows: usize,
        /// Windows between two forecasts (default 3).
        every_windows: usize,
    },
}

/// A view as written in the configuration, before it is checked against its kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewSpec {
    name: String,
    kind: KindName,
    #[serde(default)]
    by: Vec<String>,
    series: Option<Selector>,
    alert_on: Option<Side>,
    min_excess: Option<f64>,
    failures: Option<Vec<Selector>>,
    total: Option<Vec<Selector>>,
    min_failures: Option<u64>,
    limit: Option<f64>,
    capacity: Option<Selector>,
    limit_share: Option<f64>,
    warn_within_secs: Option<u64>,
    history_windows: Option<usize>,
    every_windows: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindName {
    Volume,
    Ratio,
    Forecast,
}

impl TryFrom<ViewSpec> for View {
    type Error = String;

    fn try_from(spec: ViewSpec) -> Result<Self, String> {
        let name = spec.name.clone();
        let unused = |present: &[(&str, bool)]| -> Result<(), String> {
            match present.iter().find(|(_, p)| *p) {
                Some((key, _)) => Err(format!(
                    "view {name}: `{key}` is not a key of kind {:?}",
                    spec.kind
                )),
                None => Ok(()),
            }
        };
        let need = |key: &str| format!("view {name}: kind {:?} needs `{key}`", spec.kind);
        let kind = match spec.kind {
            KindName::Volume => {
                unused(&[
                    ("failures", spec.failures.is_some()),
                    ("total", spec.total.is_some()),
                    ("min_failures", spec.min_failures.is_some()),
                    ("limit", spec.limit.is_some()),
                    ("capacity", spec.capacity.is_some()),
                    ("limit_share", spec.limit_share.is_some()),
                    ("warn_within_secs", spec.warn_within_secs.is_some()),
                    ("history_windows", spec.history_windows.is_some()),
                    ("every_windows", spec.every_windows.is_some()),
                ])?;
                ViewKind::Volume {
                    series: spec.series.clone().ok_or_else(|| need("series"))?,
                    alert_on: spec.alert_on.unwrap_or_default(),
                    min_excess: spec.min_excess.unwrap_or(DEFAULT_MIN_EXCESS),
                }
            }
            KindName::Ratio => {
                unused(&[
                    ("series", spec.series.is_some()),
                    ("alert_on", spec.alert_on.is_some()),
                    ("min_excess", spec.min_excess.is_some()),
                    ("limit", spec.limit.is_some()),
                    ("capacity", spec.capacity.is_some()),
                    ("limit_share", spec.limit_share.is_some()),
                    ("warn_within_secs", spec.warn_within_secs.is_some()),
                    ("history_windows", spec.history_windows.is_some()),
                    ("every_windows", spec.every_windows.is_some()),
                ])?;
                ViewKind::Ratio {
                    failures: spec.failures.clone().ok_or_else(|| need("failures"))?,
                    total: spec.total.clone().ok_or_else(|| need("total"))?,
                    min_failures: spec.min_failures.unwrap_or(DEFAULT_MIN_FAILURES),
                }
            }
            KindName::Forecast => {
                unused(&[
                    ("alert_on", spec.alert_on.is_some()),
                    ("min_excess", spec.min_excess.is_some()),
                    ("failures", spec.failures.is_some()),
                    ("total", spec.total.is_some()),
                    ("min_failures", spec.min_failures.is_some()),
                ])?;
                ViewKind::Forecast {
                    series: spec.series.clone().ok_or_else(|| need("series"))?,
                    limit: spec.limit,
                    capacity: spec.capacity.clone(),
                    limit_share: spec.limit_share.unwrap_or(0.0),
                    warn_within_secs: spec
                        .warn_within_secs
                        .ok_or_else(|| need("warn_within_secs"))?,
                    history_windows: spec.history_windows.unwrap_or(DEFAULT_FORECAST_HISTORY),
                    every_windows: spec.every_windows.unwrap_or(DEFAULT_FORECAST_EVERY),
                }
            }
        };
        let view = View {
            name: spec.name,
            by: spec.by,
            kind,
        };
        view.validate()?;
        Ok(view)
    }
}

const DEFAULT_MIN_FAILURES: u64 = 5;
const DEFAULT_FORECAST_HISTORY: usize = 72;
const DEFAULT_FORECAST_EVERY: usize = 3;
/// Least unexpected drop of free spool space for an anomaly.
const SPOOL_MIN_EXCESS_BYTES: f64 = 256.0 * 1024.0 * 1024.0;

/// `metric{label="value",…}`: a metric name and exact label matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<(String, String)>,
}

impl Selector {
    /// Parses `metric` or `metric{a="x",b="y"}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (metric, rest) = match text.find('{') {
            Some(i) => (&text[..i], Some(&text[i..])),
            None => (text, None),
        };
        if metric.is_empty()
            || !metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "selector {text:?}: metric name must be [A-Za-z0-9_]+"
            ));
        }
        let mut matchers = Vec::new();
        if let Some(rest) = rest {
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("selector {text:?}: unbalanced braces"))?;
            for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, value) = part
                    .split_once('=')
                    .ok_or_else(|| format!("selector {text:?}: {part:?} is not label=\"value\""))?;
                let value = value
                    .trim()
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(|| {
                        format!("selector {text:?}: value of {name:?} must be quoted")
                    })?;
                let name = name.trim();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("selector {text:?}: bad label name {name:?}"));
                }
                matchers.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(Selector {
            metric: metric.to_owned(),
            matchers,
        })
    }

    /// Whether `def` is one of the selected series.
    pub fn matches(&self, def: &SeriesDef) -> bool {
        *def.metric == *self.metric
            && self
                .matchers
                .iter()
                .all(|(n, v)| def.label(n) == Some(v.as_str()))
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Selector::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl View {
    /// Checks what serde cannot: the name, non-empty selector lists, a limit for forecasts.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!("view name {:?} must be [A-Za-z0-9_]+", self.name));
        }
        if let ViewKind::Forecast {
            limit_share,
            every_windows,
            history_windows,
            ..
        } = &self.kind
            && (!limit_share.is_finite() || *every_windows == 0 || *history_windows < 8)
        {
            return Err(format!(
                "view {}: limit_share must be finite, every_windows ≥ 1, history_windows ≥ 8",
                self.name
            ));
        }
        if self.by.iter().any(|l| l == "host") {
            return Err(format!(
                "view {}: `host` is always kept; leave it out of `by`",
                self.name
            ));
        }
        match &self.kind {
            ViewKind::Ratio {
                failures, total, ..
            } if failures.is_empty() || total.is_empty() => Err(format!(
                "view {}: a ratio needs `failures` and `total`",
                self.name
            )),
            ViewKind::Forecast {
                limit, capacity, ..
            } if limit.is_none() == capacity.is_none() => Err(format!(
                "view {}: a forecast needs exactly one of `limit` and `capacity`",
                self.name
            )),
            _ => Ok(()),
        }
    }

    /// The roles `def` plays in this view (a series may be both a failure and part of the
    /// total), or nothing.
    pub fn roles(&self, def: &SeriesDef) -> Roles {
        let any = |list: &[Selector]| list.iter().any(|s| s.matches(def));
        match &self.kind {
            ViewKind::Volume { series, .. } => Roles {
                value: series.matches(def),
                ..Roles::default()
            },
            ViewKind::Ratio {
                failures, total, ..
            } => Roles {
                failures: any(failures),
                total: any(total),
                ..Roles::default()
            },
            ViewKind::Forecast {
                series, capacity, ..
            } => Roles {
                value: series.matches(def),
                capacity: capacity.as_ref().is_some_and(|c| c.matches(def)),
                ..Roles::default()
            },
        }
    }

    /// The key of `def` in this view: its `host` then the `by` labels (missing ones empty).
    pub fn key(&self, def: &SeriesDef) -> Box<[Box<str>]> {
        std::iter::once("host")
            .chain(self.by.iter().map(String::as_str))
            .map(|name| Box::from(def.label(name).unwrap_or("")))
            .collect()
    }

    /// The label names of a key, in key order.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once("host").chain(self.by.iter().map(String::as_str))
    }

    /// Whether a key that first appears on a known host has counted 0 events until then. True
    /// for keys of a closed set (a host's totals, a reason class, an instance: a reason for
    /// deferrals that was never seen before is news); false when the view is kept by a label of
    /// [`OPEN_ENDED_LABELS`]: a new user, domain or client network is an everyday event, and its
    /// first messages are not a rise from zero.
    pub fn new_keys_start_at_zero(&self) -> bool {
        !self
            .by
            .iter()
            .any(|b| OPEN_ENDED_LABELS.contains(&b.as_str()))
    }
}

/// Labels whose values keep appearing in normal operation (see
/// [`View::new_keys_start_at_zero`]).
pub const OPEN_ENDED_LABELS: &[&str] = &[
    "user",
    "sasl_user",
    "sender",
    "domain",
    "relay",
    "client_net",
    "client",
    "path",
];

/// What a series contributes to a view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    pub value: bool,
    pub failures: bool,
    pub total: bool,
    pub capacity: bool,
}

impl Roles {
    /// Whether the series contributes at all.
    pub fn any(self) -> bool {
        self.value || self.failures || self.total || self.capacity
    }
}

/// The views a collector runs when its configuration names none: what a mail administrator
/// watches on every Postfix host.
pub fn default_views() -> Vec<View> {
    let s = |t: &str| Selector::parse(t).expect("built-in selector");
    let volume = |name: &str, series: &str, by: &[&str], alert_on: Side| View {
        name: name.into(),
        by: by.iter().map(|b| (*b).into()).collect(),
        kind: ViewKind::Volume {
            series: s(series),
            alert_on,
            min_excess: DEFAULT_MIN_EXCESS,
        },
    };
    let attempts = || {
        vec![
            s("messages_delivered"),
            s("messages_deferred"),
            s("messages_bounced"),
        ]
    };
    let ratio = |name: &str, failures: &str, by: &[&str]| View {
        name: name.into(),
        by: by.iter().map(|b| (*b).into()).collect(),
        kind: ViewKind::Ratio {
            failures: vec![s(failures)],
            total: attempts(),
            min_failures: DEFAULT_MIN_FAILURES,
        },
    };
    let user_attempts = || {
        ["delivered", "deferred", "bounced"]
            .map(|e| s(&format!("sasl_user_messages{{event=\"{e}\"}}")))
            .to_vec()
    };
    vec![
        volume(
            "messages_received",
            "messages_received",
            &["instance"],
            Side::Both,
        ),
        // More deliveries than usual is a queue catching up; fewer is the news.
        volume("messages_delivered", "messages_delivered", &[], Side::Below),
        volume("messages_deferred", "messages_deferred", &[], Side::Above),
        volume(
            "messages_deferred",
            "messages_deferred",
            &["reason_class"],
            Side::Above,
        ),
        volume("messages_bounced", "messages_bounced", &[], Side::Above),
        volume(
            "messages_bounced",
            "messages_bounced",
            &["reason_class"],
            Side::Above,
        ),
        volume("messages_rejected", "messages_rejected", &[], Side::Above),
        volume("smtpd_connections", "smtpd_connections", &[], Side::Above),
        volume(
            "postscreen_connections",
            "postscreen_connections",
            &[],
            Side::Above,
        ),
        volume("sasl_auth_failures", "sasl_auth_failures", &[], Side::Above),
        volume(
            "sasl_user_messages",
            "sasl_user_messages{event=\"received\"}",
            &[],
            Side::Above,
        ),
        volume(
            "sasl_user_messages",
            "sasl_user_messages{event=\"received\"}",
            &["user"],
            Side::Above,
        ),
        // Free space falling faster than its daily pattern: something writes into the spool,
        // hours before the forecast's "full in 6 h" holds.
        View {
            name: "filesystem_avail_bytes".into(),
            by: vec!["path".into()],
            kind: ViewKind::Volume {
                series: s("filesystem_avail_bytes"),
                alert_on: Side::Below,
                min_excess: SPOOL_MIN_EXCESS_BYTES,
            },
        },
        volume(
            "queue_messages",
            "queue_messages{queue=\"deferred\"}",
            &[],
            Side::Above,
        ),
        // Feedback-loop complaints (ARF): per envelope sender, the one a playbook can hold…
        volume("complaints", "complaints", &["sender"], Side::Above),
        // … and their share of what the host delivered, as a small-count ratio.
        View {
            name: "complaint_ratio".into(),
            by: vec![],
            kind: ViewKind::Ratio {
                failures: vec![s("complaints")],
                total: vec![s("messages_delivered")],
                min_failures: DEFAULT_MIN_FAILURES,
            },
        },
        ratio("bounce_ratio", "messages_bounced", &["domain"]),
        ratio("deferral_ratio", "messages_deferred", &["domain"]),
        ratio("deferral_ratio", "messages_deferred", &["relay"]),
        View {
            name: "sasl_user_failure_ratio".into(),
            by: vec!["user".into()],
            kind: ViewKind::Ratio {
                failures: vec![
                    s("sasl_user_messages{event=\"deferred\"}"),
                    s("sasl_user_messages{event=\"bounced\"}"),
                ],
                total: user_attempts(),
                min_failures: DEFAULT_MIN_FAILURES,
            },
        },
        View {
            name: "spool_full".into(),
            by: vec!["path".into()],
            kind: ViewKind::Forecast {
                series: s("filesystem_avail_bytes"),
                limit: None,
                capacity: Some(s("filesystem_size_bytes")),
                limit_share: 0.0,
                warn_within_secs: 6 * 3600,
                history_windows: DEFAULT_FORECAST_HISTORY,
                every_windows: DEFAULT_FORECAST_EVERY,
            },
        },
        View {
            name: "deferred_queue_limit".into(),
            by: vec![],
            kind: ViewKind::Forecast {
                series: s("queue_messages{queue=\"deferred\"}"),
                limit: Some(10_000.0),
                capacity: None,
                limit_share: 0.0,
                warn_within_secs: 2 * 3600,
                history_windows: DEFAULT_FORECAST_HISTORY,
                every_windows: DEFAULT_FORECAST_EVERY,
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricKind;

    fn def(metric: &str, labels: &[(&str, &str)]) -> SeriesDef {
        let mut labels: Vec<(Box<str>, Box<str>)> = labels
            .iter()
            .map(|(n, v)| (Box::from(*n), Box::from(*v)))
            .collect();
        labels.sort();
        SeriesDef {
            metric: metric.into(),
            labels: labels.into(),
            kind: MetricKind::Counter,
            bounds: Box::new([]),
        }
    }

    #[test]
    fn selectors_parse_and_match() {
        let s = Selector::parse(r#"queue_messages{queue="deferred", instance="postfix"}"#).unwrap();
        assert_eq!(s.metric, "queue_messages");
        assert_eq!(s.matchers.len(), 2);
        assert!(s.matches(&def(
            "queue_messages",
            &[
                ("queue", "deferred"),
                ("instance", "postfix"),
                ("host", "mx1")
            ]
        )));
        assert!(!s.matches(&def("queue_messages", &[("queue", "active")])));
        assert!(!s.matches(&def("queue_bytes", &[("queue", "deferred")])));
        for bad in [
            "",
            "a b",
            "m{x=1}",
            "m{x=\"1\"",
            "m{=\"1\"}",
            "m{x}",
            "{x=\"1\"}",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_start_with_the_host() {
        let v = &default_views()[3];
        assert_eq!(v.by, ["reason_class"]);
        let d = def(
            "messages_deferred",
            &[
                ("host", "mx1"),
                ("reason_class", "dns"),
                ("domain", "a.test"),
            ],
        );
        assert_eq!(&*v.key(&d), &[Box::from("mx1"), Box::from("dns")]);
        assert!(v.roles(&d).value);
    }

    #[test]
    fn default_views_are_valid() {
        for v in default_views() {
            v.validate().unwrap();
        }
    }

    #[test]
    fn views_deserialize_from_toml() {
        #[derive(Deserialize)]
        struct Doc {
            views: Vec<View>,
        }
        let doc: Doc = toml::from_str(
            r#"
            [[views]]
            name = "bounce_ratio"
            kind = "ratio"
            by = ["domain"]
            failures = ["messages_bounced"]
            total = ["messages_delivered", "messages_bounced"]

            [[views]]
            name = "spool_full"
            kind = "forecast"
            by = ["path"]
            series = "filesystem_avail_bytes"
            capacity = "filesystem_size_bytes"
            warn_within_secs = 21600
            "#,
        )
        .unwrap();
        assert_eq!(doc.views.len(), 2);
        doc.views.iter().for_each(|v| v.validate().unwrap());
        let bad: Result<Doc, _> = toml::from_str(
            r#"
            [[views]]
            name = "x"
            kind = "volume"
            series = "m"
            typo = 1
            "#,
        );
        assert!(bad.is_err());
    }
}
