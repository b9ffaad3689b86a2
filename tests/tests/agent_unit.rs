//! The packaged systemd unit of the agent runs `postqueue -j` through the `postdrop` group:
//! `postqueue` reaches the queue through the `showq` service, whose socket lives in `public/`
//! (mode 2710, group `postdrop`). The unit is hardened (system call filter, kernel protections,
//! restricted address families), which implies `NoNewPrivileges`, so `postqueue`'s own
//! set-group-ID bit does not work there; the unit gives the agent `postdrop` as a supplementary
//! group instead (the cost: the group may also write into `maildrop/`, as local users can through
//! `postdrop`).
//!
//! Runs the unit's credentials for real against a throw-away Postfix: an unprivileged user
//! (`nobody`, standing in for `mailpulse`, and `nogroup` for its group), the unit's supplementary
//! groups and `no_new_privs` as the unit sets it; and the control: without `postdrop`, it
//! fails. Needs root and the Debian `postfix` package.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use mailpulse_tests::postfix::{self, PostfixConfig, PostfixInstance};

/// `Key=value` settings of the unit's `[Service]` section.
fn service_settings() -> Vec<(String, String)> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/mailpulse-agent.service");
    let text = std::fs::read_to_string(&unit).expect("agent unit");
    let mut in_service = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn yes(value: Option<&str>) -> bool {
    matches!(value, Some("yes" | "true" | "on" | "1"))
}

/// `postqueue -j` of `instance` as `nobody` with primary group `group`, supplementary
/// `groups`, with or without `no_new_privs`: (exit success, output).
///
/// A set-group-ID Postfix command run by another user than root honours `-c DIR` only when
/// the default `main.cf` lists DIR in `alternate_config_directories` (as a multi-instance host
/// lists its instances). The test gives it such a `/etc/postfix` in a private mount namespace,
/// so the host's own `/etc/postfix` is never touched.
fn postqueue_as(
    instance: &PostfixInstance,
    group: &str,
    groups: &[&str],
    no_new_privs: bool,
) -> (bool, String) {
    let etc = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(etc.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        etc.path().join("main.cf"),
        format!(
            "compatibility_level = 3.6\nalternate_config_directories = {}\n",
            instance.config_dir().display()
        ),
    )
    .expect("main.cf");
    let mut setpriv = vec![
        "setpriv".to_owned(),
        "--reuid=nobody".to_owned(),
        format!("--regid={group}"),
        if groups.is_empty() {
            "--clear-groups".to_owned()
        } else {
            format!("--groups={}", groups.join(","))
        },
    ];
    if no_new_privs {
        setpriv.push("--no-new-privs".to_owned());
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc/postfix && shift && exec \"$@\"")
        .arg("sh")
        .arg(etc.path())
        .args(&setpriv)
        .arg(postfix::command_path("postqueue"))
        .arg("-c")
        .arg(instance.config_dir())
        .arg("-j")
        .env_remove("MAIL_CONFIG");
    let out = cmd.output().expect("run setpriv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn packaged_unit_runs_postqueue_through_the_postdrop_group() {
    let settings = service_settings();
    let groups: Vec<&str> = setting(&settings, "SupplementaryGroups")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert!(
        groups.contains(&"postdrop"),
        "the agent's unit does not give the postdrop group: {groups:?}"
    );
    assert!(
        yes(setting(&settings, "NoNewPrivileges")),
        "the hardened unit sets NoNewPrivileges"
    );
    assert!(
        postfix::available(),
        "needs root and postfix (scripts/install-deps)"
    );
    let instance = PostfixInstance::start(&PostfixConfig::default()).expect("postfix starts");
    let (ok, text) = postqueue_as(&instance, "nogroup", &groups, true);
    assert!(
        ok,
        "postqueue -j with the unit's credentials (groups {groups:?}, no_new_privs) failed: {text}"
    );
    // The control: under no_new_privs, without postdrop, postqueue cannot reach showq.
    let others: Vec<&str> = groups
        .iter()
        .copied()
        .filter(|g| *g != "postdrop")
        .collect();
    let (ok, text) = postqueue_as(&instance, "nogroup", &others, true);
    assert!(
        !ok,
        "postqueue -j worked without the postdrop group, so the group is not what grants \
         access: {text}"
    );
}
