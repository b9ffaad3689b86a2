//! `mailpulse collector --config FILE`: ingest agent streams, store, expose.

use std::path::Path;

use anyhow::{Context, Result};
use mailpulse_collector::CollectorConfig;
use mailpulse_collector::ingest::auth::TokenTable;

/// Loads and checks a collector configuration file: what parsing cannot see (plaintext gRPC
/// off loopback), and its agent tokens (a token file others may read is refused).
pub fn load(path: &Path) -> Result<CollectorConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: CollectorConfig = mailpulse_agent::config::parse_toml(path, &text)?;
    // Files named in [remediation] are relative to the configuration's directory.
    let dir = path.parent().unwrap_or(Path::new("."));
    for file in [
        &mut config.remediation.playbooks_file,
        &mut config.remediation.audit_file,
        &mut config.remediation.api_token_file,
    ]
    .into_iter()
    .flatten()
    {
        if file.is_relative() {
            *file = dir.join(&*file);
        }
    }
    config
        .validate()
        .with_context(|| format!("{}", path.display()))?;
    let views = config.detect.engine().views;
    mailpulse_collector::alerting::check_views(
        &config.alerting.rules,
        views
            .iter()
            .map(|v| v.name.as_str())
            .chain(["agent_down"])
            .chain(mailpulse_collector::analyze::advice::NAMES.iter().copied()),
    )
    .map_err(|e| {
        let (line, column) = mailpulse_agent::config::line_column(&text, e.span.start);
        anyhow::anyhow!(
            "{}:{line}:{column}: [[alerting.rules]]: {e}",
            path.display()
        )
    })?;
    let views: Vec<(String, Vec<String>)> = views
        .iter()
        .map(|v| (v.name.clone(), v.by.clone()))
        .collect();
    mailpulse_collector::remediate::playbooks(&config.remediation, &views)
        .map_err(|e| anyhow::anyhow!("[remediation]: {e}"))?;
    TokenTable::load(&config.auth).with_context(|| format!("{}: [auth]", path.display()))?;
    Ok(config)
}

pub fn run(path: &Path) -> Result<()> {
    let config = load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        mailpulse_collector::run(config, crate::cli_agent::shutdown_signal())
            .await
            .context("collector stopped")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh directory under the system temp dir (removed by the caller).
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mailpulse-cli-collector-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn config_check_names_an_alert_rule_for_an_unknown_view_with_its_place() {
        let dir = scratch("rules");
        let tokens = dir.join("tokens");
        write(&tokens, "mx1 token-of-mx1-0123456789\n", 0o600);
        let config = dir.join("collector.toml");
        let text = |view: &str| {
            format!(
                "[auth]\ntoken_file = \"{}\"\n\n[[alerting.rules]]\nview = \"bounce_ratio\"\n\n[[alerting.rules]]\nview = \"{view}\"\nseverity = \"critical\"\n",
                tokens.display()
            )
        };
        write(&config, &text("bounce_rato"), 0o600);
        let error = format!("{:#}", load(&config).unwrap_err());
        assert!(
            error.contains(
                "collector.toml:8:8: [[alerting.rules]]: alert rule names view \"bounce_rato\""
            ),
            "{error}"
        );
        assert!(
            error.contains("deferral_ratio"),
            "lists the known views: {error}"
        );
        write(&config, &text("spool_full"), 0o600);
        load(&config).expect("a rule for a built-in view");
        for builtin in ["agent_down", "dnsbl_listed", "mx_ttl_long"] {
            write(&config, &text(builtin), 0o600);
            load(&config).unwrap_or_else(|e| panic!("a rule for {builtin}: {e:#}"));
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn config_check_refuses_plaintext_grpc_off_loopback() {
        let dir = scratch("plaintext");
        let tokens = dir.join("tokens");
        write(&tokens, "mx1 token-of-mx1-0123456789\n", 0o600);
        let config = dir.join("collector.toml");
        let with = |head: &str| {
            write(
                &config,
                &format!("{head}\n[auth]\ntoken_file = \"{}\"\n", tokens.display()),
                0o644,
            );
            load(&config).map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        let error = with("grpc_listen_addr = \"0.0.0.0:4770\"").expect_err("plaintext");
        assert!(error.contains("allow_plaintext_grpc"), "{error}");
        with("grpc_listen_addr = \"127.0.0.1:4770\"").expect("loopback");
        with("grpc_listen_addr = \"0.0.0.0:4770\"\nallow_plaintext_grpc = true")
            .expect("explicitly allowed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_check_refuses_a_token_file_others_may_read() {
        let dir = scratch("tokens");
        let tokens = dir.join("tokens");
        write(&tokens, "mx1 token-of-mx1-0123456789\n", 0o644);
        let config = dir.join("collector.toml");
        write(
            &config,
            &format!("[auth]\ntoken_file = \"{}\"\n", tokens.display()),
            0o644,
        );
        let error = format!("{:#}", load(&config).expect_err("readable by others"));
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        load(&config).expect("private token file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_packaged_collector_config_checks_apart_from_its_files() {
        let text = include_str!("../packaging/collector.toml");
        let config: CollectorConfig = toml::from_str(text).expect("parses");
        config.validate().expect("TLS on a public address");
    }
}
