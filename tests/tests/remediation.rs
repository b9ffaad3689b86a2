//! Playbooks end to end, on loopback: the collector (in process) runs playbooks, a real agent
//! (in process, actions enabled) acts on a real Postfix.
//!
//! - A DNSBL listing an agent reports fires `dnsbl_listed`; an `auto` playbook switches the
//!   sender domain to another IP pool (mail leaves from 127.0.0.2); when the listing is gone the
//!   alert resolves and the switch is reverted — `main.cf`/`master.cf` byte for byte.
//! - A throttle in `auto` mode changes the real configuration and is reverted after its TTL.
//! - `approve` mode waits, refuses an approval without the token, runs after one with it, and an
//!   approval nobody gives expires.
//! - Hostile label values are refused and audited, and nothing is sent.
//! - A burst of 1 000 triggering alerts: the rate limit and the cooldown hold.
//! - The kill switch stops a running playbook before its next step.
//!
//! Needs root and the Debian `postfix` package. Takes about 40 s.

#[path = "support/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;
#[path = "support/webhook.rs"]
mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpulse_agent::act::{ActionKind, ActionsConfig, PoolConfig};
use mailpulse_collector::alerting::{AlertState, State, Transition};
use mailpulse_collector::ingest::auth::TokenSpec;
use mailpulse_collector::remediate::Input;
use mailpulse_proto::v1::{Sample, sample};
use mailpulse_tests::postfix::{self, PostfixConfig, PostfixInstance};
use mailpulse_tests::smtp_client::{Envelope, submit};
use mailpulse_tests::smtp_sink::{SinkMode, SmtpSink};
use serde_json::Value;

use agent::{InProcessAgent, empty_log};
use support::*;

const API_TOKEN: &str = "api-token-0123456789abcdef";
const WEBHOOK_SECRET: &str = "webhook-secret-0123456789abcdef";
const PROBE_TOKEN: &str = "token-of-probe-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

const PLAYBOOKS: &str = r#"
[[playbooks]]
name = "listed-ip-to-pool-blue"
mode = "auto"
trigger = { alert = "dnsbl_listed" }
[[playbooks.steps]]
action = "switch_ip_pool"
params = { sender_domain = "shop.test", pool = "blue" }

[[playbooks]]
name = "slow-down"
mode = "auto"
revert_after_secs = 3
revert_on_resolve = false
trigger = { alert = "bounce_ratio" }
[[playbooks.steps]]
action = "throttle_destination"
params = { domain = "$domain", rate_delay_secs = "1" }

[[playbooks]]
name = "hold-with-approval"
mode = "approve"
approval_expiry_secs = 2
trigger = { alert = "messages_deferred", matchers = { reason_class = "rate-limit" } }
[[playbooks.steps]]
action = "hold_domain"
params = { domain = "ok.test" }

[[playbooks]]
name = "burst"
trigger = { alert = "sasl_user_failure_ratio" }
[[playbooks.steps]]
action = "hold_sender"
params = { sender = "$sasl_user" }

[[playbooks]]
name = "send-it-later"
mode = "auto"
revert_after_secs = 2
revert_on_resolve = false
trigger = { alert = "messages_received" }
[[playbooks.steps]]
action = "hold_sender"
params = { sender = "news@shop.test" }

[[playbooks]]
name = "tell-the-team"
mode = "auto"
trigger = { alert = "postscreen_connections" }
[[playbooks.steps]]
action = "notify"
params = { message = "Inbound pressure: postscreen sees more connections than usual" }

[[playbooks]]
name = "two-steps"
mode = "auto"
trigger = { alert = "sasl_auth_failures" }
[[playbooks.steps]]
action = "hold_domain"
params = { domain = "never.test" }
[[playbooks.steps]]
action = "release_domain"
params = { domain = "never.test" }
"#;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn alert(name: &str, fingerprint: &str, labels: &[(&str, &str)]) -> AlertState {
    let mut map: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("alertname".into(), name.into());
    map.insert("host".into(), "mx1.example".into());
    AlertState {
        fingerprint: fingerprint.into(),
        labels: map,
        annotations: BTreeMap::from([("summary".to_owned(), format!("{name} (test)"))]),
        state: State::Firing,
        active_since_unix_ms: now_ms(),
        firing_since_unix_ms: Some(now_ms()),
        resolved_unix_ms: None,
        last_window_unix_ms: now_ms(),
        detectors: vec!["test".into()],
        windows: 1,
        peak_score: 1.0,
    }
}

fn audit(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls the audit file until `pred` holds for it (bounded by `WAIT`).
async fn wait_audit(file: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let entries = audit(file);
        if pred(&entries) {
            return entries;
        }
        if start.elapsed() > WAIT {
            panic!("{what}: {entries:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has(entries: &[Value], playbook: &str, event: &str) -> usize {
    entries
        .iter()
        .filter(|e| e["playbook"] == playbook && e["event"] == event)
        .count()
}

fn config_bytes(instance: &PostfixInstance) -> (Vec<u8>, Vec<u8>) {
    let read = |f: &str| std::fs::read(instance.config_dir().join(f)).expect("read config");
    (read("main.cf"), read("master.cf"))
}

async fn post(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let endpoint = mailpulse_collector::alerting::http::Endpoint::new(
        &format!("http://{addr}"),
        &Default::default(),
        Duration::from_secs(5),
    )
    .expect("endpoint")
    .join(path);
    let headers: Vec<(&str, String)> = token
        .map(|t| vec![("authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    endpoint
        .post_json(&headers, bytes::Bytes::from_static(b"{}"))
        .await
        .expect("answer")
        .status
}

struct Setup {
    _dir: tempfile::TempDir,
    audit: PathBuf,
    instance: PostfixInstance,
    sink: SmtpSink,
    _tempfail: SmtpSink,
    collector: mailpulse_collector::RunningCollector,
    agent: Option<InProcessAgent>,
    /// What the webhook receiver took (verified payloads).
    received: std::sync::Arc<std::sync::Mutex<webhook::Received>>,
}

async fn setup() -> Setup {
    assert!(
        postfix::available(),
        "needs root and the Debian postfix package"
    );
    let sink = SmtpSink::start(SinkMode::Accept).expect("sink");
    let tempfail = SmtpSink::start(SinkMode::Tempfail).expect("tempfail sink");
    let postfix_config = PostfixConfig::default()
        .route("ok.test", &sink.nexthop())
        .route("slow.test", &tempfail.nexthop())
        .param("maximal_queue_lifetime", "1d")
        .param("bounce_queue_lifetime", "1d")
        .without_catch_all()
        .param("relayhost", &format!("[127.0.0.1]:{}", sink.port()));
    let instance = PostfixInstance::start(&postfix_config).expect("postfix starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let playbooks = dir.path().join("playbooks.toml");
    std::fs::write(&playbooks, PLAYBOOKS).expect("playbooks");
    let token = dir.path().join("api.token");
    std::fs::write(&token, format!("{API_TOKEN}\n")).expect("token");
    let audit = dir.path().join("audit.jsonl");
    let mut cfg = config(dir.path());
    cfg.auth.tokens.insert(
        "probe".into(),
        TokenSpec::bound(PROBE_TOKEN, &["mx1.example"]),
    );
    cfg.store.resolution_secs = 1;
    cfg.store.fold_interval_secs = 1;
    cfg.detect.interval_secs = 1;
    cfg.detect.settle_secs = 0;
    cfg.remediation.playbooks_file = Some(playbooks);
    cfg.remediation.api_token_file = Some(token);
    cfg.remediation.audit_file = Some(audit.clone());
    cfg.remediation.max_actions_per_minute = 30;
    cfg.remediation.cooldown_secs = 600;
    cfg.remediation.result_timeout_secs = 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let received = std::sync::Arc::new(std::sync::Mutex::new(webhook::Received::default()));
    tokio::spawn(webhook::receiver(
        listener,
        WEBHOOK_SECRET.to_owned(),
        received.clone(),
    ));
    let secret = dir.path().join("webhook.secret");
    std::fs::write(&secret, format!("{WEBHOOK_SECRET}\n")).expect("secret");
    cfg.alerting.webhooks = vec![mailpulse_collector::alerting::notify::WebhookTarget {
        url: hook,
        receiver: "ops".into(),
        secret_file: secret,
        tls: Default::default(),
        timeout_secs: 2,
        max_attempts: 5,
    }];
    let collector = start(cfg).await;

    let mut actions = ActionsConfig {
        enabled: ActionKind::ALL.to_vec(),
        instances: BTreeMap::from([("test".to_owned(), instance.config_dir().to_owned())]),
        timeout_secs: 20,
        ..ActionsConfig::default()
    };
    actions.pools.insert(
        "blue".into(),
        PoolConfig {
            bind_address: "127.0.0.2".parse().expect("address"),
            helo_name: None,
        },
    );
    let agent = InProcessAgent::spawn(
        collector.grpc_addr(),
        ("mx1", "mx1.example", TOKEN_MX1),
        vec![empty_log(dir.path())],
        dir.path(),
        |opts| opts.actions = Some(actions),
    );
    // The agent has said Hello with its `actions` capability.
    let start = Instant::now();
    while !collector
        .store()
        .agents()
        .iter()
        .any(|a| a.agent_id == "mx1" && a.capabilities.iter().any(|c| c == "actions"))
    {
        assert!(start.elapsed() < WAIT, "the agent never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Setup {
        _dir: dir,
        audit,
        instance,
        sink,
        _tempfail: tempfail,
        collector,
        agent: Some(agent),
        received,
    }
}

impl Setup {
    async fn stop(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
        self.collector.shutdown().await.expect("clean shutdown");
    }

    async fn fire(&self, alerts: Vec<AlertState>) {
        let remediation = self.collector.remediation().expect("remediation is on");
        assert!(
            remediation
                .send(Input::Transitions(
                    alerts.into_iter().map(Transition::Fired).collect()
                ))
                .await
        );
    }
}

fn listed(window_ms: i64, value: f64) -> Sample {
    Sample {
        metric: "dnsbl_listed".into(),
        labels: labels(&[("ip", "192.0.2.7"), ("list", "bl.spamcop.net")]),
        window_start_unix_ms: window_ms / 1000 * 1000,
        window_secs: 1,
        value: Some(sample::Value::Gauge(value)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_switches_the_pool_until_the_alert_resolves() {
    let s = setup().await;
    let original = config_bytes(&s.instance);
    // Another stream, without actions, reports the listing for the host.
    let mut client = client(s.collector.grpc_addr()).await;
    let mut probe = AgentStream::open(&mut client, Some(PROBE_TOKEN))
        .await
        .expect("probe stream");
    probe.send(hello("probe", "mx1.example")).await;
    let mut seq = 1;
    probe
        .batch(seq, vec![listed(now_ms(), 1.0)])
        .await
        .expect("ack");
    let entries = wait_audit(&s.audit, "the pool switch", |e| {
        e.iter().any(|e| {
            e["playbook"] == "listed-ip-to-pool-blue"
                && e["event"] == "result"
                && e["status"] == "ok"
        })
    })
    .await;
    assert!(
        entries
            .iter()
            .any(|e| e["event"] == "sent" && e["agent"] == "mx1" && e["kind"] == "switch_ip_pool"),
        "sent to the agent that runs actions, not to the probe"
    );
    submit(
        s.instance.smtpd_addr(),
        &Envelope {
            helo: "client.test",
            from: "news@shop.test",
            recipients: vec!["a@far.test".into()],
        },
        "Subject: pool\n\nhello\n",
    )
    .expect("submission");
    let start = Instant::now();
    while s.sink.stats().messages < 1 {
        assert!(
            start.elapsed() < WAIT,
            "not delivered:\n{}",
            s.instance.maillog()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.sink.stats().peers[0].to_string(), "127.0.0.2");

    // The listing is gone: the alert resolves, the switch is reverted.
    let start = Instant::now();
    loop {
        seq += 1;
        probe
            .batch(seq, vec![listed(now_ms(), 0.0)])
            .await
            .expect("ack");
        let done = audit(&s.audit).iter().any(|e| {
            e["kind"] == "restore_ip_pool" && e["event"] == "result" && e["status"] == "ok"
        });
        if done {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "never reverted: {:#?}",
            audit(&s.audit)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        config_bytes(&s.instance) == original,
        "main.cf and master.cf as they were"
    );
    drop(probe);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_approval_injection_burst_and_kill_switch() {
    let s = setup().await;
    let original = config_bytes(&s.instance);

    // 1. A throttle in auto mode, reverted after its TTL (3 s).
    let fired = Instant::now();
    s.fire(vec![alert(
        "bounce_ratio",
        "f-throttle",
        &[("domain", "ok.test")],
    )])
    .await;
    wait_audit(&s.audit, "throttled", |e| {
        e.iter().any(|e| {
            e["kind"] == "throttle_destination" && e["event"] == "result" && e["status"] == "ok"
        })
    })
    .await;
    let applied = fired.elapsed();
    let delay = std::process::Command::new(postfix::command_path("postconf"))
        .arg("-c")
        .arg(s.instance.config_dir())
        .args(["-h", "mailpulse_slow_destination_rate_delay"])
        .output()
        .expect("postconf");
    assert_eq!(String::from_utf8_lossy(&delay.stdout).trim(), "1s");
    wait_audit(&s.audit, "unthrottled", |e| {
        e.iter().any(|e| {
            e["kind"] == "unthrottle_destination" && e["event"] == "result" && e["status"] == "ok"
        })
    })
    .await;
    let reverted = fired.elapsed();
    assert!(
        config_bytes(&s.instance) == original,
        "main.cf and master.cf as they were"
    );
    println!(
        "alert → throttle applied {:.2} s, → reverted (TTL 3 s) {:.2} s",
        applied.as_secs_f64(),
        reverted.as_secs_f64()
    );

    // 2. "Send it later": a sender's deferred mail is held, and released by itself after
    // the playbook's 2 s.
    for i in 0..2 {
        submit(
            s.instance.smtpd_addr(),
            &Envelope {
                helo: "client.test",
                from: "news@shop.test",
                recipients: vec![format!("u{i}@slow.test")],
            },
            "Subject: later\n\nhello\n",
        )
        .expect("submission");
    }
    let queue_is = |name: &str| {
        let queue = s.instance.queue().unwrap_or_default();
        queue.len() == 2 && queue.iter().all(|m| m.queue_name == name)
    };
    let start = Instant::now();
    while !queue_is("deferred") {
        assert!(
            start.elapsed() < WAIT,
            "not deferred: {:?}",
            s.instance.queue()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.fire(vec![alert("messages_received", "f-later", &[])])
        .await;
    let start = Instant::now();
    while !queue_is("hold") {
        assert!(start.elapsed() < WAIT, "not held: {:?}", s.instance.queue());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = Instant::now();
    while !queue_is("deferred") {
        assert!(
            start.elapsed() < WAIT,
            "not released: {:?}",
            s.instance.queue()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "held, then released {:.1} s later",
        held.elapsed().as_secs_f64()
    );

    // 3. Approval: waits, needs the token, runs once approved; an unanswered one expires.
    s.fire(vec![alert(
        "messages_deferred",
        "f-approve",
        &[("reason_class", "rate-limit")],
    )])
    .await;
    let entries = wait_audit(&s.audit, "awaiting approval", |e| {
        has(e, "hold-with-approval", "awaiting_approval") == 1
    })
    .await;
    let id = entries
        .iter()
        .find(|e| e["event"] == "awaiting_approval")
        .and_then(|e| e["action_id"].as_str())
        .expect("an id")
        .to_owned();
    let (status, body) = http_get(s.collector.http_addr(), "/api/v1/actions").await;
    assert_eq!(status, 200);
    let pending: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        pending["awaiting_approval"][0]["id"].to_string(),
        id,
        "{pending}"
    );
    let http = s.collector.http_addr();
    let path = format!("/api/v1/actions/{id}/approve");
    assert_eq!(post(http, &path, None).await, 401);
    assert_eq!(
        post(http, &path, Some("wrong-token-0123456789abcdef")).await,
        401
    );
    assert_eq!(post(http, &path, Some(API_TOKEN)).await, 200);
    wait_audit(&s.audit, "approved and run", |e| {
        has(e, "hold-with-approval", "approved") == 1
            && e.iter().any(|e| {
                e["playbook"] == "hold-with-approval"
                    && e["event"] == "result"
                    && e["status"] == "ok"
            })
    })
    .await;
    s.fire(vec![alert(
        "messages_deferred",
        "f-expire",
        &[("reason_class", "rate-limit")],
    )])
    .await;
    wait_audit(&s.audit, "expired", |e| {
        has(e, "hold-with-approval", "expired") == 1
    })
    .await;

    // 4. Hostile label values: refused before anything is sent.
    let hostile = [
        "ok.test; postsuper -d ALL",
        "$(reboot).test",
        "`id`.test",
        "ok.test\nREJECT",
        "../../etc/passwd",
        "ok.test\0",
        "ok test",
    ];
    let long = format!("{}.test", "a".repeat(400));
    let mut alerts: Vec<AlertState> = hostile
        .iter()
        .enumerate()
        .map(|(i, d)| alert("bounce_ratio", &format!("f-hostile-{i}"), &[("domain", d)]))
        .collect();
    alerts.push(alert(
        "bounce_ratio",
        "f-hostile-long",
        &[("domain", &long)],
    ));
    let sent_before = has(&audit(&s.audit), "slow-down", "sent");
    s.fire(alerts).await;
    let entries = wait_audit(&s.audit, "hostile refused", |e| {
        has(e, "slow-down", "refused") == hostile.len() + 1
    })
    .await;
    assert_eq!(
        has(&entries, "slow-down", "sent"),
        sent_before,
        "nothing sent"
    );

    // 5. A notify step: a signed message to the webhook receivers.
    s.fire(vec![alert("postscreen_connections", "f-notify", &[])])
        .await;
    let start = Instant::now();
    let message = loop {
        let found = s
            .received
            .lock()
            .expect("lock")
            .payloads
            .iter()
            .find(|p| p["kind"] == "mailpulse.playbook.notify")
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(start.elapsed() < WAIT, "no notify message");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        message["message"],
        "Inbound pressure: postscreen sees more connections than usual"
    );
    assert_eq!(message["playbook"], "tell-the-team");
    assert_eq!(message["alert"]["fingerprint"], "f-notify");
    assert_eq!(message["host"], "mx1.example");
    wait_audit(&s.audit, "notified", |e| {
        e.iter().any(|e| {
            e["playbook"] == "tell-the-team" && e["event"] == "notified" && e["status"] == "200"
        })
    })
    .await;

    // 6. The built-in playbook: complaints about a sender → its mail held, after approval.
    s.fire(vec![alert(
        "complaints",
        "f-complaints",
        &[("sender", "news@shop.test")],
    )])
    .await;
    let entries = wait_audit(&s.audit, "pause-on-complaints waits", |e| {
        has(e, "pause-on-complaints", "awaiting_approval") == 1
    })
    .await;
    let waiting = entries
        .iter()
        .find(|e| e["playbook"] == "pause-on-complaints")
        .expect("entry");
    assert!(
        waiting["detail"]
            .as_str()
            .is_some_and(|d| d.contains("hold_sender(sender=news@shop.test)")),
        "{waiting}"
    );

    // 7. The kill switch stops a running playbook before its second step.
    let remediation = s.collector.remediation().expect("remediation");
    assert!(
        remediation
            .send(Input::Transitions(vec![Transition::Fired(alert(
                "sasl_auth_failures",
                "f-kill",
                &[]
            ))]))
            .await
    );
    assert_eq!(
        post(http, "/api/v1/remediation/kill", Some(API_TOKEN)).await,
        200
    );
    let entries = wait_audit(&s.audit, "killed between steps", |e| {
        has(e, "two-steps", "killed") == 1
    })
    .await;
    assert_eq!(
        has(&entries, "two-steps", "sent"),
        1,
        "only the first step was sent"
    );
    assert!(remediation.killed());
    assert_eq!(
        post(http, "/api/v1/remediation/resume", Some(API_TOKEN)).await,
        200
    );
    assert!(!remediation.killed());
    // 8. A burst of 1 000 alerts (dry runs, distinct senders): what the rate limit (30 a
    // minute, all playbooks together) leaves is sent, the rest refused; then the same again:
    // the cooldown holds those sent, the rate limit the rest.
    let burst = |round: &str| {
        (0..1000)
            .map(|i| {
                alert(
                    "sasl_user_failure_ratio",
                    &format!("f-burst-{round}-{i}"),
                    &[("sasl_user", &format!("user{i}@shop.test"))],
                )
            })
            .collect::<Vec<_>>()
    };
    let burst_started = now_ms();
    let sent_lately = audit(&s.audit)
        .iter()
        .filter(|e| e["event"] == "sent" && e["at_unix_ms"].as_i64() > Some(burst_started - 59_000))
        .count();
    s.fire(burst("a")).await;
    let entries = wait_audit(&s.audit, "first burst judged", |e| {
        has(e, "burst", "sent") + has(e, "burst", "rate_limited") == 1000
    })
    .await;
    let sent = has(&entries, "burst", "sent");
    assert_eq!(
        sent + sent_lately,
        30,
        "the rate limit: {sent} + {sent_lately}"
    );
    s.fire(burst("b")).await;
    let entries = wait_audit(&s.audit, "second burst judged", |e| {
        has(e, "burst", "cooldown") + has(e, "burst", "rate_limited") == 2000 - sent
    })
    .await;
    assert_eq!(has(&entries, "burst", "sent"), sent, "no more sent");
    let text = scrape(&s.collector).await;
    let counted = |result: &str| {
        value(
            &text,
            &format!(
                "mailpulse_remediation_actions_total{{kind=\"hold_sender\",mode=\"dry_run\",result=\"{result}\"}}"
            ),
        )
    };
    assert_eq!(counted("planned"), Some(sent as f64), "{text}");
    assert_eq!(
        counted("rate_limited"),
        Some(has(&entries, "burst", "rate_limited") as f64)
    );
    assert_eq!(counted("cooldown"), Some(sent as f64));
    assert_eq!(value(&text, "mailpulse_remediation_kill_switch"), Some(0.0));
    assert_eq!(
        has(&entries, "burst", "cooldown"),
        sent,
        "those sent are cooling down"
    );
    println!(
        "burst of 1 000 alerts twice: {sent} sent, {} refused by the rate limit, {sent} by the cooldown",
        has(&entries, "burst", "rate_limited")
    );

    s.stop().await;
}
