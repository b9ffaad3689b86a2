//! The Grafana dashboards in `dashboards/` hold together: current schema (≥ 39), a
//! `datasource` variable every panel and target uses, `host` and `instance` variables, a unit and
//! a description on every panel, unique panel ids, panels inside the 24-column grid that do not
//! overlap, annotations on the same data source, and provisioning that points at them. (Whether their queries return data is checked
//! against a real Prometheus in the dashboards' query test.)

use std::path::{Path, PathBuf};

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

/// Every query of every panel (and every variable's) is valid PromQL for a real Prometheus
/// once the variables are substituted: an error answer (bad_data) fails the test.
#[test]
fn every_query_is_valid_promql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut prom = mailpulse_tests::prometheus::Prometheus::start(dir.path(), &[]);
    let mut checked = 0;
    let mut errors = Vec::new();
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
            if let Some(q) = v["definition"]
                .as_str()
                .filter(|q| !q.starts_with("label_values"))
            {
                queries.push((format!("variable {}", v["name"]), q.to_owned()));
            }
        }
        for (title, expr) in queries {
            let answer = prom.query(&substituted(&expr));
            checked += 1;
            if !answer.as_ref().is_some_and(|a| a["status"] == "success") {
                errors.push(format!("{}: {title}: {expr}: {answer:?}", path.display()));
            }
        }
    }
    prom.kill();
    assert!(errors.is_empty(), "invalid queries:\n{}", errors.join("\n"));
    assert!(checked >= 30, "only {checked} queries");
    println!("{checked} dashboard queries are valid PromQL");
}
