//! The postfix-grok corpus (`tests/fixtures/postfix-grok/`, BSD-3): every message body must parse
//! into a typed record, and every field the grok pattern extracts must agree with that record.
//!
//! The record is flattened into grok-named facts (`postfix_queueid`, `postfix_client_ip`, ...);
//! `postfix_keyvalue_data` is split into its `key=value` pairs and checked as `kv.<key>`. A result
//! key the flattening does not produce fails the test unless it is listed in [`UNCHECKED`].
//! `CORPUS_DUMP=1 cargo test --test corpus -- --nocapture` prints every record as JSON.

mod common;

use std::collections::BTreeMap;

use common::{Case, load_cases, yaml_scalar};

use mailpulse_agent::parse::postfix;
use mailpulse_agent::parse::record::{
    Anvil, CheckAction, Cleanup, Delivery, DeliveryStatus, Endpoint, Envelope, Master, Postscreen,
    Postsuper, Qmgr, Record, Reply, Scache, Smtp, Smtpd, TlsDirection,
};

/// Grok result keys that carry no information of their own.
const UNCHECKED: [&str; 1] = [
    // Expanded into `kv.*` facts and checked field by field.
    "postfix_keyvalue_data",
];

/// Result keys compared by containment: grok cuts the reply text into pieces.
const CONTAINED: [&str; 2] = ["postfix_status_data", "postfix_status_message"];

#[test]
fn every_corpus_body_parses_into_a_typed_record_with_the_grok_fields() {
    let cases = load_cases();
    assert!(
        cases.len() >= 191,
        "corpus not found or incomplete: {}",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut typed = 0;
    let mut checked_fields = 0;
    for case in &cases {
        let record = postfix::parse(case.service, &case.message);
        if std::env::var_os("CORPUS_DUMP").is_some() {
            println!("{}: {}", case.file, serde_json::to_string(&record).unwrap());
        }
        if let Record::Unparsed(u) = &record {
            failures.push(format!(
                "{}: expected a typed record for {} message {:?}, got Unparsed ({})",
                case.file, case.service, case.message, u.reason
            ));
            continue;
        }
        typed += 1;
        let facts = facts(&record);
        for (key, expected) in expectations(case) {
            let Some(actual) = facts.get(&key) else {
                failures.push(format!(
                    "{}: expected {key} = {expected:?}, but the record does not carry it: {record:?}",
                    case.file
                ));
                continue;
            };
            checked_fields += 1;
            if !agrees(&key, &expected, actual) {
                failures.push(format!(
                    "{}: expected {key} = {expected:?}, the record has {actual:?}",
                    case.file
                ));
            }
        }
    }
    println!(
        "postfix-grok corpus: {typed} of {} parse typed, {checked_fields} fields checked",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn agrees(key: &str, expected: &str, actual: &str) -> bool {
    if CONTAINED.contains(&key) {
        return actual.contains(expected);
    }
    if let (Ok(e), Ok(a)) = (expected.parse::<f64>(), actual.parse::<f64>()) {
        return e == a;
    }
    expected == actual
}

/// The result keys to check, normalised to the typed model's vocabulary.
fn expectations(case: &Case) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in &case.results {
        if UNCHECKED.contains(&key.as_str()) {
            if key == "postfix_keyvalue_data" {
                for (k, v) in key_values(value) {
                    out.push((format!("kv.{k}"), v));
                }
            }
            continue;
        }
        let value = match key.as_str() {
            // The typed model keeps what the action means, not how it was spelt.
            "postfix_action" => match value.trim_start_matches("milter-") {
                "reject_warning" | "warn" => "warn".to_string(),
                other => other.to_string(),
            },
            "postfix_status" if value == "undeliverable-but-not-cached" => {
                "undeliverable".to_string()
            }
            "postfix_anvil_conn_period" => period_secs(value).to_string(),
            _ => value.clone(),
        };
        out.push((key.clone(), value));
    }
    out
}

fn period_secs(p: &str) -> u64 {
    let (n, unit) = p.split_at(p.len() - 1);
    let n: u64 = n.parse().expect("numeric period");
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        u => panic!("unknown period unit {u}"),
    }
}

/// `to=<a>, relay=x[1.2.3.4]:25, delay=3.6, ...` or `from=<a> to=<b> proto=ESMTP` → pairs, with
/// angle brackets removed.
fn key_values(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim_matches([',', ' ']);
        let (value, next) = if let Some(inner) = after.strip_prefix('<') {
            let end = inner.find('>').expect("closing bracket");
            (&inner[..end], &inner[end + 1..])
        } else {
            let end = after.find([',', ' ']).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push((key.to_string(), value.to_string()));
        rest = next.trim_start_matches([',', ' ']);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Flattening a typed record into grok-named facts.

type Facts = BTreeMap<String, String>;

fn put(f: &mut Facts, key: &str, value: impl ToString) {
    f.insert(key.to_string(), value.to_string());
}

fn endpoint(f: &mut Facts, prefix: &str, ep: &Endpoint<'_>) {
    if !ep.host.is_empty() {
        put(f, &format!("postfix_{prefix}_hostname"), ep.host);
    }
    if ep.ip == "unknown" {
        put(f, &format!("postfix_{prefix}_ip_unknown"), ep.ip);
    } else {
        put(f, &format!("postfix_{prefix}_ip"), ep.ip);
    }
    if let Some(p) = ep.port {
        put(f, &format!("postfix_{prefix}_port"), p);
    }
}

fn reply(f: &mut Facts, prefix: &str, r: &Reply<'_>) {
    if let Some(c) = r.code {
        put(f, &format!("postfix_{prefix}_code"), c);
    }
    if let Some(d) = r.dsn {
        put(f, &format!("postfix_{prefix}_code_enhanced"), d);
    }
}

fn envelope(f: &mut Facts, e: &Envelope<'_>) {
    for (k, v) in [
        ("from", e.from),
        ("to", e.to),
        ("proto", e.proto),
        ("helo", e.helo),
    ] {
        if let Some(v) = v {
            put(f, &format!("kv.{k}"), v);
        }
    }
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn facts(record: &Record<'_>) -> Facts {
    let mut f = Facts::new();
    match record {
        Record::Smtpd(s) => smtpd(&mut f, s),
        Record::Postscreen(p) => postscreen(&mut f, p),
        Record::Cleanup(c) => cleanup(&mut f, c),
        Record::Qmgr(q) => match q {
            Qmgr::From {
                queue_id,
                sender,
                size_bytes,
                nrcpt,
            } => {
                put(&mut f, "postfix_queueid", queue_id);
                put(&mut f, "kv.from", sender);
                put(&mut f, "kv.size", size_bytes);
                put(&mut f, "kv.nrcpt", nrcpt);
            }
            Qmgr::Removed { queue_id } => {
                put(&mut f, "postfix_queueid", queue_id);
                put(&mut f, "postfix_message", "removed");
            }
            Qmgr::Expired {
                queue_id, sender, ..
            } => {
                put(&mut f, "postfix_queueid", queue_id);
                put(&mut f, "postfix_from", sender);
                put(&mut f, "postfix_status", "expired");
            }
            Qmgr::Note { queue_id, text } => {
                if let Some(q) = queue_id {
                    put(&mut f, "postfix_queueid", q);
                }
                put(&mut f, "postfix_message", text);
            }
        },
        Record::Delivery(d) => delivery(&mut f, d),
        Record::Smtp(s) => smtp(&mut f, s),
        Record::Notification(n) => {
            put(&mut f, "postfix_queueid", n.queue_id);
            put(&mut f, "postfix_bounce_queueid", n.notice_queue_id);
            let (recipient, reason) = n.kind.split_once(' ').unwrap_or((n.kind, ""));
            put(&mut f, "postfix_bounce_recipient", recipient);
            put(
                &mut f,
                "postfix_bounce_reason",
                reason.trim_end_matches(" notification"),
            );
        }
        Record::Pickup(p) => {
            put(&mut f, "postfix_queueid", p.queue_id);
            if let Some(uid) = p.uid {
                put(&mut f, "kv.uid", uid);
            }
            if let Some(from) = p.from {
                put(&mut f, "kv.from", from);
            }
        }
        Record::Anvil(a) => anvil(&mut f, a),
        Record::Tls(t) => {
            let prefix = match t.direction {
                TlsDirection::From => "client",
                TlsDirection::To => "relay",
            };
            endpoint(&mut f, prefix, &t.peer);
            put(&mut f, "postfix_tls_trustlevel", t.trust);
            put(&mut f, "postfix_tls_version", t.protocol);
            put(&mut f, "postfix_tls_cipher", t.cipher);
            if let Some(b) = t.bits {
                put(&mut f, "postfix_tls_cipher_size", b);
            }
            tls_extra(&mut f, t.extra);
        }
        Record::Postsuper(p) => {
            let (q, action) = match p {
                Postsuper::Held { queue_id } => (queue_id, "placed on hold"),
                Postsuper::Released { queue_id } => (queue_id, "released from hold"),
                Postsuper::Requeued { queue_id } => (queue_id, "requeued"),
                Postsuper::Removed { queue_id } => (queue_id, "removed"),
                Postsuper::Summary { action, count } => {
                    put(&mut f, "postfix_postsuper_summary_action", action);
                    put(&mut f, "postfix_postsuper_summary_count", count);
                    return f;
                }
            };
            put(&mut f, "postfix_queueid", q);
            put(&mut f, "postfix_postsuper_action", action);
        }
        Record::Master(m) => match m {
            Master::Started {
                version,
                config_dir,
            }
            | Master::Reloaded {
                version,
                config_dir,
            } => {
                put(&mut f, "postfix_version", version);
                put(&mut f, "postfix_config_path", config_dir);
            }
            Master::Terminating { signal } => put(&mut f, "postfix_termination_signal", signal),
        },
        Record::Scache(s) => match s {
            Scache::StartInterval { at } => put(&mut f, "postfix_scache_timestamp", at),
            Scache::Lookups {
                hits,
                misses,
                success_pct,
                ..
            } => {
                put(&mut f, "postfix_scache_hits", hits);
                put(&mut f, "postfix_scache_miss", misses);
                put(&mut f, "postfix_scache_success", success_pct);
            }
            Scache::MaxSimultaneous {
                domains,
                addresses,
                connections,
            } => {
                put(&mut f, "postfix_scache_domains", domains);
                put(&mut f, "postfix_scache_addresses", addresses);
                put(&mut f, "postfix_scache_connection", connections);
            }
        },
        Record::Dnsbl(d) => {
            put(&mut f, "postfix_client_ip", d.addr);
            put(&mut f, "postfix_dnsbl_domain", d.domain);
            put(&mut f, "postfix_dnsbl_result", d.reply);
        }
        Record::CacheCleanup(c) => {
            for daemon in ["postscreen", "verify"] {
                put(
                    &mut f,
                    &format!("postfix_{daemon}_cache_retained"),
                    c.retained,
                );
                put(
                    &mut f,
                    &format!("postfix_{daemon}_cache_dropped"),
                    c.dropped,
                );
            }
            put(&mut f, "postfix_verify_cleanup_type", c.scope);
        }
        Record::Service(s) => {
            if let Some(q) = s.queue_id {
                put(&mut f, "postfix_queueid", q);
            }
            if let Some(p) = &s.peer {
                endpoint(&mut f, "client", p);
            }
        }
        Record::Diagnostic(d) => {
            put(&mut f, "postfix_message_level", snake(&d.severity));
            put(&mut f, "postfix_message", d.text);
            if let Some(q) = d.queue_id {
                put(&mut f, "postfix_queueid", q);
            }
        }
        Record::Unparsed(_) => {}
    }
    f
}

/// `key-exchange X25519 server-signature RSA-PSS (4096 bits) server-digest SHA256`
fn tls_extra(f: &mut Facts, extra: &str) {
    let words: Vec<&str> = extra.split(' ').collect();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or_default();
        match *w {
            "key-exchange" => put(f, "postfix_tls_key_exchange", next),
            "server-signature" => {
                put(f, "postfix_tls_server_signature", next);
                let detail = words.get(i + 2).copied().unwrap_or_default();
                if let Some(curve) = detail.strip_prefix('(').and_then(|d| d.strip_suffix(')')) {
                    put(f, "postfix_tls_server_signature_curve", curve);
                } else if let Some(bits) = detail.strip_prefix('(') {
                    put(f, "postfix_tls_server_signature_size", bits);
                }
            }
            "server-digest" => put(f, "postfix_tls_server_digest", next),
            _ => {}
        }
    }
}

fn queue_id_or_noqueue(f: &mut Facts, q: Option<&str>) {
    put(f, "postfix_queueid", q.unwrap_or("NOQUEUE"));
}

fn smtpd(f: &mut Facts, s: &Smtpd<'_>) {
    match s {
        Smtpd::Connect { client } => endpoint(f, "client", client),
        Smtpd::Disconnect { client, commands } => {
            endpoint(f, "client", client);
            let counts: Vec<String> = commands
                .iter()
                .map(|c| {
                    let name = if c.name == "commands" {
                        "count"
                    } else {
                        c.name
                    };
                    put(f, &format!("postfix_cmd_{name}"), c.total);
                    put(f, &format!("postfix_cmd_{name}_accepted"), c.ok);
                    // Postfix writes `name=N` when all succeeded, but `commands=0/0`.
                    if c.ok == c.total && c.total > 0 {
                        format!("{}={}", c.name, c.total)
                    } else {
                        format!("{}={}/{}", c.name, c.ok, c.total)
                    }
                })
                .collect();
            put(f, "postfix_command_counter_data", counts.join(" "));
        }
        Smtpd::Client {
            queue_id,
            client,
            sasl_username,
            ..
        } => {
            put(f, "postfix_queueid", queue_id);
            endpoint(f, "client", client);
            put(f, "kv.client", format!("{}[{}]", client.host, client.ip));
            if let Some(u) = sasl_username {
                put(f, "kv.sasl_username", u);
            }
        }
        Smtpd::Check {
            queue_id,
            action,
            stage,
            client,
            reply: r,
            envelope: e,
        } => {
            queue_id_or_noqueue(f, *queue_id);
            put(f, "postfix_action", snake(action));
            put(f, "postfix_smtp_stage", stage);
            endpoint(f, "client", client);
            reply(f, "status", r);
            put(f, "postfix_status_data", r.text);
            put(f, "postfix_status_message", r.text);
            envelope(f, e);
        }
        Smtpd::Proxy {
            queue_id,
            accepted,
            stage,
            reply: r,
            envelope: e,
        } => {
            if let Some(q) = queue_id {
                put(f, "postfix_queueid", q);
            }
            put(
                f,
                "postfix_proxy_result",
                if *accepted { "accept" } else { "reject" },
            );
            put(f, "postfix_proxy_smtp_stage", stage);
            put(f, "postfix_proxy_message", r.text);
            reply(f, "proxy_status", r);
            envelope(f, e);
        }
        Smtpd::LostConnection { after, client, .. } => {
            lost(f, "lost connection", Some(after), client)
        }
        Smtpd::Timeout { after, client } => lost(f, "timeout", Some(after), client),
        Smtpd::TooManyErrors { after, client } => lost(f, "too many errors", Some(after), client),
        Smtpd::ClientEvent {
            kind,
            after,
            client,
            ..
        } => lost(f, kind, *after, client),
        Smtpd::SaslFailed {
            client,
            method,
            reason,
            sasl_username,
        } => {
            endpoint(f, "client", client);
            put(
                f,
                "postfix_message",
                format!("SASL {method} authentication failed: {reason}"),
            );
            if let Some(u) = sasl_username {
                put(f, "postfix_sasl_username", u);
            }
        }
        Smtpd::Note { text } => {
            if let Some(k) = text.strip_prefix("discarding EHLO keywords: ") {
                put(f, "postfix_discarded_ehlo_keywords", k);
            }
        }
    }
}

fn lost(f: &mut Facts, what: &str, after: Option<&str>, client: &Endpoint<'_>) {
    put(f, "postfix_smtpd_lostconn_data", what);
    if let Some(a) = after {
        put(f, "postfix_smtp_stage", a);
    }
    endpoint(f, "client", client);
}

fn postscreen(f: &mut Facts, p: &Postscreen<'_>) {
    match p {
        Postscreen::Connect { client, server } => {
            endpoint(f, "client", client);
            endpoint(f, "server", server);
        }
        Postscreen::Disconnect { client } => endpoint(f, "client", client),
        Postscreen::Pass { new, client } => {
            put(
                f,
                "postfix_postscreen_access",
                if *new { "PASS NEW" } else { "PASS OLD" },
            );
            endpoint(f, "client", client);
        }
        Postscreen::DnsblRank { client, rank } => {
            put(f, "postfix_postscreen_violation", "DNSBL");
            put(f, "postfix_postscreen_dnsbl_rank", rank);
            endpoint(f, "client", client);
        }
        Postscreen::Pregreet {
            after_secs, client, ..
        } => violation(f, "PREGREET", *after_secs, None, client),
        Postscreen::Hangup {
            after_secs, client, ..
        } => violation(f, "HANGUP", *after_secs, None, client),
        Postscreen::CommandPipelining { client, stage } => {
            violation(f, "COMMAND PIPELINING", None, Some(stage), client)
        }
        Postscreen::Violation {
            kind,
            client,
            stage,
            ..
        } => violation(f, kind, None, Some(stage), client),
        Postscreen::Reject {
            stage,
            client,
            reply: r,
            envelope: e,
        } => {
            put(f, "postfix_queueid", "NOQUEUE");
            put(f, "postfix_action", "reject");
            put(f, "postfix_smtp_stage", stage);
            endpoint(f, "client", client);
            reply(f, "status", r);
            put(f, "postfix_status_data", r.text);
            put(f, "postfix_status_message", r.text);
            if r.code.is_none() {
                put(f, "postfix_postscreen_toobusy_data", r.text);
            }
            envelope(f, e);
        }
        Postscreen::Note { kind, client, .. } => {
            put(f, "postfix_postscreen_access", kind);
            if let Some(c) = client {
                endpoint(f, "client", c);
            }
        }
    }
}

fn violation(
    f: &mut Facts,
    kind: &str,
    after_secs: Option<f64>,
    stage: Option<&str>,
    client: &Endpoint<'_>,
) {
    put(f, "postfix_postscreen_violation", kind);
    if let Some(t) = after_secs {
        put(f, "postfix_postscreen_violation_time", t);
    }
    if let Some(s) = stage {
        put(f, "postfix_smtp_stage", s);
    }
    endpoint(f, "client", client);
}

fn cleanup(f: &mut Facts, c: &Cleanup<'_>) {
    match c {
        Cleanup::MessageId {
            queue_id,
            message_id,
        } => {
            put(f, "postfix_queueid", queue_id);
            put(f, "postfix_message-id", message_id);
        }
        Cleanup::Check {
            queue_id,
            action,
            source,
            stage,
            client,
            reply: r,
            envelope: e,
            detail,
            argument,
        } => {
            put(f, "postfix_queueid", queue_id);
            envelope(f, e);
            let client_text =
                client.map_or("local".to_string(), |c| format!("{}[{}]", c.host, c.ip));
            let action_word = match action {
                CheckAction::Warn => "warning".to_string(),
                other => snake(other),
            };
            if let Some(milter_where) = source.strip_prefix("milter") {
                let result = match milter_where.strip_prefix('-') {
                    Some(w) => format!("{w}-{action_word}"),
                    None => action_word.clone(),
                };
                put(f, "postfix_milter_result", result);
                let message = match stage {
                    Some(stage) => format!(
                        "{stage} from {client_text}: {}",
                        r.map_or(argument.unwrap_or_default(), |r| r.text)
                    ),
                    None => format!(
                        "{} {detail} from {client_text}",
                        milter_where.trim_start_matches('-')
                    ),
                };
                put(f, "postfix_milter_message", message);
                if let Some(a) = argument {
                    put(f, "postfix_milter_data", a);
                }
            } else {
                put(f, "postfix_message_level", &action_word);
                put(
                    f,
                    "postfix_message",
                    format!("{source} {detail} from {client_text}"),
                );
                if *action == CheckAction::Prepend {
                    put(f, "postfix_prepend_type", source);
                    put(f, "postfix_prepend_trigger", detail);
                    if let Some(a) = argument {
                        put(f, "postfix_prepend_value", a);
                    }
                }
            }
        }
        Cleanup::Note { queue_id, text } => {
            if let Some(q) = queue_id {
                put(f, "postfix_queueid", q);
            }
            put(f, "postfix_message", text);
        }
    }
}

fn delivery(f: &mut Facts, d: &Delivery<'_>) {
    put(f, "postfix_queueid", d.queue_id);
    let status = match d.status {
        DeliveryStatus::Other => "other".to_string(),
        s => snake(&s),
    };
    put(f, "postfix_status", status);
    for key in [
        "smtp_response",
        "local_response",
        "pipe_response",
        "error_response",
    ] {
        put(f, &format!("postfix_{key}"), d.status_text);
    }
    put(f, "kv.to", d.to);
    if let Some(o) = d.orig_to {
        put(f, "kv.orig_to", o);
    }
    if let Some(r) = &d.relay {
        put(f, "kv.relay", r.raw);
        put(f, "postfix_relay_hostname", r.host);
        if let Some(ip) = r.ip {
            put(f, "postfix_relay_ip", ip);
        }
        if let Some(p) = r.port {
            put(f, "postfix_relay_port", p);
        }
        if let Some(s) = r.socket {
            put(f, "postfix_relay_service", s);
        }
    }
    if let Some(delay) = d.delay_secs {
        put(f, "kv.delay", delay);
    }
    if let Some(x) = &d.delays {
        put(
            f,
            "kv.delays",
            format!(
                "{}/{}/{}/{}",
                x.before_qmgr_secs, x.in_qmgr_secs, x.conn_setup_secs, x.transmission_secs
            ),
        );
        put(f, "postfix_delay_before_qmgr", x.before_qmgr_secs);
        put(f, "postfix_delay_in_qmgr", x.in_qmgr_secs);
        put(f, "postfix_delay_conn_setup", x.conn_setup_secs);
        put(f, "postfix_delay_transmission", x.transmission_secs);
    }
    if let Some(dsn) = d.dsn {
        put(f, "kv.dsn", dsn);
    }
    if let Some(t) = &d.tls {
        put(f, "kv.tls", t.raw);
        put(f, "postfix_tls_security_level", t.level);
        if t.level_undecided {
            put(f, "postfix_tls_policy_undecided", "?");
        }
        if let Some(x) = t.downgrade {
            put(f, "postfix_tls_downgrade_level", x);
        }
        if t.requiretls {
            put(f, "postfix_requiretls", "requiretls");
        }
        if t.requiretls_violated {
            put(f, "postfix_requiretls_policy_violation", "!");
        }
        if t.requiretls_undecided {
            put(f, "postfix_requiretls_policy_undecided", "?");
        }
        if let Some(x) = t.requiretls_downgrade {
            put(f, "postfix_requiretls_downgrade_level", x);
        }
    }
}

fn smtp(f: &mut Facts, s: &Smtp<'_>) {
    let (queue_id, server) = match s {
        Smtp::ConnectFailed {
            queue_id,
            server,
            error,
        } => {
            put(f, "postfix_smtp_lostconn_data", error);
            (queue_id, server)
        }
        Smtp::LostConnection {
            queue_id,
            server,
            stage,
        } => {
            put(f, "postfix_smtp_lostconn_data", "lost connection");
            put(f, "postfix_smtp_lostconn_reason", stage);
            (queue_id, server)
        }
        Smtp::Timeout {
            queue_id, server, ..
        } => (queue_id, server),
        Smtp::ServerReply {
            queue_id,
            server,
            reply,
            in_reply_to,
        } => {
            put(f, "postfix_smtp_response", reply.text);
            if let Some(stage) = in_reply_to {
                put(f, "postfix_smtp_stage", stage);
            }
            (queue_id, server)
        }
        Smtp::RefusedToTalk {
            queue_id,
            server,
            reply,
        }
        | Smtp::SaslFailed {
            queue_id,
            server,
            reply,
        } => {
            put(f, "postfix_smtp_response", reply.text);
            (queue_id, server)
        }
        Smtp::TlsFailure {
            queue_id,
            server,
            text,
            ..
        } => {
            put(f, "postfix_tls_error", text);
            put(f, "postfix_smtp_lostconn_data", text);
            (queue_id, server)
        }
        Smtp::PixWorkarounds {
            queue_id,
            workarounds,
            server,
        } => {
            put(f, "postfix_pix_workaround", workarounds);
            (queue_id, server)
        }
    };
    if let Some(q) = queue_id {
        put(f, "postfix_queueid", q);
    }
    endpoint(f, "relay", server);
}

fn anvil(f: &mut Facts, a: &Anvil<'_>) {
    let (service, client, at) = match a {
        Anvil::MaxRate {
            metric,
            value,
            per_secs,
            service,
            client,
            at,
        } => {
            if *metric == "connection rate" {
                put(f, "postfix_anvil_conn_rate", value);
                if let Some(p) = per_secs {
                    put(f, "postfix_anvil_conn_period", p);
                }
            }
            (service, client, at)
        }
        Anvil::MaxCount {
            metric,
            value,
            service,
            client,
            at,
        } => {
            if *metric == "connection count" {
                put(f, "postfix_anvil_conn_count", value);
            }
            (service, client, at)
        }
        Anvil::CacheSize { value, at } => {
            put(f, "postfix_anvil_cache_size", value);
            (&None, &None, at)
        }
    };
    put(f, "postfix_anvil_timestamp", at);
    if let Some(s) = service {
        put(f, "postfix_service", s);
    }
    match client {
        Some("unknown") => put(f, "postfix_client_ip_unknown", "unknown"),
        Some(c) => put(f, "postfix_client_ip", c),
        None => {}
    }
}

#[test]
fn yaml_scalars() {
    assert_eq!(yaml_scalar(r#""a \"b\"\r\n"  "#), "a \"b\"\r\n");
    assert_eq!(yaml_scalar("2604:8d00:0:1::3"), "2604:8d00:0:1::3");
    assert_eq!(yaml_scalar("'it''s'"), "it's");
    assert_eq!(
        key_values("from=<a b> to=<c>, proto=ESMTP, helo=<h>"),
        vec![
            ("from".to_string(), "a b".to_string()),
            ("to".to_string(), "c".to_string()),
            ("proto".to_string(), "ESMTP".to_string()),
            ("helo".to_string(), "h".to_string()),
        ]
    );
}
