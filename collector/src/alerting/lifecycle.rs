//! The lifecycle of an alert: pending → firing → resolved, keyed by the fingerprint of its
//! label set (as Alertmanager computes it), so a restarted collector recognises what it had
//! already told people and does not tell them again.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::content;
use super::rules::Rules;
use crate::analyze::Alert;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Active, but not yet for its rule's `for_secs`.
    Pending,
    /// Active long enough: sent.
    Firing,
    /// Its rule disables it: listed, never sent.
    Silenced,
    /// No longer active.
    Resolved,
}

impl State {
    /// Its name as the API and `/metrics` write it (`firing`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Silenced => "silenced",
            State::Resolved => "resolved",
        }
    }
}

/// One alert as the lifecycle keeps (and stores) it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AlertState {
    /// [`fingerprint`] of `labels`: 16 hex digits.
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    /// Start of the first anomalous window (Unix ms): `startsAt`.
    pub active_since_unix_ms: i64,
    /// When it started firing.
    pub firing_since_unix_ms: Option<i64>,
    /// When it resolved: `endsAt`.
    pub resolved_unix_ms: Option<i64>,
    /// Start of the latest anomalous window.
    pub last_window_unix_ms: i64,
    /// Detectors that fired.
    pub detectors: Vec<String>,
    /// Anomalous windows.
    pub windows: u32,
    /// Highest score seen.
    pub peak_score: f64,
}

/// What people must be told.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The alert started firing.
    Fired(AlertState),
    /// A firing alert resolved.
    Resolved(AlertState),
}

/// What one update changed.
#[derive(Debug, Default)]
pub struct Update {
    /// States to store (new or changed).
    pub stored: Vec<AlertState>,
    /// Fingerprints to delete from the store.
    pub removed: Vec<String>,
    /// Notifications due.
    pub transitions: Vec<Transition>,
}

/// Resolved alerts kept for the API.
const RESOLVED_KEPT: usize = 1_000;

/// The alerts of the collector (see the module docs).
#[derive(Debug)]
pub struct Lifecycle {
    rules: Rules,
    runbook_base_url: String,
    active: BTreeMap<String, AlertState>,
    resolved: VecDeque<AlertState>,
}

impl Lifecycle {
    /// A lifecycle deciding with `rules`, starting from `restored` states (what the store kept:
    /// a firing alert stays firing without a new notification); runbook links under
    /// `runbook_base_url`.
    pub fn new(rules: Rules, runbook_base_url: String, restored: Vec<AlertState>) -> Self {
        let active = restored
            .into_iter()
            .filter(|s| s.state != State::Resolved)
            .map(|s| (s.fingerprint.clone(), s))
            .collect();
        Lifecycle {
            rules,
            runbook_base_url,
            active,
            resolved: VecDeque::new(),
        }
    }

    /// Takes the analyzer's open alerts as of `now_ms` (the end of the latest window judged);
    /// returns what to store and whom to tell.
    pub fn update(&mut self, now_ms: i64, open: &[Alert]) -> Update {
        let mut update = Update::default();
        let mut seen = std::collections::BTreeSet::new();
        for alert in open {
            let decision = self.rules.decide(alert);
            let labels = content::labels(alert, decision.severity);
            let fingerprint = fingerprint(&labels);
            if !seen.insert(fingerprint.clone()) {
                continue;
            }
            let annotations = content::annotations(alert, &self.runbook_base_url);
            let due = alert.first_window_unix_ms + (decision.for_secs as i64).saturating_mul(1000);
            let state = self
                .active
                .entry(fingerprint.clone())
                .or_insert_with(|| AlertState {
                    fingerprint: fingerprint.clone(),
                    labels: labels.clone(),
                    annotations: BTreeMap::new(),
                    state: State::Pending,
                    active_since_unix_ms: alert.first_window_unix_ms,
                    firing_since_unix_ms: None,
                    resolved_unix_ms: None,
                    last_window_unix_ms: alert.last_window_unix_ms,
                    detectors: Vec::new(),
                    windows: 0,
                    peak_score: 0.0,
                });
            let before = state.clone();
            state.annotations = annotations;
            state.last_window_unix_ms = alert.last_window_unix_ms;
            state.detectors.clone_from(&alert.detectors);
            state.windows = alert.windows;
            state.peak_score = alert.peak_score;
            if !decision.enabled {
                state.state = State::Silenced;
            } else if state.state != State::Firing && now_ms >= due {
                state.state = State::Firing;
                state.firing_since_unix_ms = Some(now_ms);
                update.transitions.push(Transition::Fired(state.clone()));
            } else if state.state == State::Silenced {
                state.state = State::Pending;
            }
            if *state != before {
                update.stored.push(state.clone());
            }
        }
        let gone: Vec<String> = self
            .active
            .keys()
            .filter(|f| !seen.contains(*f))
            .cloned()
            .collect();
        for fingerprint in gone {
            let Some(mut state) = self.active.remove(&fingerprint) else {
                continue;
            };
            update.removed.push(fingerprint);
            let was_firing = state.state == State::Firing;
            state.state = State::Resolved;
            state.resolved_unix_ms = Some(now_ms);
            if was_firing {
                update.transitions.push(Transition::Resolved(state.clone()));
            }
            self.resolved.push_back(state);
            while self.resolved.len() > RESOLVED_KEPT {
                self.resolved.pop_front();
            }
        }
        update
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<AlertState> {
        self.active
            .values()
            .filter(|s| s.state == State::Firing)
            .cloned()
            .collect()
    }

    /// Active alerts (firing first, then pending and silenced; each by fingerprint), then
    /// the most recently resolved ones, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Vec<AlertState> {
        let rank = |s: &AlertState| match s.state {
            State::Firing => 0,
            State::Pending => 1,
            State::Silenced => 2,
            State::Resolved => 3,
        };
        let mut active: Vec<&AlertState> = self.active.values().collect();
        active.sort_by_key(|s| rank(s));
        active
            .into_iter()
            .chain(self.resolved.iter().rev())
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Alertmanager's fingerprint of a label set: FNV-1a (64 bit) over the labels sorted by name,
/// each as name, 0xff, value, 0xff; 16 lowercase hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        eat(name.as_bytes());
        eat(&[0xff]);
        eat(value.as_bytes());
        eat(&[0xff]);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::rules::RuleSpec;
    use crate::analyze::AlertFigures;

    #[test]
    fn state_names_are_the_serialized_ones() {
        for state in [
            State::Pending,
            State::Firing,
            State::Silenced,
            State::Resolved,
        ] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.as_str())
            );
        }
    }

    fn alert(name: &str, host: &str, first_ms: i64, last_ms: i64) -> Alert {
        Alert {
            name: name.into(),
            labels: vec![
                ("domain".into(), "gmail.com".into()),
                ("host".into(), host.into()),
            ],
            detectors: vec!["ratio".into()],
            first_window_unix_ms: first_ms,
            last_window_unix_ms: last_ms,
            resolved_unix_ms: None,
            windows: 1,
            peak_score: 0.99,
            peak_detail: "ratio test".into(),
            last: AlertFigures {
                window_secs: 300,
                observed: 0.4,
                expected: 0.01,
                lower: 0.0,
                upper: 0.03,
                direction: "above".into(),
                score: 0.99,
            },
            advice: None,
        }
    }

    fn lifecycle(rules: &str, restored: Vec<AlertState>) -> Lifecycle {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            rules: Vec<RuleSpec>,
        }
        let rules = toml::from_str::<File>(rules).expect("rules").rules;
        Lifecycle::new(
            Rules::new(rules),
            "http://mp.test/runbooks".into(),
            restored,
        )
    }

    const MIN: i64 = 60_000;

    #[test]
    fn pending_then_firing_after_for_then_resolved_once() {
        let mut l = lifecycle(
            "[[rules]]\nview = \"bounce_ratio\"\nfor_secs = 600\n",
            Vec::new(),
        );
        let a = alert("bounce_ratio", "mx1", 0, 0);
        let u = l.update(5 * MIN, std::slice::from_ref(&a));
        assert!(u.transitions.is_empty());
        assert_eq!(u.stored[0].state, State::Pending);
        let u = l.update(10 * MIN, &[alert("bounce_ratio", "mx1", 0, 5 * MIN)]);
        let [Transition::Fired(fired)] = u.transitions.as_slice() else {
            panic!("{:?}", u.transitions)
        };
        assert_eq!(fired.labels["alertname"], "bounce_ratio");
        assert_eq!(fired.labels["severity"], "warning");
        assert_eq!(fired.labels["domain"], "gmail.com");
        assert_eq!(
            fired.annotations["runbook_url"],
            "http://mp.test/runbooks/bounce_ratio.md"
        );
        // Still active: nothing new to tell.
        assert!(
            l.update(15 * MIN, std::slice::from_ref(&a))
                .transitions
                .is_empty()
        );
        let u = l.update(20 * MIN, &[]);
        assert!(
            matches!(u.transitions.as_slice(), [Transition::Resolved(s)] if s.resolved_unix_ms == Some(20 * MIN))
        );
        assert_eq!(u.removed, std::slice::from_ref(&fired.fingerprint));
        assert_eq!(l.alerts(10)[0].state, State::Resolved);
        // A pending alert that ends is never told.
        let mut l = lifecycle(
            "[[rules]]\nview = \"bounce_ratio\"\nfor_secs = 600\n",
            Vec::new(),
        );
        l.update(0, &[a]);
        assert!(l.update(MIN, &[]).transitions.is_empty());
    }

    #[test]
    fn a_restored_firing_alert_is_not_told_again() {
        let mut first = lifecycle("", Vec::new());
        let a = alert("bounce_ratio", "mx1", 0, 0);
        let u = first.update(MIN, std::slice::from_ref(&a));
        assert_eq!(u.transitions.len(), 1, "fires at once by default");
        let stored = u.stored;
        let mut second = lifecycle("", stored);
        assert!(second.update(2 * MIN, &[a]).transitions.is_empty());
        assert_eq!(
            second.update(3 * MIN, &[]).transitions.len(),
            1,
            "its resolution is"
        );
    }

    #[test]
    fn disabled_rules_silence_and_fingerprints_follow_labels() {
        let mut l = lifecycle(
            "[[rules]]\nview = \"bounce_ratio\"\nmatchers = { host = \"mx2\" }\nenabled = false\n",
            Vec::new(),
        );
        let u = l.update(
            MIN,
            &[
                alert("bounce_ratio", "mx1", 0, 0),
                alert("bounce_ratio", "mx2", 0, 0),
            ],
        );
        assert_eq!(u.transitions.len(), 1);
        let states: Vec<State> = l.alerts(10).iter().map(|s| s.state).collect();
        assert_eq!(states, [State::Firing, State::Silenced]);
        let fps: Vec<String> = l.alerts(10).into_iter().map(|s| s.fingerprint).collect();
        assert_ne!(fps[0], fps[1]);
    }

    #[test]
    fn fingerprints_hash_the_sorted_label_set() {
        let labels: BTreeMap<String, String> = [("alertname", "test"), ("severity", "warning")]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        let fp = fingerprint(&labels);
        assert_eq!(fp.len(), 16);
        assert_eq!(fp, fingerprint(&labels.clone()));
        // FNV-1a's offset basis for no labels, as Alertmanager's hashNew().
        let empty = fingerprint(&BTreeMap::new());
        assert_eq!(empty, format!("{:016x}", 14_695_981_039_346_656_037u64));
        // The separator keeps {a="bc"} and {ab="c"} apart.
        let one = |n: &str, v: &str| fingerprint(&[(n.to_string(), v.to_string())].into());
        assert_ne!(one("a", "bc"), one("ab", "c"));
    }
}
