//! Capacity signals against the real kernel and fakes: `statvfs` agrees with `df`, a fake `/proc`
//! tree of two Postfix instances gives exact counts (children of `master` only, garbage ignored),
//! a fake `postconf` script gives exact limits, and a `postconf` that hangs or fails is killed or
//! reported without stopping the rest of the poll.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailpulse_agent::capacity::{
    CapacityConfig, CapacityError, CapacityProbe, FsUsage, ProcessLimit, parse_stat, scan_processes,
};
use mailpulse_proto::v1::{self as pb, sample};
use proptest::prelude::*;

const NOW_UNIX_MS: i64 = 1_700_000_123_456;
const WINDOW_SECS: u32 = 60;
const HOST: &str = "mx1";

fn instances() -> Vec<(String, PathBuf)> {
    vec![
        ("postfix".to_owned(), PathBuf::from("/etc/postfix")),
        ("postfix-out".to_owned(), PathBuf::from("/etc/postfix-out")),
    ]
}

/// One fake process: `<root>/<pid>/{stat,comm,environ}`.
fn write_process(root: &Path, pid: u32, comm: &str, ppid: u32, mail_config: Option<&str>) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(&dir).expect("create fake pid dir");
    std::fs::write(
        dir.join("stat"),
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 4711\n"
        ),
    )
    .expect("write stat");
    std::fs::write(dir.join("comm"), format!("{comm}\n")).expect("write comm");
    if let Some(config) = mail_config {
        let environ = format!("PATH=/usr/bin:/bin\0MAIL_CONFIG={config}\0LANG=C\0");
        std::fs::write(dir.join("environ"), environ).expect("write environ");
    }
}

/// Two instances plus noise; see `fake_proc_counts_children_of_master_per_instance`.
fn fake_proc(root: &Path) {
    write_process(root, 1, "systemd", 0, None);
    // Default instance: master without MAIL_CONFIG.
    write_process(root, 100, "master", 1, None);
    for (pid, comm) in [
        (101, "smtpd"),
        (102, "smtpd"),
        (103, "smtpd"),
        (104, "cleanup"),
        (105, "qmgr"),
        (106, "trivial-rewrite"),
        (107, "smtp"),
        (108, "smtp"),
        (109, "pickup"),
    ] {
        write_process(root, pid, comm, 100, None);
    }
    // Second instance: the master's environ names it; two children repeat it, two do not.
    write_process(root, 200, "master", 1, Some("/etc/postfix-out"));
    write_process(root, 201, "smtp", 200, Some("/etc/postfix-out"));
    write_process(root, 202, "smtp", 200, Some("/etc/postfix-out/"));
    write_process(root, 203, "smtp", 200, None);
    write_process(root, 204, "smtp", 200, None);
    write_process(root, 205, "qmgr", 200, None);
    // A third instance nobody configured.
    write_process(root, 300, "master", 1, Some("/etc/postfix-in"));
    write_process(root, 301, "smtpd", 300, None);
    // Daemon names whose parent is not a master are not Postfix's.
    write_process(root, 500, "smtpd", 1, None);
    write_process(root, 501, "smtp", 9999, None);
    write_process(root, 502, "smtpd", 101, None);
    // Garbage the scan must survive (each is one skipped entry).
    for (pid, stat) in [
        (700, &b"garbage"[..]),
        (701, b""),
        (703, b"\xff\xfe\x00(\x01) \xff"),
        (704, b"704 (smtpd S 100"),
        (705, b"705 (smtpd) S notapid"),
    ] {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("create garbage pid dir");
        std::fs::write(dir.join("stat"), stat).expect("write garbage stat");
    }
    std::fs::create_dir_all(root.join("702")).expect("pid dir without stat");
    // Not processes at all.
    std::fs::create_dir_all(root.join("sys")).expect("sys dir");
    std::fs::write(root.join("uptime"), "12345.67 2345.67\n").expect("uptime file");
}

const FAKE_MASTER_CF: &str = "\
smtp       inet  n       -       y       -       -       smtpd
submission inet  n       -       y       -       20      smtpd
  -o syslog_name=postfix/submission
pickup     unix  n       -       y       60      1       pickup
cleanup    unix  n       -       y       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       y       -       -       trivial-rewrite
smtp       unix  -       -       y       -       -       smtp
relay      unix  -       -       y       -       -       smtp -o syslog_name=postfix/$service_name
dnsblog    unix  -       -       y       -       0       dnsblog
# a comment postconf never prints
broken line
";

/// A `postconf` stand-in that checks its argv and answers like the real one:
/// `default_process_limit` is 100, or 50 for `/etc/postfix-out`.
fn fake_postconf(dir: &Path) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
[ "$1" = "-c" ] || {{ echo "postconf: expected -c first, got: $*" >&2; exit 2; }}
case "$2" in
  /etc/postfix-out) limit=50 ;;
  *) limit=100 ;;
esac
if [ "$#" = 4 ] && [ "$3" = "-h" ] && [ "$4" = "default_process_limit" ]; then
  echo "$limit"
elif [ "$#" = 3 ] && [ "$3" = "-M" ]; then
  cat <<'MASTER_CF'
{FAKE_MASTER_CF}MASTER_CF
else
  echo "postconf: unexpected arguments: $*" >&2
  exit 2
fi
"#
    );
    write_script(dir, "postconf", &script)
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

fn config(proc_root: &Path, postconf: &Path, timeout_secs: u64) -> CapacityConfig {
    CapacityConfig {
        enabled: true,
        paths: Vec::new(),
        proc_root: proc_root.to_owned(),
        postconf: postconf.to_owned(),
        command_timeout_secs: timeout_secs,
        processes: true,
    }
}

/// The gauge `metric` whose labels after `host` are exactly `labels`.
fn gauge(samples: &[pb::Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| {
            s.labels.len() == labels.len() + 1
                && s.labels[0].name == "host"
                && s.labels[0].value == HOST
                && s.labels[1..]
                    .iter()
                    .zip(labels)
                    .all(|(l, (n, v))| l.name == *n && l.value == *v)
        })
        .map(|s| match s.value {
            Some(sample::Value::Gauge(v)) => v,
            ref other => panic!("expected a gauge for {metric}, got {other:?}"),
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "expected at most one {metric}{labels:?}, found {}",
        matching.len()
    );
    matching.first().copied()
}

#[test]
fn statvfs_of_a_temp_dir_agrees_with_df() {
    let dir = tempfile::tempdir().expect("tempdir");
    let df = |path: &Path| -> (u64, u64) {
        let out = Command::new("df")
            .args(["-B1", "--output=size,avail"])
            .arg(path)
            .output()
            .expect("df (GNU coreutils) runs");
        assert!(out.status.success(), "df failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let numbers: Vec<u64> = text
            .lines()
            .nth(1)
            .unwrap_or_else(|| panic!("expected a data line from df, got {text:?}"))
            .split_whitespace()
            .map(|n| n.parse().expect("df prints numbers"))
            .collect();
        assert_eq!(
            numbers.len(),
            2,
            "expected size and avail from df: {text:?}"
        );
        (numbers[0], numbers[1])
    };
    // Other processes write to the same filesystem meanwhile: retry a few times until two
    // readings of df bracket ours closely.
    let mut last = None;
    for _ in 0..5 {
        let (size_before, avail_before) = df(dir.path());
        let usage = FsUsage::of(dir.path()).expect("statvfs of a temp dir");
        let (size_after, avail_after) = df(dir.path());
        let tolerance = (usage.size_bytes / 100).max(64 << 20);
        let lo = avail_before.min(avail_after).saturating_sub(tolerance);
        let hi = avail_before.max(avail_after).saturating_add(tolerance);
        if usage.size_bytes == size_before
            && size_before == size_after
            && (lo..=hi).contains(&usage.avail_bytes)
        {
            assert!(
                usage.free_bytes >= usage.avail_bytes,
                "free includes the root reserve"
            );
            assert!(usage.avail_inodes <= usage.inodes || usage.inodes == 0);
            return;
        }
        last = Some((usage, size_before, avail_before, size_after, avail_after));
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("statvfs never agreed with df (size exact, avail within tolerance): {last:?}");
}

#[test]
fn a_missing_path_is_filesystem_up_0_and_a_good_one_has_every_gauge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist");
    let mut probe = CapacityProbe::new(CapacityConfig {
        paths: vec![missing.clone()],
        processes: false,
        ..CapacityConfig::default()
    });
    probe.add_path(dir.path());
    probe.add_path(dir.path()); // once only
    assert_eq!(probe.paths().len(), 2);

    let samples = probe.poll(NOW_UNIX_MS, HOST, WINDOW_SECS, &instances());
    let missing_label = missing.to_string_lossy();
    let good_label = dir.path().to_string_lossy();
    assert_eq!(
        gauge(&samples, "filesystem_up", &[("path", &missing_label)]),
        Some(0.0)
    );
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.labels.iter().any(|l| l.value == missing_label))
            .count(),
        1,
        "expected only filesystem_up for a path that cannot be measured"
    );
    assert_eq!(
        gauge(&samples, "filesystem_up", &[("path", &good_label)]),
        Some(1.0)
    );
    for metric in [
        "filesystem_size_bytes",
        "filesystem_free_bytes",
        "filesystem_avail_bytes",
        "filesystem_inodes",
        "filesystem_avail_inodes",
    ] {
        let v = gauge(&samples, metric, &[("path", &good_label)])
            .unwrap_or_else(|| panic!("expected {metric} for the temp dir"));
        assert!(v >= 0.0, "{metric} = {v}");
    }
    assert!(
        !samples.iter().any(|s| s.metric.starts_with("postfix_")),
        "processes = false reads no processes"
    );
    for s in &samples {
        assert_eq!(
            s.window_start_unix_ms, 1_700_000_100_000,
            "window start of {}",
            s.metric
        );
        assert_eq!(s.window_secs, WINDOW_SECS);
    }
    assert_eq!(probe.errors().statvfs, 1);
}

#[test]
fn fake_proc_counts_children_of_master_per_instance() {
    let root = tempfile::tempdir().expect("tempdir");
    fake_proc(root.path());
    let counts = scan_processes(root.path(), &instances()).expect("scan of the fake /proc");
    let expected = [
        (("postfix", "smtpd"), 3),
        (("postfix", "cleanup"), 1),
        (("postfix", "qmgr"), 1),
        (("postfix", "trivial-rewrite"), 1),
        (("postfix", "smtp"), 2),
        (("postfix", "pickup"), 1),
        (("postfix-out", "smtp"), 4),
        (("postfix-out", "qmgr"), 1),
        (("other", "smtpd"), 1),
    ];
    let got: Vec<((&str, &str), u64)> = counts
        .running
        .iter()
        .map(|((i, c), n)| ((i.as_str(), c.as_str()), *n))
        .collect();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(got, want, "processes per (instance, command)");
    assert_eq!(
        counts.skipped, 6,
        "garbage stat files and a pid dir without stat"
    );
}

#[test]
fn without_instances_the_default_master_is_postfix() {
    let root = tempfile::tempdir().expect("tempdir");
    fake_proc(root.path());
    let counts = scan_processes(root.path(), &[]).expect("scan of the fake /proc");
    assert_eq!(counts.get("postfix", "smtpd"), 3);
    assert_eq!(
        counts.get("other", "smtp"),
        4,
        "a MAIL_CONFIG nobody configured"
    );
}

#[test]
fn fake_postconf_gives_limits_per_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postconf = fake_postconf(dir.path());
    let probe = CapacityProbe::new(config(dir.path(), &postconf, 10));
    let limits = probe
        .read_process_limits(Path::new("/etc/postfix"))
        .expect("limits from the fake postconf");
    let want = [
        ("cleanup", ProcessLimit::Unlimited),
        ("dnsblog", ProcessLimit::Unlimited),
        ("pickup", ProcessLimit::Limited(1)),
        ("qmgr", ProcessLimit::Limited(1)),
        ("smtp", ProcessLimit::Limited(200)),
        ("smtpd", ProcessLimit::Limited(120)),
        ("trivial-rewrite", ProcessLimit::Limited(100)),
    ];
    let got: Vec<(&str, ProcessLimit)> = limits.iter().map(|(c, l)| (c.as_str(), *l)).collect();
    assert_eq!(got, want.to_vec());
    let out = probe
        .read_process_limits(Path::new("/etc/postfix-out"))
        .expect("limits of the second instance");
    assert_eq!(out["smtpd"], ProcessLimit::Limited(70), "50 + 20");
    assert_eq!(out["smtp"], ProcessLimit::Limited(100), "2 × 50");
}

#[test]
fn poll_reports_processes_limits_and_utilisation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_root = dir.path().join("proc");
    fake_proc(&proc_root);
    let postconf = fake_postconf(dir.path());
    let mut probe = CapacityProbe::new(config(&proc_root, &postconf, 10));
    let samples = probe.poll(NOW_UNIX_MS, HOST, WINDOW_SECS, &instances());

    let of = |metric: &str, instance: &str, service: &str| {
        gauge(
            &samples,
            metric,
            &[("instance", instance), ("service", service)],
        )
    };
    assert_eq!(of("postfix_processes", "postfix", "smtpd"), Some(3.0));
    assert_eq!(of("postfix_process_limit", "postfix", "smtpd"), Some(120.0));
    assert_eq!(
        of("postfix_process_utilisation", "postfix", "smtpd"),
        Some(3.0 / 120.0)
    );
    assert_eq!(of("postfix_processes", "postfix-out", "smtp"), Some(4.0));
    assert_eq!(
        of("postfix_process_limit", "postfix-out", "smtp"),
        Some(100.0)
    );
    assert_eq!(
        of("postfix_process_utilisation", "postfix-out", "smtp"),
        Some(0.04)
    );
    // Unlimited: count, but neither limit nor utilisation.
    assert_eq!(of("postfix_processes", "postfix", "cleanup"), Some(1.0));
    assert_eq!(of("postfix_process_limit", "postfix", "cleanup"), None);
    assert_eq!(
        of("postfix_process_utilisation", "postfix", "cleanup"),
        None
    );
    // In master.cf but idle: 0 processes.
    assert_eq!(of("postfix_processes", "postfix", "dnsblog"), Some(0.0));
    assert_eq!(of("postfix_processes", "postfix-out", "smtpd"), Some(0.0));
    assert_eq!(
        of("postfix_process_utilisation", "postfix-out", "smtpd"),
        Some(0.0)
    );
    // An instance nobody configured: counted, no limits known.
    assert_eq!(of("postfix_processes", "other", "smtpd"), Some(1.0));
    assert_eq!(of("postfix_process_limit", "other", "smtpd"), None);
    for instance in ["postfix", "postfix-out"] {
        assert_eq!(
            gauge(&samples, "postfix_limits_up", &[("instance", instance)]),
            Some(1.0)
        );
    }
    assert_eq!(gauge(&samples, "postfix_process_scan_up", &[]), Some(1.0));
    assert_eq!(probe.errors().postconf, 0);
    assert_eq!(probe.errors().proc_scan, 0);
}

/// The real `postconf` (Postfix is a test dependency, see `scripts/install-deps`) on a config
/// directory of our own: its normalised `-M` output (continuation lines folded) gives the limits.
#[test]
fn the_real_postconf_gives_limits_for_a_config_dir() {
    let postconf = Path::new("/usr/sbin/postconf");
    assert!(
        postconf.exists(),
        "expected Postfix's postconf at {} (run scripts/install-deps)",
        postconf.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("main.cf"), "default_process_limit = 37\n").expect("main.cf");
    std::fs::write(
        dir.path().join("master.cf"),
        "\
# service type  private unpriv  chroot  wakeup  maxproc command + args
smtp       inet  n       -       y       -       -       smtpd
submission inet  n       -       y       -       20      smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
pickup     unix  n       -       y       60      1       pickup
cleanup    unix  n       -       y       -       0       cleanup
rewrite    unix  -       -       y       -       -       trivial-rewrite
smtp       unix  -       -       y       -       -       smtp
relay      unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
",
    )
    .expect("master.cf");
    let probe = CapacityProbe::new(config(dir.path(), postconf, 10));
    let limits = probe
        .read_process_limits(dir.path())
        .expect("limits from the real postconf");
    let got: Vec<(&str, ProcessLimit)> = limits.iter().map(|(c, l)| (c.as_str(), *l)).collect();
    assert_eq!(
        got,
        vec![
            ("cleanup", ProcessLimit::Unlimited),
            ("pickup", ProcessLimit::Limited(1)),
            ("smtp", ProcessLimit::Limited(74)),
            ("smtpd", ProcessLimit::Limited(57)),
            ("trivial-rewrite", ProcessLimit::Limited(37)),
        ]
    );
}

#[test]
fn a_hanging_postconf_is_killed_and_the_poll_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_root = dir.path().join("proc");
    fake_proc(&proc_root);
    let postconf = write_script(dir.path(), "postconf", "#!/bin/sh\nexec sleep 30\n");
    let mut probe = CapacityProbe::new(config(&proc_root, &postconf, 1));

    let started = Instant::now();
    let samples = probe.poll(NOW_UNIX_MS, HOST, WINDOW_SECS, &instances());
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(8),
        "expected two 1 s timeouts, the poll took {elapsed:?}"
    );
    for instance in ["postfix", "postfix-out"] {
        assert_eq!(
            gauge(&samples, "postfix_limits_up", &[("instance", instance)]),
            Some(0.0)
        );
    }
    assert_eq!(probe.errors().postconf, 2);
    assert_eq!(
        gauge(
            &samples,
            "postfix_processes",
            &[("instance", "postfix"), ("service", "smtpd")]
        ),
        Some(3.0),
        "processes are still counted"
    );
    assert!(!samples.iter().any(|s| s.metric == "postfix_process_limit"));

    let err = probe
        .read_process_limits(Path::new("/etc/postfix"))
        .expect_err("a hanging postconf times out");
    assert!(
        matches!(
            err,
            CapacityError::Timeout {
                timeout_secs: 1,
                ..
            }
        ),
        "expected a timeout, got {err}"
    );
}

#[test]
fn a_failing_or_garbled_postconf_is_an_error_with_its_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let failing = write_script(
        dir.path(),
        "postconf-fails",
        "#!/bin/sh\necho 'postconf: fatal: open /etc/nope/main.cf: No such file or directory' >&2\nexit 1\n",
    );
    let probe = CapacityProbe::new(config(dir.path(), &failing, 5));
    let err = probe
        .read_process_limits(Path::new("/etc/nope"))
        .expect_err("exit 1 is an error");
    assert!(
        matches!(&err, CapacityError::Failed { stderr, .. } if stderr.contains("fatal: open")),
        "expected the failure with postconf's stderr, got {err}"
    );

    let garbled = write_script(dir.path(), "postconf-garbled", "#!/bin/sh\necho lots\n");
    let probe = CapacityProbe::new(config(dir.path(), &garbled, 5));
    let err = probe
        .read_process_limits(Path::new("/etc/postfix"))
        .expect_err("a non-numeric default_process_limit is an error");
    assert!(
        matches!(err, CapacityError::Output { .. }),
        "expected an output error, got {err}"
    );

    let probe = CapacityProbe::new(config(dir.path(), &dir.path().join("no-such-postconf"), 5));
    let err = probe
        .read_process_limits(Path::new("/etc/postfix"))
        .expect_err("a missing binary is an error");
    assert!(matches!(err, CapacityError::Spawn { .. }), "got {err}");
}

#[test]
fn a_missing_proc_root_is_counted_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postconf = fake_postconf(dir.path());
    let mut probe = CapacityProbe::new(config(&dir.path().join("no-proc"), &postconf, 5));
    let samples = probe.poll(NOW_UNIX_MS, HOST, WINDOW_SECS, &instances());
    assert_eq!(probe.errors().proc_scan, 1);
    assert_eq!(gauge(&samples, "postfix_process_scan_up", &[]), Some(0.0));
    assert_eq!(
        gauge(
            &samples,
            "postfix_processes",
            &[("instance", "postfix"), ("service", "smtpd")]
        ),
        Some(0.0),
        "limits known, no processes seen"
    );
}

#[test]
fn the_real_proc_of_this_machine_parses() {
    let counts = scan_processes(Path::new("/proc"), &instances()).expect("scan of /proc");
    // Whatever runs here, every count is of a real child of a master.
    assert!(counts.running.values().all(|&n| n > 0));
    let own = std::fs::read("/proc/self/stat").expect("own stat");
    let (_, ppid) = parse_stat(&own).expect("own stat parses");
    assert_eq!(ppid, std::os::unix::process::parent_id());
}

#[test]
fn config_has_defaults_and_rejects_unknown_keys() {
    let cfg: CapacityConfig = toml::from_str("").expect("empty table");
    assert_eq!(cfg, CapacityConfig::default());
    assert_eq!(cfg.proc_root, PathBuf::from("/proc"));
    assert_eq!(cfg.postconf, PathBuf::from("/usr/sbin/postconf"));
    assert_eq!(cfg.command_timeout_secs, 10);
    assert!(cfg.processes && cfg.paths.is_empty());
    let cfg: CapacityConfig = toml::from_str(
        "paths = [\"/var/spool/postfix\", \"/var/log\"]\ncommand_timeout_secs = 3\nprocesses = false\n",
    )
    .expect("full table");
    assert_eq!(cfg.paths.len(), 2);
    assert_eq!(cfg.command_timeout_secs, 3);
    assert!(!cfg.processes);
    let err = toml::from_str::<CapacityConfig>("timeout_secs = 3\n").expect_err("unknown key");
    assert!(err.to_string().contains("timeout_secs"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_stat_and_environ_files_never_panic(
        files in prop::collection::vec(
            (1u32..50, prop::collection::vec(any::<u8>(), 0..200), prop::collection::vec(any::<u8>(), 0..100)),
            0..20,
        ),
    ) {
        let root = tempfile::tempdir().expect("tempdir");
        write_process(root.path(), 1, "master", 0, None);
        for (pid, stat, environ) in &files {
            let dir = root.path().join((pid + 1).to_string());
            std::fs::create_dir_all(&dir).expect("pid dir");
            std::fs::write(dir.join("stat"), stat).expect("stat");
            std::fs::write(dir.join("environ"), environ).expect("environ");
        }
        let counts = scan_processes(root.path(), &instances()).expect("scan");
        prop_assert!(counts.running.values().all(|&n| n > 0));
    }

    #[test]
    fn parse_stat_never_panics(stat in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_stat(&stat);
    }
}
