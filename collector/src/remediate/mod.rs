//! Remediation: playbooks that turn firing alerts into typed actions run by agents — dry-run
//! unless a playbook says otherwise, guarded (kill switch, hosts per run, cooldown, rate limit),
//! audited, and undone after a while or when their alert resolves.
//!
//! - [`playbook`]: the playbooks file, its check (for `mailpulse config check`) and the
//!   resolution of a step's parameters from an alert's labels (every value in its grammar);
//! - [`engine`]: the task that runs them ([`engine::Remediation`] is its handle);
//! - [`bus`]: actions to the agents' streams, results back;
//! - [`audit`]: the audit log (store and JSON Lines).

pub mod audit;
pub mod bus;
pub mod engine;
pub mod playbook;

use std::path::PathBuf;

use serde::Deserialize;

pub use bus::ActionBus;
pub use engine::{Input, Remediation};

/// The `[remediation]` section of the collector configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationConfig {
    /// false: the kill switch is on from the start (no playbook runs; reverts still do).
    pub enabled: bool,
    /// The playbooks (TOML, `[[playbooks]]`), besides the built-in ones.
    pub playbooks_file: Option<PathBuf>,
    /// Run the built-in playbooks (default true): `pause-on-complaints`, in approve mode.
    pub builtin_playbooks: bool,
    /// Also append every audit entry to this file as JSON Lines.
    pub audit_file: Option<PathBuf>,
    /// Bearer token (first line of the file) for approvals and the kill switch over HTTP;
    /// none: those endpoints answer 403.
    pub api_token_file: Option<PathBuf>,
    /// The same action on the same target of the same agent is not sent again within this
    /// (default 900 s).
    pub cooldown_secs: u64,
    /// Actions sent per minute at most, over all playbooks (default 30).
    pub max_actions_per_minute: u32,
    /// An alert whose host matches more agents than this is not acted on (default 3).
    pub max_hosts_per_run: usize,
    /// Seconds an approval waits before it expires (default 900).
    pub approval_expiry_secs: u64,
    /// Seconds to wait for an agent's result before the run stops (default 120).
    pub result_timeout_secs: u64,
}

impl Default for RemediationConfig {
    fn default() -> Self {
        RemediationConfig {
            enabled: true,
            playbooks_file: None,
            builtin_playbooks: true,
            audit_file: None,
            api_token_file: None,
            cooldown_secs: 900,
            max_actions_per_minute: 30,
            max_hosts_per_run: 3,
            approval_expiry_secs: 900,
            result_timeout_secs: 120,
        }
    }
}

/// The built-in playbooks' text.
pub const BUILTIN_PLAYBOOKS: &str = include_str!("builtin.toml");

/// The playbooks `cfg` asks for: the built-in ones (unless off), replaced by name and extended
/// by the playbooks file's. Errors carry the file and the line and column.
pub fn playbooks(
    cfg: &RemediationConfig,
    views: &[(String, Vec<String>)],
) -> Result<Vec<playbook::Playbook>, String> {
    let mut out: Vec<playbook::Playbook> = Vec::new();
    if cfg.builtin_playbooks {
        let mut file: playbook::PlaybookFile =
            toml::from_str(BUILTIN_PLAYBOOKS).map_err(|e| format!("built-in playbooks: {e}"))?;
        // A built-in playbook applies where its alert exists (custom views may leave it out).
        file.playbooks
            .retain(|p| playbook::alert_labels(p.trigger.alert.get_ref(), views).is_some());
        playbook::check(&file, views).map_err(|e| format!("built-in playbooks: {e}"))?;
        out = file.playbooks;
    }
    if let Some(path) = &cfg.playbooks_file {
        for pb in load_playbooks(path, views)? {
            out.retain(|b| b.name != pb.name);
            out.push(pb);
        }
    }
    Ok(out)
}

/// Loads the playbooks file and checks it against the views that exist; the error carries
/// the file's path and the line and column.
pub fn load_playbooks(
    path: &std::path::Path,
    views: &[(String, Vec<String>)],
) -> Result<Vec<playbook::Playbook>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let at = |offset: usize| {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    };
    let file: playbook::PlaybookFile = toml::from_str(&text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| at(s.start));
        format!("{}:{line}:{column}: {}", path.display(), e.message())
    })?;
    playbook::check(&file, views).map_err(|e| {
        let (line, column) = at(e.span.start);
        format!("{}:{line}:{column}: {}", path.display(), e.message)
    })?;
    Ok(file.playbooks)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sample_playbooks_pass_the_check() {
        let views: Vec<(String, Vec<String>)> = crate::analyze::default_views()
            .into_iter()
            .map(|v| (v.name, v.by))
            .collect();
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/playbooks.toml");
        let playbooks = super::load_playbooks(&path, &views).expect("valid");
        assert_eq!(playbooks.len(), 4);
    }

    #[test]
    fn builtins_are_checked_and_a_file_replaces_them_by_name() {
        let views: Vec<(String, Vec<String>)> = crate::analyze::default_views()
            .into_iter()
            .map(|v| (v.name, v.by))
            .collect();
        let cfg = super::RemediationConfig::default();
        let builtins = super::playbooks(&cfg, &views).expect("valid");
        assert_eq!(builtins.len(), 1);
        assert_eq!(builtins[0].mode, super::playbook::Mode::Approve);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("playbooks.toml");
        std::fs::write(
            &path,
            "[[playbooks]]\nname = \"pause-on-complaints\"\nmode = \"dry_run\"\ntrigger = { alert = \"complaints\" }\n[[playbooks.steps]]\naction = \"hold_sender\"\nparams = { sender = \"$sender\" }\n",
        )
        .expect("write");
        let cfg = super::RemediationConfig {
            playbooks_file: Some(path),
            ..super::RemediationConfig::default()
        };
        let replaced = super::playbooks(&cfg, &views).expect("valid");
        assert_eq!(replaced.len(), 1);
        assert_eq!(replaced[0].mode, super::playbook::Mode::DryRun);
        let off = super::RemediationConfig {
            builtin_playbooks: false,
            ..super::RemediationConfig::default()
        };
        assert!(super::playbooks(&off, &views).expect("valid").is_empty());
        // Custom views without `complaints`: the built-in playbook does not apply, no error.
        let custom = vec![("messages_bounced".to_owned(), vec!["domain".to_owned()])];
        assert!(
            super::playbooks(&super::RemediationConfig::default(), &custom)
                .expect("valid")
                .is_empty()
        );
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("playbooks.toml");
        std::fs::write(
            &path,
            "[[playbooks]]\nname = \"x\"\ntrigger = { alert = \"bounce_ratio\" }\n[[playbooks.steps]]\naction = \"rm_rf\"\n",
        )
        .expect("write");
        let err = super::load_playbooks(&path, &[("bounce_ratio".into(), vec!["domain".into()])])
            .unwrap_err();
        assert!(
            err.contains("playbooks.toml:5:10: playbook \"x\": unknown action \"rm_rf\""),
            "{err}"
        );
    }
}
