//! `mailpulse actions`, `mailpulse approve ID`, `mailpulse reject ID`: remediation for a person.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mailpulse_collector::alerting::content::rfc3339;
use mailpulse_collector::alerting::http::Endpoint;
use serde_json::Value;

fn get(collector: &str, path: &str) -> Result<Value> {
    crate::cli_http::get_json(collector, path)
}

/// Lists what waits, runs and will be reverted, and the latest audit entries.
pub fn list(collector: &str, json: bool) -> Result<()> {
    let pending = get(collector, "/api/v1/actions")?;
    let audit = get(collector, "/api/v1/audit?limit=20")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"actions": pending, "audit": audit}))?
        );
        return Ok(());
    }
    print!("{}", render(&pending, &audit));
    Ok(())
}

fn steps(run: &Value) -> String {
    run["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    if let Some(message) = s["Notify"].as_str() {
                        return format!("notify({message:?})");
                    }
                    let action = &s["Action"];
                    let params: Vec<String> = action[1]
                        .as_object()
                        .map(|p| {
                            p.iter()
                                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "{}({})",
                        action[0].as_str().unwrap_or("?"),
                        params.join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join(", then ")
        })
        .unwrap_or_default()
}

fn render(pending: &Value, audit: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if pending["killed"].as_bool() == Some(true) {
        out.push_str("KILL SWITCH ON: no playbook runs (reverts still do)\n\n");
    }
    let empty = Vec::new();
    let waiting = pending["awaiting_approval"].as_array().unwrap_or(&empty);
    let _ = writeln!(out, "Waiting for approval: {}", waiting.len());
    for run in waiting {
        let _ = writeln!(
            out,
            "  {}  {} on {} ({}): {}\n      alert: {}\n      expires {}\n      mailpulse approve {} | mailpulse reject {}",
            run["id"],
            run["playbook"].as_str().unwrap_or(""),
            run["host"].as_str().unwrap_or(""),
            run["agent"].as_str().unwrap_or(""),
            steps(run),
            run["alert"]["summary"].as_str().unwrap_or(""),
            run["approval_expires_ms"]
                .as_i64()
                .map(rfc3339)
                .unwrap_or_default(),
            run["id"],
            run["id"],
        );
    }
    let running = pending["running"].as_array().unwrap_or(&empty);
    let _ = writeln!(out, "Running: {}", running.len());
    for run in running {
        let _ = writeln!(
            out,
            "  {}  {} on {}: {}",
            run["id"],
            run["playbook"].as_str().unwrap_or(""),
            run["host"].as_str().unwrap_or(""),
            steps(run)
        );
    }
    let reverts = pending["reverts"].as_array().unwrap_or(&empty);
    let _ = writeln!(out, "Scheduled reverts: {}", reverts.len());
    for r in reverts {
        let _ = writeln!(
            out,
            "  {}  {} on {} {}{}",
            r["id"],
            r["kind"].as_str().unwrap_or(""),
            r["host"].as_str().unwrap_or(""),
            r["due_ms"]
                .as_i64()
                .map_or(String::new(), |t| format!("at {}", rfc3339(t))),
            if r["on_resolve"].as_bool() == Some(true) {
                " or when its alert resolves"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "\nLatest audit entries:");
    for e in audit.as_array().unwrap_or(&empty) {
        let _ = writeln!(
            out,
            "  {}  {:<17} {:<28} {} {} {}{}",
            e["at"].as_str().unwrap_or(""),
            e["event"].as_str().unwrap_or(""),
            e["actor"].as_str().unwrap_or(""),
            e["kind"].as_str().unwrap_or(""),
            e["host"].as_str().unwrap_or(""),
            e["status"].as_str().unwrap_or(""),
            e["detail"]
                .as_str()
                .filter(|d| !d.is_empty())
                .map_or(String::new(), |d| format!(
                    "\n      {}",
                    d.chars().take(300).collect::<String>()
                ))
        );
    }
    out
}

/// Approves (or rejects) action `id`.
pub fn decide(collector: &str, token_file: &Path, id: u64, approve: bool) -> Result<()> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading {}", token_file.display()))?;
    let token = token.lines().next().unwrap_or("").trim().to_owned();
    let verb = if approve { "approve" } else { "reject" };
    let endpoint = Endpoint::new(collector, &Default::default(), Duration::from_secs(10))
        .with_context(|| format!("collector URL {collector}"))?
        .join(&format!("/api/v1/actions/{id}/{verb}"));
    let answer = crate::cli_http::runtime()?
        .block_on(endpoint.post_json(
            &[("authorization", format!("Bearer {token}"))],
            bytes::Bytes::from_static(b"{}"),
        ))
        .with_context(|| format!("POST {}", endpoint.url()))?;
    if answer.status != 200 {
        bail!(
            "POST {}: HTTP {}: {}",
            endpoint.url(),
            answer.status,
            answer.body.trim()
        );
    }
    println!("{}", answer.body.trim());
    Ok(())
}
