//! Remediation actions on a real Postfix (loopback): the agent's executor moves real messages
//! between the deferred queue and `hold` by domain and by sender, requeues and flushes; a
//! throttle sends a destination's mail through the slow transport to the same next hop and its
//! revert restores `main.cf` and `master.cf` byte for byte; a pool switch makes a sender
//! domain's mail leave from the pool's address (127.0.0.2); a blocked network is refused at
//! RCPT. Hostile parameters are refused and nothing runs; an action the agent does not enable is
//! refused even when the collector asks.
//!
//! Needs root and the Debian `postfix` package (`scripts/install-deps`). Takes about 30 s.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mailpulse_agent::act::{ActionKind, ActionsConfig, Executor, PoolConfig};
use mailpulse_proto::v1 as pb;
use mailpulse_tests::net::poll_until;
use mailpulse_tests::postfix::{self, PostfixConfig, PostfixInstance, QueuedMessage};
use mailpulse_tests::smtp_client::{Envelope, SubmitReport, submit};
use mailpulse_tests::smtp_sink::{SinkMode, SmtpSink};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn executor(instance: &PostfixInstance, state: &Path, enabled: &[ActionKind]) -> Executor {
    let mut cfg = ActionsConfig {
        enabled: enabled.to_vec(),
        instances: BTreeMap::from([("test".to_owned(), instance.config_dir().to_owned())]),
        default_rate_delay_secs: 1,
        min_block_prefix_v4: 16,
        timeout_secs: 20,
        ..ActionsConfig::default()
    };
    cfg.pools.insert(
        "blue".into(),
        PoolConfig {
            bind_address: "127.0.0.2".parse().expect("address"),
            helo_name: Some("blue.mx.test".into()),
        },
    );
    cfg.validate().expect("valid [actions]");
    Executor::new(cfg, state.to_owned())
}

async fn act(ex: &Executor, kind: &str, params: &[(&str, &str)], dry_run: bool) -> (String, Value) {
    let result = ex
        .handle(&pb::Action {
            id: format!("test-{kind}"),
            kind: kind.into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            dry_run,
        })
        .await;
    let output: Value = serde_json::from_str(&result.output).expect("the output is JSON");
    (result.status, output)
}

fn send(instance: &PostfixInstance, from: &str, to: &str) -> SubmitReport {
    submit(
        instance.smtpd_addr(),
        &Envelope {
            helo: "client.test",
            from,
            recipients: vec![to.to_owned()],
        },
        "Subject: action test\n\nhello\n",
    )
    .expect("submission")
}

/// Messages per queue name.
fn queues(instance: &PostfixInstance) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in instance.queue().expect("postqueue -j") {
        *out.entry(m.queue_name).or_default() += 1;
    }
    out
}

fn wait_queues(instance: &PostfixInstance, what: &str, pred: impl Fn(&[QueuedMessage]) -> bool) {
    poll_until(WAIT, Duration::from_millis(200), || {
        let queue = instance.queue().ok()?;
        pred(&queue).then_some(())
    })
    .unwrap_or_else(|_| panic!("{what}: {:?}\n{}", queues(instance), instance.maillog()));
}

fn held_of(queue: &[QueuedMessage], sender: &str) -> usize {
    queue
        .iter()
        .filter(|m| m.queue_name == "hold" && m.sender == sender)
        .count()
}

/// A Postfix instance for `config`, the state directory and an executor with every action.
fn start_with(config: &PostfixConfig) -> (PostfixInstance, tempfile::TempDir, Executor) {
    assert!(
        postfix::available(),
        "needs root and the Debian postfix package"
    );
    let instance = PostfixInstance::start(config).expect("postfix starts");
    let state = tempfile::tempdir().expect("tempdir");
    let ex = executor(&instance, state.path(), &ActionKind::ALL);
    (instance, state, ex)
}

/// Waits until the sink accepted `n` messages (bounded).
fn wait_delivered(sink: &SmtpSink, n: usize, instance: &PostfixInstance) {
    poll_until(WAIT, Duration::from_millis(200), || {
        (sink.stats().messages == n).then_some(())
    })
    .unwrap_or_else(|_| panic!("not delivered:\n{}", instance.maillog()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_actions_move_real_messages_and_hostile_parameters_run_nothing() {
    let sink = SmtpSink::start(SinkMode::Tempfail).expect("sink");
    let (instance, state, ex) = start_with(
        &PostfixConfig::default()
            .route("slow.test", &sink.nexthop())
            .param("maximal_queue_lifetime", "1d")
            .param("bounce_queue_lifetime", "1d"),
    );
    for i in 0..3 {
        send(&instance, "news@shop.test", &format!("u{i}@slow.test"));
    }
    for i in 0..2 {
        send(&instance, "bob@other.test", &format!("v{i}@slow.test"));
    }
    wait_queues(&instance, "five deferred", |q| {
        q.len() == 5 && q.iter().all(|m| m.queue_name == "deferred")
    });

    // A dry run names the exact commands and changes nothing.
    let (status, out) = act(&ex, "hold_domain", &[("domain", "slow.test")], true).await;
    assert_eq!(status, "planned", "{out}");
    assert_eq!(out["selected"], 5, "{out}");
    let dir = instance.config_dir().display().to_string();
    assert_eq!(
        out["commands"][1]["argv"],
        serde_json::json!(["/usr/sbin/postsuper", "-c", dir, "-h", "-"]),
        "{out}"
    );
    assert_eq!(out["commands"][1]["stdin_lines"], 5, "{out}");
    assert_eq!(queues(&instance).get("hold"), None);

    // Hold by domain, release by sender, release the rest by domain, hold by sender.
    let (status, out) = act(&ex, "hold_domain", &[("domain", "SLOW.test")], false).await;
    assert_eq!(status, "ok", "{out}");
    wait_queues(&instance, "all held", |q| {
        q.iter().all(|m| m.queue_name == "hold")
    });
    let (status, out) = act(
        &ex,
        "release_sender",
        &[("sender", "news@shop.test")],
        false,
    )
    .await;
    assert_eq!(
        (status.as_str(), &out["selected"]),
        ("ok", &serde_json::json!(3)),
        "{out}"
    );
    wait_queues(&instance, "news released", |q| {
        held_of(q, "news@shop.test") == 0 && held_of(q, "bob@other.test") == 2
    });
    let (status, _) = act(&ex, "release_domain", &[("domain", "slow.test")], false).await;
    assert_eq!(status, "ok");
    wait_queues(&instance, "none held", |q| {
        q.len() == 5 && q.iter().all(|m| m.queue_name != "hold")
    });
    let (status, _) = act(&ex, "hold_sender", &[("sender", "bob@other.test")], false).await;
    assert_eq!(status, "ok");
    wait_queues(&instance, "bob held", |q| held_of(q, "bob@other.test") == 2);
    let (status, out) = act(&ex, "requeue_domain", &[("domain", "slow.test")], false).await;
    assert_eq!(
        (status.as_str(), &out["selected"]),
        ("ok", &serde_json::json!(3)),
        "{out}"
    );
    let (status, out) = act(&ex, "flush", &[], false).await;
    assert_eq!(status, "ok", "{out}");
    let (status, out) = act(&ex, "flush", &[("site", "slow.test")], false).await;
    assert_eq!(status, "ok", "{out}");

    // Hostile parameters: refused before anything runs, the queue as it was.
    let before = queues(&instance);
    let hostile = [
        ("hold_domain", "domain", "slow.test; postsuper -d ALL"),
        ("hold_domain", "domain", "$(postsuper -d ALL).test"),
        ("hold_domain", "domain", "`postsuper -d ALL`.test"),
        ("hold_domain", "domain", "slow.test\npostsuper -d ALL"),
        ("hold_domain", "domain", "../../etc/passwd"),
        ("hold_domain", "domain", "slow.test\0"),
        ("hold_domain", "domain", "slow test"),
        ("release_sender", "sender", "a;b@shop.test"),
        ("flush", "queue_id", "ALL -d"),
        ("flush", "site", "-d ALL"),
        ("block_client_net", "client_net", "0.0.0.0/0"),
        ("switch_ip_pool", "pool", "../blue"),
    ];
    let long = format!("{}.test", "a".repeat(400));
    let mut cases: Vec<(&str, &str, &str)> = hostile.to_vec();
    cases.push(("hold_domain", "domain", long.as_str()));
    for (kind, name, value) in cases {
        let mut params = vec![(name, value)];
        if kind == "switch_ip_pool" {
            params.push(("sender_domain", "shop.test"));
        }
        let (status, out) = act(&ex, kind, &params, false).await;
        assert_eq!(status, "refused", "{kind} {name}={value:?}: {out}");
        assert_eq!(out["commands"], serde_json::json!([]), "nothing ran: {out}");
    }
    let (status, out) = act(&ex, "delete_everything", &[], false).await;
    assert_eq!(status, "refused", "{out}");
    let (status, out) = act(
        &ex,
        "hold_domain",
        &[("domain", "slow.test"), ("extra", "x")],
        false,
    )
    .await;
    assert_eq!(status, "refused", "{out}");
    assert_eq!(queues(&instance), before, "hostile actions changed nothing");

    // Not enabled on this agent: refused even though the parameters are fine.
    let narrow = executor(&instance, state.path(), &[ActionKind::Flush]);
    let (status, out) = act(&narrow, "hold_domain", &[("domain", "slow.test")], false).await;
    assert_eq!(status, "refused", "{out}");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("not enabled")),
        "{out}"
    );
}

fn bytes(instance: &PostfixInstance) -> (Vec<u8>, Vec<u8>) {
    let read = |f: &str| std::fs::read(instance.config_dir().join(f)).expect("read config");
    (read("main.cf"), read("master.cf"))
}

fn postconf(instance: &PostfixInstance, args: &[&str]) -> String {
    let out = std::process::Command::new(postfix::command_path("postconf"))
        .arg("-c")
        .arg(instance.config_dir())
        .args(args)
        .output()
        .expect("postconf");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_keeps_the_route_and_its_revert_restores_the_configuration_exactly() {
    let sink = SmtpSink::start(SinkMode::Accept).expect("sink");
    let (instance, _state, ex) =
        start_with(&PostfixConfig::default().route("ok.test", &sink.nexthop()));
    let original = bytes(&instance);

    let started = Instant::now();
    let (status, out) = act(
        &ex,
        "throttle_destination",
        &[("domain", "ok.test"), ("rate_delay_secs", "1")],
        false,
    )
    .await;
    let applied = started.elapsed();
    assert_eq!(status, "ok", "{out}");
    assert!(
        postconf(&instance, &["-M", "mailpulse_slow/unix"]).contains("smtp"),
        "the slow transport is in master.cf"
    );
    assert_eq!(
        postconf(&instance, &["-h", "mailpulse_slow_destination_rate_delay"]),
        "1s"
    );
    let maps = postconf(&instance, &["-h", "transport_maps"]);
    assert!(maps.contains("mailpulse_transport,"), "{maps}");
    assert!(
        maps.ends_with(&format!("{}/transport", instance.config_dir().display())),
        "{maps}"
    );
    let table = std::fs::read_to_string(instance.config_dir().join("mailpulse_transport"))
        .expect("owned table");
    assert_eq!(
        table,
        format!("ok.test mailpulse_slow:[127.0.0.1]:{}\n", sink.port())
    );

    for i in 0..3 {
        send(&instance, "news@shop.test", &format!("u{i}@ok.test"));
    }
    // Delivered, through the slow transport, one second apart (its rate delay).
    let through_slow = |log: &str| {
        log.lines()
            .filter(|l| l.contains(" postfix/mailpulse_slow/smtp[") && l.contains("status=sent"))
            .count()
    };
    poll_until(WAIT, Duration::from_millis(200), || {
        (through_slow(&instance.maillog()) == 3).then_some(())
    })
    .unwrap_or_else(|_| {
        panic!(
            "not delivered through the slow transport:\n{}",
            instance.maillog()
        )
    });
    assert_eq!(sink.stats().messages, 3);

    let started = Instant::now();
    let (status, out) = act(
        &ex,
        "unthrottle_destination",
        &[("domain", "ok.test")],
        false,
    )
    .await;
    let reverted = started.elapsed();
    assert_eq!(status, "ok", "{out}");
    assert!(
        out["files"].as_array().is_some_and(|f| f.iter().any(|f| f
            .as_str()
            .is_some_and(|f| f.ends_with("main.cf (restored)")))),
        "{out}"
    );
    assert!(
        bytes(&instance) == original,
        "main.cf and master.cf as they were"
    );
    assert!(!instance.config_dir().join("mailpulse_transport").exists());
    println!(
        "throttle applied in {:.0} ms, reverted in {:.0} ms",
        applied.as_secs_f64() * 1000.0,
        reverted.as_secs_f64() * 1000.0
    );

    // An edit by the administrator while throttled survives the revert.
    let (status, _) = act(&ex, "throttle_destination", &[("domain", "ok.test")], false).await;
    assert_eq!(status, "ok");
    let edit = std::process::Command::new(postfix::command_path("postconf"))
        .arg("-c")
        .arg(instance.config_dir())
        .args(["-e", "smtp_connect_timeout=7s"])
        .status()
        .expect("postconf -e");
    assert!(edit.success());
    let (status, out) = act(
        &ex,
        "unthrottle_destination",
        &[("domain", "ok.test")],
        false,
    )
    .await;
    assert_eq!(status, "ok", "{out}");
    assert_eq!(postconf(&instance, &["-h", "smtp_connect_timeout"]), "7s");
    assert_eq!(postconf(&instance, &["-M", "mailpulse_slow/unix"]), "");
    assert_eq!(
        postconf(&instance, &["-h", "transport_maps"]),
        format!("hash:{}/transport", instance.config_dir().display())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_switch_sends_from_the_pool_address_and_a_block_refuses_at_rcpt() {
    let sink = SmtpSink::start(SinkMode::Accept).expect("sink");
    let (instance, _state, ex) = start_with(
        &PostfixConfig::default()
            .without_catch_all()
            .param("relayhost", &format!("[127.0.0.1]:{}", sink.port())),
    );
    let original = bytes(&instance);

    let (status, out) = act(
        &ex,
        "switch_ip_pool",
        &[("sender_domain", "shop.test"), ("pool", "blue")],
        false,
    )
    .await;
    assert_eq!(status, "ok", "{out}");
    send(&instance, "news@shop.test", "a@far.test");
    wait_delivered(&sink, 1, &instance);
    send(&instance, "bob@other.test", "b@far.test");
    wait_delivered(&sink, 2, &instance);
    let stats = sink.stats();
    let from_of = |sender: &str| {
        let i = stats
            .senders
            .iter()
            .position(|s| s == sender)
            .expect("sender seen");
        stats.peers[i]
    };
    assert_eq!(
        from_of("news@shop.test").to_string(),
        "127.0.0.2",
        "{stats:?}"
    );
    assert_eq!(
        from_of("bob@other.test").to_string(),
        "127.0.0.1",
        "{stats:?}"
    );

    // Block the client network the test submits from: refused at RCPT, then let in again.
    let (status, out) = act(
        &ex,
        "block_client_net",
        &[("client_net", "127.0.0.0/24")],
        false,
    )
    .await;
    assert_eq!(status, "ok", "{out}");
    let refused = poll_until(Duration::from_secs(20), Duration::from_millis(300), || {
        let report = send(&instance, "x@shop.test", "c@far.test");
        report
            .rcpt_replies
            .first()
            .filter(|r| r.code == 554)
            .cloned()
    })
    .unwrap_or_else(|_| panic!("never refused:\n{}", instance.maillog()));
    assert!(refused.text.contains("5.7.1"), "{refused:?}");
    let (status, _) = act(
        &ex,
        "unblock_client_net",
        &[("client_net", "127.0.0.0/24")],
        false,
    )
    .await;
    assert_eq!(status, "ok");
    let (status, _) = act(
        &ex,
        "restore_ip_pool",
        &[("sender_domain", "shop.test")],
        false,
    )
    .await;
    assert_eq!(status, "ok");
    assert!(
        bytes(&instance) == original,
        "main.cf and master.cf as they were"
    );
    poll_until(Duration::from_secs(20), Duration::from_millis(300), || {
        send(&instance, "x@shop.test", "d@far.test")
            .queue_id()
            .map(str::to_owned)
    })
    .unwrap_or_else(|_| panic!("still refused:\n{}", instance.maillog()));
}
