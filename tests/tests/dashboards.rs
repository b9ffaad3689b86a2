//! The Grafana dashboards in `dashboards/` hold together: current schema (≥ 39), a
//! `datasource` variable every panel and target uses, `host` and `instance` variables, a unit and
//! a description on every panel, unique panel ids, panels inside the 24-column grid that do not
//! overlap, annotations on the same data source, and provisioning that points at them. (Whether their queries return data is checked
//! against a real Prometheus in the dashboards' query test.)

#[allow(dead_code)]
#[path = "support/fleet.rs"]
mod fleet;
#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .expect("dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p, json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// Panels, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

#[test]
fn every_dashboard_has_the_schema_variables_units_and_descriptions() {
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut uids = std::collections::BTreeSet::new();
    for (path, d) in dashboards() {
        let name = path.display().to_string();
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 39),
            "{name}: schemaVersion"
        );
        assert!(
            d["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u.len() <= 40),
            "{name}: uid"
        );
        assert!(
            uids.insert(d["uid"].as_str().unwrap_or("").to_owned()),
            "{name}: uid twice"
        );
        let vars = d["templating"]["list"].as_array().expect("templating");
        let var = |n: &str| vars.iter().find(|v| v["name"] == n);
        let ds = var("datasource").unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        for v in ["host", "instance"] {
            let v = var(v).unwrap_or_else(|| panic!("{name}: no {v} variable"));
            assert_eq!(
                v["datasource"], datasource,
                "{name}: variable {}",
                v["name"]
            );
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            assert_eq!(
                a["datasource"], datasource,
                "{name}: annotation {}",
                a["name"]
            );
            assert!(
                a["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: annotation expr"
            );
        }
        let mut ids = std::collections::BTreeSet::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{name}: id twice ({title})"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"], datasource, "{name}: {title}: datasource");
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{name}: {title}: no unit"
            );
            assert!(
                p["description"].as_str().is_some_and(|t| t.len() > 20),
                "{name}: {title}: no description"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {title}: no target");
            for t in targets {
                assert_eq!(
                    t["datasource"], datasource,
                    "{name}: {title}: target datasource"
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{name}: {title}: expr"
                );
            }
        }
    }
}

#[test]
fn panels_stay_in_the_grid_and_do_not_overlap() {
    for (path, d) in dashboards() {
        let name = path.display().to_string();
        let boxes: Vec<(String, u64, u64, u64, u64)> = panels(&d)
            .into_iter()
            .map(|p| {
                let g = &p["gridPos"];
                let (x, y, w, h) = (
                    g["x"].as_u64().expect("x"),
                    g["y"].as_u64().expect("y"),
                    g["w"].as_u64().expect("w"),
                    g["h"].as_u64().expect("h"),
                );
                assert!(
                    w > 0 && h > 0 && x + w <= 24,
                    "{name}: {} outside the grid",
                    p["title"]
                );
                (p["title"].as_str().unwrap_or("?").to_owned(), x, y, w, h)
            })
            .collect();
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                let apart =
                    a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1 || a.2 + a.4 <= b.2 || b.2 + b.4 <= a.2;
                assert!(apart, "{name}: {:?} and {:?} overlap", a.0, b.0);
            }
        }
    }
}

#[test]
fn provisioning_points_at_the_dashboards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/provisioning");
    let text = std::fs::read_to_string(root.join("dashboards/mailpulse.yaml"))
        .expect("dashboards/provisioning/dashboards/mailpulse.yaml");
    assert!(
        text.contains("apiVersion: 1") && text.contains("type: file"),
        "{text}"
    );
    assert!(
        text.contains("path: /var/lib/grafana/dashboards/mailpulse"),
        "{text}"
    );
    let ds = std::fs::read_to_string(root.join("datasources/mailpulse.yaml"))
        .expect("dashboards/provisioning/datasources/mailpulse.yaml");
    assert!(ds.contains("type: prometheus"), "{ds}");
}

/// A panel query with the dashboard variables as Grafana substitutes them for "All".
fn substituted(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$host", ".*")
        .replace("$instance", ".*")
}

/// Every query of the dashboards as (dashboard file, what it belongs to, query): panel
/// targets, annotations and query variables (`label_values(metric, label)` as the query that
/// lists the label's values).
fn queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (path, dashboard) in dashboards() {
        let mut queries: Vec<(String, String)> = Vec::new();
        for p in panels(&dashboard) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    queries.push((
                        p["title"].as_str().unwrap_or("?").to_owned(),
                        expr.to_owned(),
                    ));
                }
            }
        }
        for a in dashboard["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(expr) = a["expr"].as_str() {
                queries.push((format!("annotation {}", a["name"]), expr.to_owned()));
            }
        }
        for v in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(q) = v["definition"].as_str() else {
                continue;
            };
            let q = match q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.rsplit_once(','))
            {
                Some((metric, label)) => format!("count by ({}) ({metric})", label.trim()),
                None => q.to_owned(),
            };
            queries.push((format!("variable {}", v["name"]), q));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.extend(queries.into_iter().map(|(t, q)| (name.clone(), t, q)));
    }
    out
}

/// Every query of every panel (and every variable's) is valid PromQL for a real Prometheus
/// once the variables are substituted: an error answer (bad_data) fails the test.
#[test]
fn every_query_is_valid_promql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut prom = mailpulse_tests::prometheus::Prometheus::start(dir.path(), &[]);
    let mut checked = 0;
    let mut errors = Vec::new();
    for (name, title, expr) in queries() {
        let answer = prom.query(&substituted(&expr));
        checked += 1;
        if !answer.as_ref().is_some_and(|a| a["status"] == "success") {
            errors.push(format!("{name}: {title}: {expr}: {answer:?}"));
        }
    }
    prom.kill();
    assert!(errors.is_empty(), "invalid queries:\n{}", errors.join("\n"));
    assert!(checked >= 30, "only {checked} queries");
    println!("{checked} dashboard queries are valid PromQL");
}

/// The dashboards show data: a collector holding two days of a simulated fleet with incidents
/// (see `support/fleet.rs`), scraped by a real Prometheus; every query of every panel, every
/// annotation and every variable, with the variables substituted as Grafana does for "All",
/// returns at least one series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seeded = fleet::seeded(dir.path()).await;
    println!(
        "fed {} samples and {} probes in {} batches",
        seeded.fed.samples, seeded.fed.probes, seeded.fed.batches
    );
    let mut seeded = seeded;
    let http = seeded.collector.http_addr();
    let target = http.to_string();
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("prometheus dir");
    let prom = tokio::task::spawn_blocking(move || {
        let prom = mailpulse_tests::prometheus::Prometheus::start(&prom_dir, &[target]);
        // Rates need two scrapes inside their range: wait for five.
        let scraped = mailpulse_tests::net::poll_until(
            Duration::from_secs(60),
            Duration::from_millis(500),
            || prom.value("count_over_time(up[1m])").filter(|n| *n >= 5.0),
        );
        assert!(scraped.is_ok(), "Prometheus did not scrape the collector");
        prom
    })
    .await
    .expect("prometheus");

    // While Prometheus watches, one authoritative server of mx1's domain gets a new zone
    // serial (what the DNS annotations mark): mx1's agent ships the next probe round.
    let (_, metrics) = support::http_get(http, "/metrics").await;
    let serial = metrics
        .lines()
        .find(|l| l.starts_with("mailpulse_dns_soa_serial{") && l.contains(r#"host="mx1""#))
        .unwrap_or_else(|| panic!("no SOA serial of mx1 at /metrics"));
    let (labels, value) = serial.rsplit_once(' ').expect("a sample line");
    let value: f64 = value.parse().expect("serial");
    let labels: Vec<(&str, &str)> = labels
        .trim_start_matches("mailpulse_dns_soa_serial{")
        .trim_end_matches('}')
        .split("\",")
        .filter_map(|kv| kv.split_once("=\""))
        .map(|(k, v)| (k, v.trim_end_matches('"')))
        .collect();
    let window = fleet::now_secs().div_euclid(i64::from(fleet::WINDOW_SECS))
        * i64::from(fleet::WINDOW_SECS)
        * 1000;
    let mut sample = support::gauge("dns_soa_serial", &labels, window, value + 1.0);
    sample.window_secs = fleet::WINDOW_SECS;
    seeded.ship("mx1", vec![sample]).await;
    let (checked, empty) = tokio::task::spawn_blocking(move || {
        let mut prom = prom;
        let seen = mailpulse_tests::net::poll_until(
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                prom.value("max(changes(mailpulse_dns_soa_serial[5m]))")
                    .filter(|n| *n >= 1.0)
            },
        );
        assert!(seen.is_ok(), "the serial change never reached Prometheus");
        // Every query in turn; one that is still empty is asked again (a playbook's action
        // or an alert may reach /metrics a few scrapes after the first), for at most 30 s.
        let queries = queries();
        let checked = queries.len();
        let mut empty = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for (name, title, expr) in queries {
            loop {
                let answer = prom.query(&substituted(&expr));
                let series = answer
                    .as_ref()
                    .and_then(|a| a["data"]["result"].as_array())
                    .map_or(0, Vec::len);
                if series > 0 {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    empty.push(format!("{name}: {title}: {expr}: {answer:?}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        prom.kill();
        (checked, empty)
    })
    .await
    .expect("queries");
    assert!(
        empty.is_empty(),
        "{} of {checked} queries return nothing:\n{}",
        empty.len(),
        empty.join("\n")
    );
    println!("{checked} dashboard queries return data");
    seeded.collector.shutdown().await.expect("clean shutdown");
}
