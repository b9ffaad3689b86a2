//! The Debian package: `cargo deb` builds it from the release binary. Its file list holds the
//! binary, both systemd units, the default configurations (as conffiles), the dashboards and the
//! runbooks; its postinst creates the `mailpulse` system user; and `systemd-analyze verify`
//! accepts both units in the package's own file tree (binary in place), hardening included.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_holds_the_binary_units_and_configs_and_systemd_accepts_the_units() {
    let has_cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_deb,
        "this test needs cargo-deb (scripts/install-deps installs it)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let deb = dir.path().join("mailpulse.deb");
    run(Command::new("cargo")
        .current_dir(workspace())
        .args(["deb", "--quiet", "--output"])
        .arg(&deb));

    let list = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/mailpulse",
        "./lib/systemd/system/mailpulse-agent.service",
        "./lib/systemd/system/mailpulse-collector.service",
        "./etc/mailpulse/agent.toml",
        "./etc/mailpulse/collector.toml",
        "./etc/mailpulse/playbooks.toml",
        "./usr/share/mailpulse/dashboards/fleet-overview.json",
        "./usr/share/mailpulse/dashboards/provisioning/dashboards/mailpulse.yaml",
        "./usr/share/doc/mailpulse/runbooks/bounce_ratio.md",
        "./usr/share/doc/mailpulse/operations.md",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{list}"
        );
    }
    let depends = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"));
    assert!(depends.contains("adduser"), "Depends: {depends}");

    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    for conf in ["agent.toml", "collector.toml", "playbooks.toml"] {
        assert!(
            conffiles.contains(&format!("/etc/mailpulse/{conf}")),
            "{conffiles}"
        );
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
    assert!(
        postinst.contains("adduser --system --group"),
        "postinst creates the user:\n{postinst}"
    );

    // The units as installed, with the binary they start in place, beside this system's
    // targets and slices (which they are ordered against).
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let units = root.join("lib/systemd/system");
    for entry in std::fs::read_dir("/lib/systemd/system").expect("/lib/systemd/system") {
        let path = entry.expect("entry").path();
        if path
            .extension()
            .is_some_and(|x| x == "target" || x == "slice")
            && let Some(name) = path.file_name()
        {
            let _ = std::fs::copy(&path, units.join(name));
        }
    }
    for unit in ["mailpulse-agent.service", "mailpulse-collector.service"] {
        let path = root.join("lib/systemd/system").join(unit);
        let text = std::fs::read_to_string(&path).expect("unit");
        for hardening in [
            "User=mailpulse",
            "ProtectSystem=strict",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "RestrictAddressFamilies=",
            "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=\n",
            "NoNewPrivileges=yes",
        ] {
            assert!(text.contains(hardening), "{unit}: no {hardening:?}");
        }
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(&path)
            .output()
            .expect("systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {unit}: {stderr}"
        );
    }
    let size = std::fs::metadata(&deb).map_or(0, |m| m.len());
    println!(
        "mailpulse.deb: {size} bytes, {} files",
        list.lines().count()
    );
}
