//! Bearer-token authentication: which agent a stream may speak for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

/// Per-agent bearer tokens: the agent sends `authorization: Bearer <token>`; the token decides
/// which `agent_id` the stream may speak for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// agent_id → token.
    pub tokens: BTreeMap<String, String>,
    /// A file of `agent_id token` lines (`#` comments, blank lines ignored), merged with `tokens`;
    /// keeps secrets out of the main config.
    pub token_file: Option<PathBuf>,
}

/// Token problems found while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file could not be read.
    #[error("reading token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A token file line is not `agent_id token`.
    #[error("{path}:{line}: expected `agent_id token`")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A token is empty, shorter than 16 bytes, or used by two agents.
    #[error("agent {agent_id}: {problem}")]
    BadToken {
        /// Whose token.
        agent_id: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// No agent could ever connect.
    #[error("no agent tokens configured (auth.tokens or auth.token_file)")]
    NoTokens,
}

/// agent_id ↔ token, compared in constant time.
#[derive(Debug, Clone)]
pub struct TokenTable {
    entries: Vec<(Arc<str>, Box<[u8]>)>,
}

impl TokenTable {
    /// Loads tokens from the config and the token file.
    pub fn load(config: &AuthConfig) -> Result<Self, AuthError> {
        let mut tokens = config.tokens.clone();
        if let Some(path) = &config.token_file {
            tokens.extend(read_token_file(path)?);
        }
        if tokens.is_empty() {
            return Err(AuthError::NoTokens);
        }
        let mut entries: Vec<(Arc<str>, Box<[u8]>)> = Vec::with_capacity(tokens.len());
        for (agent_id, token) in tokens {
            let problem = if token.len() < 16 {
                Some("token shorter than 16 bytes")
            } else if entries.iter().any(|(_, t)| **t == *token.as_bytes()) {
                Some("token shared with another agent")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(AuthError::BadToken { agent_id, problem });
            }
            entries.push((agent_id.into(), token.into_bytes().into()));
        }
        Ok(Self { entries })
    }

    /// The agent whose token the request carries (`authorization: Bearer <token>`).
    pub fn authenticate(&self, metadata: &MetadataMap) -> Option<Arc<str>> {
        let value = metadata.get("authorization")?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim().as_bytes();
        // Look at every entry, so the time taken does not tell which one matched.
        let mut found = None;
        for (agent_id, expected) in &self.entries {
            if bool::from(expected.ct_eq(token)) {
                found = Some(agent_id.clone());
            }
        }
        found
    }
}

fn read_token_file(path: &Path) -> Result<BTreeMap<String, String>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tokens = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(agent), Some(token), None) => {
                tokens.insert(agent.to_string(), token.to_string());
            }
            _ => {
                return Err(AuthError::Syntax {
                    path: path.to_path_buf(),
                    line: i + 1,
                });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TokenTable {
        let mut config = AuthConfig::default();
        config
            .tokens
            .insert("mx1".into(), "token-of-mx1-0123456789".into());
        config
            .tokens
            .insert("mx2".into(), "token-of-mx2-0123456789".into());
        TokenTable::load(&config).expect("valid tokens")
    }

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().expect("ascii"));
        map
    }

    #[test]
    fn bearer_token_selects_its_agent() {
        let table = table();
        assert_eq!(
            table
                .authenticate(&metadata("Bearer token-of-mx2-0123456789"))
                .as_deref(),
            Some("mx2")
        );
        assert_eq!(
            table
                .authenticate(&metadata("bearer token-of-mx1-0123456789"))
                .as_deref(),
            Some("mx1")
        );
        assert_eq!(table.authenticate(&metadata("Bearer nope")), None);
        assert_eq!(
            table.authenticate(&metadata("Basic token-of-mx1-0123456789")),
            None
        );
        assert_eq!(table.authenticate(&MetadataMap::new()), None);
    }

    #[test]
    fn only_the_exact_token_matches() {
        let table = table();
        let with = |token: &str| table.authenticate(&metadata(&format!("Bearer {token}")));
        assert_eq!(
            with("token-of-mx1-0123456789").as_deref(),
            Some("mx1"),
            "equal"
        );
        assert_eq!(with("token-of-mx1-012345678"), None, "a prefix (shorter)");
        assert_eq!(with("token-of-mx1-01234567890"), None, "longer");
        assert_eq!(with("token-of-mx1-0123456788"), None, "one byte different");
    }

    #[test]
    fn weak_or_shared_tokens_and_bad_files_are_refused() {
        let mut config = AuthConfig::default();
        assert!(matches!(
            TokenTable::load(&config),
            Err(AuthError::NoTokens)
        ));
        config.tokens.insert("a".into(), "short".into());
        assert!(matches!(
            TokenTable::load(&config),
            Err(AuthError::BadToken { .. })
        ));
        config
            .tokens
            .insert("a".into(), "same-token-0123456789".into());
        config
            .tokens
            .insert("b".into(), "same-token-0123456789".into());
        assert!(matches!(
            TokenTable::load(&config),
            Err(AuthError::BadToken { .. })
        ));

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# comment\n\nmx9 token-of-mx9-0123456789\nbroken\n").expect("write");
        let config = AuthConfig {
            tokens: BTreeMap::new(),
            token_file: Some(file),
        };
        match TokenTable::load(&config) {
            Err(AuthError::Syntax { line, .. }) => assert_eq!(line, 4),
            other => panic!("expected a syntax error on line 4, got {other:?}"),
        }
    }
}
