//! The fleet simulator end to end: determinism, seasonality, parse coverage, incident
//! visibility in the aggregated samples, bounded memory, scenario validation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mailpulse_proto::v1::{self as pb, sample};
use mailpulse_sim::fleet::{
    IncidentKind, IncidentLabel, Scenario, parse_labels, simulate_samples, write_labels,
};

// ---------------------------------------------------------------- allocation counting

/// Counts the bytes live per thread, so a test can watch its own allocations while other tests
/// run on other threads.
struct CountingAlloc;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add_live(delta: i64) {
    // `try_with`: the slot is gone while a thread is being torn down.
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

fn live_bytes() -> i64 {
    LIVE.with(Cell::get)
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add_live(layout.size() as i64);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as i64));
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add_live(new_size as i64 - layout.size() as i64);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------- helpers

const HOUR: i64 = 3600;
const WINDOW_SECS: u32 = 300;

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
}

fn scenario(text: &str) -> Scenario {
    match Scenario::parse(Path::new("inline.toml"), text) {
        Ok(s) => s,
        Err(e) => panic!("inline scenario should be valid: {e}"),
    }
}

/// Every host's log and the labels, as bytes.
fn render(s: &Scenario) -> Vec<u8> {
    let mut out = Vec::new();
    for sim in s.host_simulations() {
        for line in sim {
            out.extend_from_slice(line.text.as_bytes());
            out.push(b'\n');
        }
    }
    write_labels(&mut out, &s.labels()).expect("writing to a Vec cannot fail");
    out
}

const TINY: &str = r#"
seed = 11
start = 2024-10-07T00:00:00Z
days = 1
[traffic]
messages_per_day = 800
[[hosts]]
name = "a"
[[hosts]]
name = "b"
[[incidents]]
kind = "bounce_storm"
hosts = ["a"]
start = 2024-10-07T09:00:00Z
end = 2024-10-07T10:00:00Z
domain = "gmail.com"
[[incidents]]
kind = "connection_flood"
hosts = ["b"]
start = 2024-10-07T03:00:00Z
end = 2024-10-07T04:00:00Z
client_net = "203.0.113.0/24"
"#;

// ---------------------------------------------------------------- determinism

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let s = scenario(TINY);
    let a = render(&s);
    let b = render(&scenario(TINY));
    assert!(a.len() > 100_000, "a day of two hosts is substantial");
    assert!(a == b, "the same scenario must give byte-identical output");
    let c = render(&s.with_seed(12));
    assert!(a != c, "another seed must give another log");
    let labels_a = s.labels();
    assert_eq!(
        labels_a,
        s.with_seed(12).labels(),
        "labels depend on the incidents only"
    );
}

#[test]
fn labels_round_trip_through_json_lines() {
    let s = scenario(TINY);
    let mut text = Vec::new();
    write_labels(&mut text, &s.labels()).expect("writing to a Vec cannot fail");
    let text = String::from_utf8(text).expect("labels are UTF-8");
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.starts_with(r#"{"id":"bounce_storm-1","kind":"bounce_storm","host":"a","start":"2024-10-07T09:00:00Z","end":"2024-10-07T10:00:00Z","start_unix_secs":1728291600,"end_unix_secs":1728295200,"keys":{"domain":"gmail.com"}}"#),
        "unexpected first label: {text}"
    );
    let back = parse_labels(&text).expect("labels parse back");
    assert_eq!(back, s.labels());
}

// ---------------------------------------------------------------- seasonality

#[test]
fn office_hours_outweigh_nights_and_weekends_are_quieter() {
    let s = scenario(
        r#"
seed = 3
start = 2024-10-07T00:00:00Z
days = 14
[traffic]
messages_per_day = 1200
[[hosts]]
name = "mx1"
"#,
    );
    let start = s.start_unix_secs();
    // Accepted messages per (day, hour of day).
    let mut per_hour: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let sim = s.host_simulation(0).expect("one host");
    for line in sim {
        let accepted = line.text.contains(": client=") || line.text.contains(": uid=");
        if accepted {
            let secs = line.at_unix_micros / 1_000_000 - start;
            *per_hour
                .entry((secs / 86_400, secs % 86_400 / HOUR))
                .or_default() += 1;
        }
    }
    let mean = |days: &[i64], hours: std::ops::Range<i64>| {
        let mut total = 0;
        let mut n = 0;
        for &d in days {
            for h in hours.clone() {
                total += per_hour.get(&(d, h)).copied().unwrap_or(0);
                n += 1;
            }
        }
        total as f64 / n as f64
    };
    let weekdays = [0, 1, 2, 3, 4, 7, 8, 9, 10, 11];
    let weekend = [5, 6, 12, 13];
    let office = mean(&weekdays, 9..17);
    let night = mean(&weekdays, 0..5);
    assert!(
        office >= 3.0 * night,
        "weekday office hours ({office:.1}/h) should carry at least 3x the nights ({night:.1}/h)"
    );
    let weekday_all = mean(&weekdays, 0..24);
    let weekend_all = mean(&weekend, 0..24);
    eprintln!(
        "accepted per hour: weekday 09-17 {office:.1}, weekday 00-05 {night:.1}, weekday {weekday_all:.1}, weekend {weekend_all:.1}"
    );
    assert!(
        weekend_all < 0.6 * weekday_all,
        "weekends ({weekend_all:.1}/h) should be well below weekdays ({weekday_all:.1}/h)"
    );
    assert!(night > 0.0, "nights are quiet, not silent ({night:.2}/h)");
}

// ---------------------------------------------------------------- the small scenario

/// What the small scenario's feed produced, reduced to the series the checks need.
struct Fed {
    elapsed: Duration,
    lines: u64,
    unparsed: u64,
    labels: Vec<IncidentLabel>,
    /// (host, series name) → window start → value.
    series: BTreeMap<(String, String), BTreeMap<i64, f64>>,
    windows: BTreeSet<i64>,
}

impl Fed {
    fn series(&self, host: &str, name: &str) -> Vec<(i64, f64)> {
        let values = self.series.get(&(host.to_string(), name.to_string()));
        self.windows
            .iter()
            .map(|&w| (w, values.and_then(|v| v.get(&w)).copied().unwrap_or(0.0)))
            .collect()
    }
}

fn label<'a>(pb_labels: &'a [pb::Label], name: &str) -> Option<&'a str> {
    pb_labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

fn small() -> &'static Fed {
    static FED: OnceLock<Fed> = OnceLock::new();
    FED.get_or_init(|| {
        let s = match Scenario::load(&scenario_path("small.toml")) {
            Ok(s) => s,
            Err(e) => panic!("scenarios/small.toml should load: {e}"),
        };
        let labels = s.labels();
        // The only domains whose series are kept (keeps the map small).
        let mut domains: BTreeSet<String> = BTreeSet::new();
        for l in &labels {
            domains.extend(l.keys.domain.clone());
            domains.extend(l.keys.domains.iter().cloned());
        }
        let mut series: BTreeMap<(String, String), BTreeMap<i64, f64>> = BTreeMap::new();
        let mut windows = BTreeSet::new();
        let started = Instant::now();
        let summary = simulate_samples(&s, WINDOW_SECS, |host, samples| {
            for sample in samples {
                let window = sample.window_start_unix_ms / 1000;
                windows.insert(window);
                let value = match sample.value {
                    Some(sample::Value::CounterDelta(v) | sample::Value::Gauge(v)) => v,
                    _ => continue,
                };
                let m = sample.metric.as_str();
                let mut names = Vec::new();
                match m {
                    "messages_received" | "messages_delivered" => names.push(m.to_string()),
                    "messages_bounced" | "messages_deferred" => {
                        names.push(m.to_string());
                        if let Some(d) = label(&sample.labels, "domain")
                            && domains.contains(d)
                        {
                            names.push(format!("{m}{{domain={d}}}"));
                        }
                        if let Some(c) = label(&sample.labels, "reason_class") {
                            names.push(format!("{m}{{reason_class={c}}}"));
                        }
                    }
                    "sasl_auth_failures" | "postscreen_connections" | "smtpd_connections" => {
                        if let Some(n) = label(&sample.labels, "client_net") {
                            names.push(format!("{m}{{client_net={n}}}"));
                        }
                    }
                    "filesystem_free_bytes" => names.push(m.to_string()),
                    // Kept as its complement: 1 in a window whose round found the servers
                    // disagreeing.
                    "dns_propagation_consistent" => {
                        *series
                            .entry((host.to_string(), "dns_inconsistent".to_string()))
                            .or_default()
                            .entry(window)
                            .or_default() += 1.0 - value;
                    }
                    "queue_messages" => {
                        if let Some(q) = label(&sample.labels, "queue") {
                            names.push(format!("{m}{{queue={q}}}"));
                        }
                    }
                    _ => {}
                }
                for name in names {
                    *series
                        .entry((host.to_string(), name))
                        .or_default()
                        .entry(window)
                        .or_default() += value;
                }
            }
        });
        Fed {
            elapsed: started.elapsed(),
            lines: summary.hosts.iter().map(|h| h.lines).sum(),
            unparsed: summary.hosts.iter().map(|h| h.unparsed).sum(),
            labels,
            series,
            windows,
        }
    })
}

#[test]
fn small_scenario_parses_completely() {
    let fed = small();
    eprintln!(
        "small scenario: {} lines fed in {:.1?}",
        fed.lines, fed.elapsed
    );
    assert!(fed.lines > 100_000, "3 hosts x 7 days: {} lines", fed.lines);
    assert_eq!(
        fed.unparsed, 0,
        "every simulated line must parse through LineProcessor"
    );
    let kinds: BTreeSet<IncidentKind> = fed.labels.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds.len(),
        IncidentKind::ALL.len(),
        "small.toml has one incident of each kind"
    );
}

/// The series that shows `label`'s incident, as (window, value).
fn incident_signal(fed: &Fed, l: &IncidentLabel) -> Vec<(i64, f64)> {
    let host = l.host.as_str();
    let one = |name: String| fed.series(host, &name);
    match l.kind {
        IncidentKind::BounceStorm => one(format!(
            "messages_bounced{{domain={}}}",
            l.keys.domain.as_deref().unwrap_or_default()
        )),
        IncidentKind::GreylistingWave => one("messages_deferred{reason_class=greylisting}".into()),
        IncidentKind::IpBlocklisted => one("messages_bounced{reason_class=policy-block}".into()),
        IncidentKind::DnsFailure => one(format!(
            "messages_deferred{{domain={}}}",
            l.keys.domain.as_deref().unwrap_or_default()
        )),
        // Recipient deliveries: a spam run multiplies them.
        IncidentKind::CompromisedAccount => one("messages_delivered".into()),
        IncidentKind::ConnectionFlood => one(format!(
            "sasl_auth_failures{{client_net={}}}",
            l.keys.client_net.as_deref().unwrap_or_default()
        )),
        // Deferrals to the domains the dead relay serves.
        IncidentKind::RelayDown => {
            let mut total: BTreeMap<i64, f64> = BTreeMap::new();
            for d in &l.keys.domains {
                for (w, v) in one(format!("messages_deferred{{domain={d}}}")) {
                    *total.entry(w).or_default() += v;
                }
            }
            total.into_iter().collect()
        }
        // Bytes consumed per window (the drop of free space).
        IncidentKind::SpoolFilling => {
            let free = one("filesystem_free_bytes".into());
            free.windows(2).map(|p| (p[1].0, p[0].1 - p[1].1)).collect()
        }
        // Rounds whose authoritative servers answered differently.
        IncidentKind::DnsChange => one("dns_inconsistent".into()),
    }
}

#[test]
fn every_incident_shows_in_its_window_and_not_outside() {
    let fed = small();
    let w = i64::from(WINDOW_SECS);
    let mut report = String::new();
    let mut failures = Vec::new();
    for l in &fed.labels {
        let signal = incident_signal(fed, l);
        // Consequences may lag (retries back off up to ~70 min): leave a margin after the end,
        // and one before the start for the windows that straddle it.
        let excluded =
            |t: i64| !(t + w <= l.start_unix_secs - HOUR || t >= l.end_unix_secs + 2 * HOUR);
        let inside: Vec<f64> = signal
            .iter()
            .filter(|(t, _)| *t >= l.start_unix_secs && t + w <= l.end_unix_secs)
            .map(|(_, v)| *v)
            .collect();
        let outside: Vec<f64> = signal
            .iter()
            .filter(|(t, _)| !excluded(*t))
            .map(|(_, v)| *v)
            .collect();
        let total_in: f64 = inside.iter().sum();
        let mean_in = total_in / inside.len().max(1) as f64;
        let mean_out = outside.iter().sum::<f64>() / outside.len().max(1) as f64;
        // The largest total of any stretch outside as long as the incident: "absent outside"
        // means nothing there comes close to the incident.
        let n = inside.len().max(1);
        let busiest_out = signal
            .windows(n)
            .filter(|run| run.iter().all(|(t, _)| !excluded(*t)))
            .map(|run| run.iter().map(|(_, v)| v).sum::<f64>())
            .fold(0.0, f64::max);
        report.push_str(&format!(
            "{:<20} {:<4} inside: mean {:>12.2} total {:>14.1} | outside: mean {:>10.3}, busiest stretch {:>14.1}\n",
            l.kind.as_str(),
            l.host,
            mean_in,
            total_in,
            mean_out,
            busiest_out
        ));
        let visible = mean_in >= 10.0 * mean_out.max(0.05) && mean_in > 0.5;
        let absent_outside = busiest_out * 3.0 <= total_in;
        if inside.is_empty() || !visible || !absent_outside {
            failures.push(l.id.clone());
        }
    }
    eprintln!("{report}");
    assert!(
        failures.is_empty(),
        "expected each incident's signal inside its window to be ≥10x its mean outside, and ≥3x the busiest equally long stretch outside; failed: {failures:?}\n{report}"
    );
}

#[test]
fn a_dead_relay_piles_up_deferred_mail_that_drains_after() {
    let fed = small();
    let l = fed
        .labels
        .iter()
        .find(|l| l.kind == IncidentKind::RelayDown)
        .expect("small.toml has a relay_down incident");
    let deferred = fed.series(&l.host, "queue_messages{queue=deferred}");
    let at = |t: i64| {
        deferred
            .iter()
            .rev()
            .find(|(w, _)| *w <= t)
            .map_or(0.0, |(_, v)| *v)
    };
    let before = at(l.start_unix_secs - 600);
    let peak = at(l.end_unix_secs - 600);
    let after = at(l.end_unix_secs + 3 * HOUR);
    assert!(
        peak >= before + 10.0,
        "the deferred queue should grow while the relay is down: {before} → {peak}"
    );
    assert!(
        after < before + (peak - before) / 3.0,
        "the backlog should drain after the relay is back: peak {peak}, 3 h later {after}"
    );
}

// ---------------------------------------------------------------- memory

#[test]
fn memory_stays_bounded_over_a_long_run() {
    let s = scenario(
        r#"
seed = 5
start = 2024-10-07T00:00:00Z
days = 35
[traffic]
messages_per_day = 800
[[hosts]]
name = "mx1"
"#,
    );
    let start = s.start_unix_secs();
    let base = live_bytes();
    let mut peak_by_week = [0i64; 5];
    let mut sim = s.host_simulation(0).expect("one host");
    let mut lines = 0u64;
    for line in sim.by_ref() {
        let week = ((line.at_unix_micros / 1_000_000 - start) / (7 * 86_400)) as usize;
        let live = live_bytes() - base;
        if let Some(p) = peak_by_week.get_mut(week) {
            *p = (*p).max(live);
        }
        lines += 1;
    }
    drop(sim);
    assert!(lines > 100_000, "five weeks generate plenty: {lines}");
    let first = peak_by_week[0];
    let last = peak_by_week[1..].iter().copied().max().unwrap_or(0);
    eprintln!("live bytes, peak per week over {lines} lines: {peak_by_week:?}");
    assert!(
        last <= first * 2 + (1 << 20),
        "live memory must not grow with the period: week 1 peak {first} B, later peak {last} B ({peak_by_week:?})"
    );
    assert!(
        last < 32 << 20,
        "a host at 800 messages/day needs well under 32 MiB, peak {last} B"
    );
}

// ---------------------------------------------------------------- validation

fn error_of(text: &str) -> String {
    match Scenario::parse(Path::new("bad.toml"), text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_keys_are_rejected_with_line_and_column() {
    let base = "seed = 1\nstart = 2024-10-07T00:00:00Z\ndays = 1\n[[hosts]]\nname = \"a\"\n";
    let e = error_of(&format!("{base}colour = \"red\"\n"));
    assert!(
        e.starts_with("bad.toml:6:1:") && e.contains("colour"),
        "host table key: {e}"
    );
    let e = error_of(&format!(
        "{base}[[incidents]]\nkind = \"bounce_storm\"\nhosts = [\"a\"]\nstart = 2024-10-07T01:00:00Z\nend = 2024-10-07T02:00:00Z\ndomian = \"gmail.com\"\n"
    ));
    assert!(
        e.starts_with("bad.toml:11:1:") && e.contains("domian"),
        "misspelt incident key: {e}"
    );
    let e = error_of(&format!("{base}[traffic]\nmesages_per_day = 5\n"));
    assert!(
        e.starts_with("bad.toml:7:1:") && e.contains("mesages_per_day"),
        "traffic key: {e}"
    );
    let e = error_of(&format!(
        "{base}[[incidents]]\nkind = \"meteor_strike\"\nhosts = [\"a\"]\nstart = 2024-10-07T01:00:00Z\nend = 2024-10-07T02:00:00Z\n"
    ));
    assert!(
        e.starts_with("bad.toml:7:") && e.contains("meteor_strike"),
        "unknown kind: {e}"
    );
}

#[test]
fn incidents_are_checked_against_their_kind_and_the_world() {
    let base = "seed = 1\nstart = 2024-10-07T00:00:00Z\ndays = 1\n[[hosts]]\nname = \"a\"\n[[incidents]]\nhosts = [\"a\"]\nstart = 2024-10-07T01:00:00Z\nend = 2024-10-07T02:00:00Z\n";
    let cases = [
        (
            "kind = \"dns_failure\"\nrelay = \"x\"\n",
            "does not take `relay`",
        ),
        ("kind = \"dns_failure\"\n", "`domain` is required"),
        (
            "kind = \"dns_failure\"\ndomain = \"nowhere.example\"\n",
            "unknown domain",
        ),
        (
            "kind = \"dns_failure\"\ndomain = \"gmial.com\"\n",
            "never accepts mail",
        ),
        (
            "kind = \"relay_down\"\nrelay = \"mx.nowhere.example\"\n",
            "no working domain",
        ),
        (
            "kind = \"connection_flood\"\nclient_net = \"203.0.113.7/24\"\n",
            "must be a /24",
        ),
        (
            "kind = \"bounce_storm\"\ndomain = \"gmail.com\"\nshare = 1.5\n",
            "share must be",
        ),
    ];
    for (incident, want) in cases {
        let e = error_of(&format!("{base}{incident}"));
        assert!(
            e.starts_with("bad.toml:6:1:") && e.contains(want),
            "expected {want:?} at the incident (6:1): {e}"
        );
    }
    let e = error_of(
        "seed = 1\nstart = 2024-10-07T00:00:00Z\ndays = 1\n[[hosts]]\nname = \"a\"\n[[incidents]]\nkind = \"spool_filling\"\nhosts = [\"b\"]\nstart = 2024-10-07T01:00:00Z\nend = 2024-10-07T02:00:00Z\nfill_bytes_per_hour = 1e9\n",
    );
    assert!(e.contains("no host is named \"b\""), "{e}");
    let e = error_of(
        "seed = 1\nstart = 2024-10-07T00:00:00Z\ndays = 1\n[[hosts]]\nname = \"../etc\"\n",
    );
    assert!(
        e.contains("host name"),
        "path-like host names are refused: {e}"
    );
    let e = error_of("seed = 1\nstart = 2024-10-07T00:00:00\ndays = 1\n[[hosts]]\nname = \"a\"\n");
    assert!(
        e.starts_with("bad.toml:2:9:") && e.contains("offset"),
        "{e}"
    );
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios/ exists") {
        let path = entry.expect("readable directory").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = Scenario::load(&path) {
                panic!("{} should be valid: {e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 3, "ship at least three scenarios, found {n}");
}
