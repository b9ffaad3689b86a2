//! The watcher driving fake `postmulti`/`postconf`/`postqueue` scripts.

use super::*;
use crate::directory::{make_queue_tree, unix_now};

/// Watcher tests fork; writing a script while another thread forks can leave the script open in
/// the child (ETXTBSY on exec), so they run one at a time.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

fn spawn_lock() -> MutexGuard<'static, ()> {
    SPAWN_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A temp dir with fake `postmulti`, `postconf` and `postqueue` scripts that log their argv.
struct FakePostfix {
    dir: tempfile::TempDir,
}

impl FakePostfix {
    /// A fake Postfix whose `postconf` names the default instance `postfix` with a queue
    /// directory holding [`make_queue_tree`]'s files; returns it, the directory and the time.
    fn with_queue_tree() -> (Self, PathBuf, i64) {
        let fake = Self::new();
        let queue_dir = fake.path("queue");
        let now = unix_now();
        make_queue_tree(&queue_dir, now);
        fake.script(
            "postconf",
            &format!("printf 'postfix\\n{}\\n'", queue_dir.display()),
        );
        (fake, queue_dir, now)
    }

    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` as a shell script running `body` after logging `name args…`.
    fn script(&self, name: &str, body: &str) {
        let path = self.path(name);
        let text = format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
            self.path("calls.log").display()
        );
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn config(&self) -> QueueConfig {
        QueueConfig {
            postqueue: self.path("postqueue"),
            postmulti: self.path("postmulti"),
            postconf: self.path("postconf"),
            command_timeout_secs: 10,
            ..QueueConfig::default()
        }
    }
}

/// The samples of `instance` for `metric` whose own labels (after host and instance) are
/// `labels`.
fn find<'a>(
    samples: &'a [Sample],
    instance: &str,
    metric: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.metric == metric
                && s.labels.len() == 2 + labels.len()
                && s.labels[1].value == instance
                && s.labels[2..]
                    .iter()
                    .zip(labels)
                    .all(|(l, (n, v))| l.name == *n && l.value == *v)
        })
        .collect()
}

/// The value of the one gauge `metric{labels}` of `instance`.
fn gauge(samples: &[Sample], instance: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(samples, instance, metric, labels);
    assert_eq!(
        found.len(),
        1,
        "expected one {metric}{labels:?} sample of {instance}, found {found:?}"
    );
    match found[0].value {
        Some(sample::Value::Gauge(v)) => v,
        ref other => panic!("{metric}{labels:?} is not a gauge: {other:?}"),
    }
}

#[test]
fn watcher_discovers_instances_with_postmulti_and_postconf() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let fixture = fixtures_dir().join("001.jsonl");
    let out_fixture = fixtures_dir().join("002.jsonl");
    fake.script(
        "postmulti",
        "echo '-               -               y         /etc/postfix'\n\
         echo 'postfix-out     mta             y         /etc/postfix-out'\n\
         echo 'postfix-off     -               n         /etc/postfix-off'",
    );
    fake.script(
        "postconf",
        "case \"$2\" in\n\
         /etc/postfix-out) printf 'postfix-out\\n/var/spool/postfix-out\\n' ;;\n\
         *) printf 'postfix\\n/var/spool/postfix\\n' ;;\n\
         esac",
    );
    fake.script(
        "postqueue",
        &format!(
            "case \"$2\" in\n/etc/postfix-out) cat '{}' ;;\n*) cat '{}' ;;\nesac",
            out_fixture.display(),
            fixture.display()
        ),
    );
    let mut watcher = QueueWatcher::new(fake.config());
    let samples = watcher.poll(NOW * 1000 + 500, "mx1", 60);

    let names: Vec<&str> = watcher.instances().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["postfix", "postfix-out"],
        "enabled instances by syslog_name"
    );
    assert!(
        watcher.discovery_errors().is_empty(),
        "{:?}",
        watcher.discovery_errors()
    );
    let calls = fake.calls();
    assert_eq!(
        calls,
        [
            "postmulti -l",
            "postconf -c /etc/postfix -xh syslog_name queue_directory",
            "postconf -c /etc/postfix-out -xh syslog_name queue_directory",
            "postqueue -c /etc/postfix -j",
            "postqueue -c /etc/postfix-out -j",
        ],
        "argv of every command"
    );
    let main = watcher.instance("postfix").unwrap();
    assert!(main.errors.is_empty(), "{:?}", main.errors);
    assert_eq!(
        main.queue_directory.as_deref(),
        Some(Path::new("/var/spool/postfix"))
    );
    assert_eq!(
        watcher.last_snapshot("postfix"),
        Some(&summarise_fixture("001.jsonl"))
    );
    assert_eq!(
        watcher.last_snapshot("postfix-out"),
        Some(&summarise_fixture("002.jsonl"))
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix-out",
            "queue_snapshot_up",
            &[("source", "postqueue")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        6.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix-out",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        3.0
    );
    let malformed = find(
        &samples,
        "postfix-out",
        "queue_snapshot_malformed_lines",
        &[],
    );
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].value, Some(sample::Value::CounterDelta(17.0)));
}

#[test]
fn watcher_uses_the_default_instance_when_postmulti_is_missing() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    fake.script("postconf", "printf 'postfix\\n/var/spool/postfix\\n'");
    fake.script(
        "postqueue",
        &format!("cat '{}'", fixtures_dir().join("001.jsonl").display()),
    );
    let mut watcher = QueueWatcher::new(fake.config());
    watcher.poll(NOW * 1000, "mx1", 60);
    assert!(
        matches!(watcher.discovery_errors(), [QueueError::Spawn { .. }]),
        "{:?}",
        watcher.discovery_errors()
    );
    assert_eq!(
        fake.calls(),
        ["postconf -xh syslog_name queue_directory", "postqueue -j"],
        "no -c for the default instance"
    );
    assert!(watcher.last_snapshot("postfix").is_some());
}

#[test]
fn configured_instances_replace_discovery() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    fake.script(
        "postqueue",
        &format!("cat '{}'", fixtures_dir().join("001.jsonl").display()),
    );
    let mut cfg = fake.config();
    cfg.instances = vec![InstanceConfig {
        name: "postfix-in".into(),
        config_directory: "/etc/postfix-in".into(),
        queue_directory: Some("/var/spool/postfix-in".into()),
    }];
    let mut watcher = QueueWatcher::new(cfg);
    let samples = watcher.poll(NOW * 1000, "mx1", 60);
    assert_eq!(fake.calls(), ["postqueue -c /etc/postfix-in -j"]);
    assert_eq!(
        gauge(
            &samples,
            "postfix-in",
            "queue_snapshot_up",
            &[("source", "postqueue")]
        ),
        1.0
    );
}

#[test]
fn watcher_falls_back_to_the_directory_scan_when_postqueue_fails() {
    let _lock = spawn_lock();
    let (fake, queue_dir, now) = FakePostfix::with_queue_tree();
    // Output, then failure: the output must not be used.
    fake.script(
        "postqueue",
        &format!(
            "cat '{}'\necho 'postqueue: fatal: Queue report unavailable - mail system is down' >&2\nexit 69",
            fixtures_dir().join("001.jsonl").display()
        ),
    );
    let mut watcher = QueueWatcher::new(fake.config());
    let samples = watcher.poll(now * 1000, "mx1", 60);
    let status = watcher.instance("postfix").unwrap();
    match status.errors.as_slice() {
        [QueueError::Exit { stderr, status, .. }] => {
            assert!(stderr.contains("mail system is down"), "{stderr}");
            assert!(status.contains("69"), "{status}");
        }
        other => panic!("expected the postqueue exit error, got {other:?}"),
    }
    let snap = status.snapshot.as_ref().unwrap();
    assert_eq!(snap.source, SnapshotSource::Directory);
    assert_eq!(snap.queue(QueueName::Deferred).messages, 3);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "directory")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        3.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "maildrop")]
        ),
        0.0
    );
    assert!(
        find(
            &samples,
            "postfix",
            "queue_recipients",
            &[("queue", "deferred")]
        )
        .is_empty(),
        "recipients are unknown to a directory scan, not 0"
    );
    assert!(find(&samples, "postfix", "queue_deferred_reason_recipients", &[]).is_empty());

    // postqueue missing and queue directory gone: nothing worked.
    fs::remove_file(fake.path("postqueue")).unwrap();
    fs::remove_dir_all(&queue_dir).unwrap();
    let samples = watcher.poll(now * 1000 + 60_000, "mx1", 60);
    let status = watcher.instance("postfix").unwrap();
    assert!(status.snapshot.is_none());
    assert!(
        matches!(
            status.errors.as_slice(),
            [QueueError::Spawn { .. }, QueueError::Scan { .. }]
        ),
        "{:?}",
        status.errors
    );
    assert_eq!(status.errors_total, 3);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "directory")]
        ),
        0.0
    );
    assert!(
        find(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        )
        .is_empty()
    );
}

#[test]
fn watcher_kills_a_hanging_postqueue_and_its_children() {
    let _lock = spawn_lock();
    let (fake, _queue_dir, now) = FakePostfix::with_queue_tree();
    // A child that would keep the pipe open: only killing the process group ends the read.
    fake.script(
        "postqueue",
        &format!(
            "head -n 1 '{}'\nsleep 60 &\necho $! > '{}'\nwait",
            fixtures_dir().join("001.jsonl").display(),
            fake.path("sleep.pid").display()
        ),
    );
    let mut cfg = fake.config();
    cfg.command_timeout_secs = 1;
    let mut watcher = QueueWatcher::new(cfg);
    let started = Instant::now();
    let samples = watcher.poll(now * 1000, "mx1", 60);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "poll took {took:?}");
    assert!(
        took >= Duration::from_secs(1),
        "killed before the timeout: {took:?}"
    );
    let status = watcher.instance("postfix").unwrap();
    assert!(
        matches!(status.errors.as_slice(), [QueueError::Timeout { .. }]),
        "{:?}",
        status.errors
    );
    assert_eq!(
        status.snapshot.as_ref().map(|s| s.source),
        Some(SnapshotSource::Directory),
        "the partial output is dropped for the directory scan"
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "directory")]
        ),
        1.0
    );
    let pid = fs::read_to_string(fake.path("sleep.pid")).unwrap();
    let stat = Path::new("/proc").join(pid.trim()).join("stat");
    // The killed `sleep` is gone or a zombie waiting for init (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = fs::read_to_string(&stat)
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()));
        match state {
            None | Some(Some('Z')) => break,
            Some(s) if Instant::now() > deadline => {
                panic!("the postqueue child is still running: state {s:?}")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn samples_carry_names_labels_and_values() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let current = fake.path("current.jsonl");
    fs::copy(fixtures_dir().join("001.jsonl"), &current).unwrap();
    fake.script("postconf", "printf 'postfix\\n/var/spool/postfix\\n'");
    fake.script("postqueue", &format!("cat '{}'", current.display()));
    let mut cfg = fake.config();
    cfg.top_k_domains = 3;
    let mut watcher = QueueWatcher::new(cfg);
    let now_ms = NOW * 1000 + 500;
    let samples = watcher.poll(now_ms, "mx1", 60);

    for s in &samples {
        assert_eq!(s.labels[0].name, "host");
        assert_eq!(s.labels[0].value, "mx1");
        assert_eq!(s.labels[1].name, "instance");
        assert_eq!(s.labels[1].value, "postfix");
        assert_eq!(s.window_start_unix_ms, NOW / 60 * 60 * 1000, "{s:?}");
        assert_eq!(s.window_secs, 60);
    }
    let names: BTreeSet<&str> = samples.iter().map(|s| s.metric.as_str()).collect();
    let expected: BTreeSet<&str> = [
        "queue_messages",
        "queue_recipients",
        "queue_bytes",
        "queue_oldest_age_seconds",
        "queue_age_messages",
        "queue_deferred_domain_messages",
        "queue_deferred_domain_recipients",
        "queue_deferred_domain_oldest_age_seconds",
        "queue_deferred_reason_recipients",
        "queue_snapshot_duration_seconds",
        "queue_snapshot_up",
        "queue_snapshot_malformed_lines",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected, "no growth on the first snapshot");

    // Every queue, empty ones included, for every per-queue metric.
    for metric in [
        "queue_messages",
        "queue_recipients",
        "queue_bytes",
        "queue_oldest_age_seconds",
    ] {
        for q in QueueName::ALL {
            gauge(&samples, "postfix", metric, &[("queue", q.as_str())]);
        }
    }
    let g = |metric, labels: &[(&str, &str)]| gauge(&samples, "postfix", metric, labels);
    assert_eq!(g("queue_messages", &[("queue", "corrupt")]), 0.0);
    assert_eq!(g("queue_recipients", &[("queue", "deferred")]), 13.0);
    assert_eq!(g("queue_bytes", &[("queue", "active")]), 14_096.0);
    assert_eq!(
        g("queue_oldest_age_seconds", &[("queue", "deferred")]),
        500_000.0
    );
    let cumulative = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0];
    for (le, n) in AGE_LE_LABELS.iter().zip(cumulative) {
        assert_eq!(
            g("queue_age_messages", &[("queue", "deferred"), ("le", le)]),
            n,
            "deferred messages aged <= {le}"
        );
    }
    assert_eq!(
        g("queue_age_messages", &[("queue", "hold"), ("le", "3600")]),
        1.0
    );

    // Top 3 by recipients (ties by name), the other seven domains summed.
    let domain = |metric, d| g(metric, &[("domain", d)]);
    assert_eq!(
        domain("queue_deferred_domain_recipients", "mx-down.example"),
        3.0
    );
    assert_eq!(
        domain("queue_deferred_domain_messages", "mx-down.example"),
        2.0
    );
    assert_eq!(
        domain("queue_deferred_domain_recipients", "nx.example"),
        2.0
    );
    assert_eq!(
        domain("queue_deferred_domain_recipients", "bigmail.example"),
        1.0
    );
    assert_eq!(domain("queue_deferred_domain_recipients", "other"), 7.0);
    assert_eq!(domain("queue_deferred_domain_messages", "other"), 7.0);
    assert_eq!(
        domain("queue_deferred_domain_oldest_age_seconds", "other"),
        500_000.0
    );
    assert_eq!(
        find(&samples, "postfix", "queue_deferred_domain_recipients", &[]).len(),
        0,
        "domain samples always carry a domain"
    );
    let domains = samples
        .iter()
        .filter(|s| s.metric == "queue_deferred_domain_recipients")
        .count();
    assert_eq!(domains, 4);

    let snap = watcher.last_snapshot("postfix").unwrap().clone();
    for class in ReasonClass::ALL {
        assert_eq!(
            g(
                "queue_deferred_reason_recipients",
                &[("reason_class", class.as_str())]
            ),
            snap.deferred_reasons.get(class) as f64,
            "{class}"
        );
    }
    assert_eq!(
        g(
            "queue_deferred_reason_recipients",
            &[("reason_class", "connect")]
        ),
        6.0
    );
    assert_eq!(g("queue_snapshot_up", &[("source", "postqueue")]), 1.0);
    assert!(g("queue_snapshot_duration_seconds", &[]) >= 0.0);

    // Thirty seconds later the deferred queue has lost two messages, hold gained one.
    let text = fs::read_to_string(&current).unwrap();
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines.retain(|l| !l.contains("\"7C4239CC01C\"") && !l.contains("\"A0B1C2D3E4\""));
    lines.push(r#"{"queue_name": "hold", "queue_id": "D1", "arrival_time": 1700100000, "message_size": 1, "forced_expire": false, "sender": "", "recipients": [{"address": "x@example.com"}]}"#);
    fs::write(&current, lines.join("\n")).unwrap();
    let samples = watcher.poll(now_ms + 30_000, "mx1", 60);
    let growth = |q| {
        gauge(
            &samples,
            "postfix",
            "queue_growth_messages_per_second",
            &[("queue", q)],
        )
    };
    assert_eq!(growth("deferred"), -2.0 / 30.0);
    assert_eq!(growth("hold"), 1.0 / 30.0);
    assert_eq!(growth("active"), 0.0);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        4.0
    );
}

#[test]
fn vanished_domains_are_emitted_once_with_zero() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let current = fake.path("current.jsonl");
    fake.script("postconf", "printf 'postfix\\n/var/spool/postfix\\n'");
    fake.script("postqueue", &format!("cat '{}'", current.display()));
    let entry = |id: &str, domain: &str| {
        format!(
            r#"{{"queue_name": "deferred", "queue_id": "{id}", "arrival_time": 1700099000, "message_size": 10, "forced_expire": false, "sender": "", "recipients": [{{"address": "u@{domain}", "delay_reason": "connect to mx.{domain}[192.0.2.1]:25: Connection refused"}}]}}"#
        )
    };
    let mut watcher = QueueWatcher::new(fake.config());
    let recipients = |samples: &[Sample]| -> BTreeMap<String, f64> {
        samples
            .iter()
            .filter(|s| s.metric == "queue_deferred_domain_recipients")
            .map(|s| match s.value {
                Some(sample::Value::Gauge(v)) => (s.labels[2].value.clone(), v),
                ref other => panic!("not a gauge: {other:?}"),
            })
            .collect()
    };
    let expect = |samples: &[Sample], want: &[(&str, f64)]| {
        let want: BTreeMap<String, f64> = want.iter().map(|(d, v)| ((*d).to_owned(), *v)).collect();
        assert_eq!(recipients(samples), want);
    };

    fs::write(
        &current,
        [entry("A", "x.example"), entry("B", "y.example")].join("\n"),
    )
    .unwrap();
    let samples = watcher.poll(NOW * 1000, "mx1", 60);
    expect(&samples, &[("x.example", 1.0), ("y.example", 1.0)]);

    fs::write(&current, entry("B", "y.example")).unwrap();
    let samples = watcher.poll(NOW * 1000 + 60_000, "mx1", 60);
    expect(&samples, &[("x.example", 0.0), ("y.example", 1.0)]);
    for metric in [
        "queue_deferred_domain_messages",
        "queue_deferred_domain_oldest_age_seconds",
    ] {
        assert_eq!(
            gauge(&samples, "postfix", metric, &[("domain", "x.example")]),
            0.0
        );
    }

    let samples = watcher.poll(NOW * 1000 + 120_000, "mx1", 60);
    expect(&samples, &[("y.example", 1.0)]);

    // An emptied queue: every domain drops to 0 once, the queues read 0.
    fs::write(&current, "").unwrap();
    let samples = watcher.poll(NOW * 1000 + 180_000, "mx1", 60);
    expect(&samples, &[("y.example", 0.0)]);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        0.0
    );
    let samples = watcher.poll(NOW * 1000 + 240_000, "mx1", 60);
    expect(&samples, &[]);
}

#[test]
fn the_up_series_of_a_former_source_drops_to_zero() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let queue_dir = fake.path("queue");
    fs::create_dir_all(&queue_dir).unwrap();
    fake.script(
        "postconf",
        &format!("printf 'postfix\\n{}\\n'", queue_dir.display()),
    );
    fake.script("postqueue", "exit 0");
    let mut watcher = QueueWatcher::new(fake.config());
    let samples = watcher.poll(NOW * 1000, "mx1", 60);
    assert_eq!(find(&samples, "postfix", "queue_snapshot_up", &[]).len(), 0);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "postqueue")]
        ),
        1.0
    );
    fake.script("postqueue", "exit 1");
    let samples = watcher.poll(NOW * 1000 + 60_000, "mx1", 60);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "postqueue")]
        ),
        0.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "directory")]
        ),
        1.0
    );
    assert!(
        find(
            &samples,
            "postfix",
            "queue_growth_messages_per_second",
            &[("queue", "deferred")]
        )
        .is_empty(),
        "no growth across a change of source"
    );
}

#[test]
fn queue_config_reads_toml_with_defaults() {
    let cfg: QueueConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, QueueConfig::default());
    assert_eq!(cfg.interval_secs, 60);
    assert_eq!(cfg.postqueue, Path::new("/usr/sbin/postqueue"));
    assert_eq!(cfg.command_timeout_secs, 30);
    assert_eq!((cfg.top_k_domains, cfg.max_domains), (50, 10_000));
    assert!(cfg.use_postqueue);
    let cfg: QueueConfig = toml::from_str(
        "use_postqueue = false\nqueue_directory = \"/q\"\n\
         [[instances]]\nname = \"postfix-out\"\nconfig_directory = \"/etc/postfix-out\"\n",
    )
    .unwrap();
    assert!(!cfg.use_postqueue);
    assert_eq!(cfg.instances[0].queue_directory, None);
    cfg.validate().unwrap();
    let err = toml::from_str::<QueueConfig>("interval = 5").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let twice: QueueConfig = toml::from_str(
        "[[instances]]\nname = \"a\"\nconfig_directory = \"/a\"\n\
         [[instances]]\nname = \"a\"\nconfig_directory = \"/b\"\n",
    )
    .unwrap();
    assert!(twice.validate().is_err());
}

#[test]
fn directory_only_mode_never_runs_postqueue() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let queue_dir = fake.path("queue");
    let now = unix_now();
    make_queue_tree(&queue_dir, now);
    let mut cfg = fake.config();
    cfg.use_postqueue = false;
    cfg.queue_directory = Some(queue_dir);
    let mut watcher = QueueWatcher::new(cfg);
    let samples = watcher.poll(now * 1000, "mx1", 60);
    // postmulti and postconf are missing: default instance, queue directory from the config.
    assert!(fake.calls().is_empty());
    let status = watcher.instance("postfix").unwrap();
    assert!(
        matches!(status.errors.as_slice(), [QueueError::Spawn { .. }]),
        "{:?}",
        status.errors
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        3.0
    );
}
