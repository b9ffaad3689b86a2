//! Bearer-token authentication: which agent a stream may speak for, and for which hosts.
//!
//! Tokens are secrets: no type here prints one (`Debug` is written by hand and redacts them),
//! and the token file must not be readable by group or others.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

/// Per-agent bearer tokens: the agent sends `authorization: Bearer <token>`; the token decides
/// which `agent_id` the stream may speak for and which hosts (`Hello.host`, `host` labels).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// agent_id → token (bound to the host named like the agent), or agent_id →
    /// `{ token = "…", hosts = ["mx1.example.net"] }`.
    pub tokens: BTreeMap<String, TokenSpec>,
    /// A file of `agent_id token [host,host…]` lines (`#` comments, blank lines ignored), merged
    /// with `tokens`; keeps secrets out of the main config. It must not be accessible by group
    /// or others (`chmod 600`).
    pub token_file: Option<PathBuf>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &self.tokens)
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// One agent's token and the hosts it may speak for.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The bearer token (at least 16 bytes).
    pub token: String,
    /// Hosts the agent may name in `Hello.host` and in `host` labels; empty = the host named
    /// like the agent id.
    pub hosts: Vec<String>,
}

impl TokenSpec {
    /// A token bound to `hosts`.
    pub fn bound(token: impl Into<String>, hosts: &[&str]) -> Self {
        Self {
            token: token.into(),
            hosts: hosts.iter().map(|h| (*h).to_string()).collect(),
        }
    }
}

impl From<&str> for TokenSpec {
    fn from(token: &str) -> Self {
        Self::bound(token, &[])
    }
}

impl From<String> for TokenSpec {
    fn from(token: String) -> Self {
        Self::bound(token, &[])
    }
}

impl fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSpec")
            .field("token", &"<redacted>")
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl<'de> Deserialize<'de> for TokenSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The table form.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Bound {
            token: String,
            #[serde(default)]
            hosts: Vec<String>,
        }

        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TokenSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token string or a table { token = \"…\", hosts = [\"…\"] }")
            }

            fn visit_str<E: serde::de::Error>(self, token: &str) -> Result<TokenSpec, E> {
                Ok(TokenSpec::from(token))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<TokenSpec, A::Error> {
                let bound = Bound::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(TokenSpec {
                    token: bound.token,
                    hosts: bound.hosts,
                })
            }
        }

        deserializer.deserialize_any(Visitor)
    }
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
    /// The token file may be read (or changed) by other users.
    #[error(
        "token file {path} is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A token file line is not `agent_id token [host,host…]`.
    #[error("{path}:{line}: expected `agent_id token [host,host…]`")]
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
    /// A bound host is empty or longer than a label value may be.
    #[error("agent {agent_id}: bound host {host:?} must be 1 to 256 bytes")]
    BadHost {
        /// Whose token.
        agent_id: String,
        /// The host.
        host: String,
    },
    /// No agent could ever connect.
    #[error("no agent tokens configured (auth.tokens or auth.token_file)")]
    NoTokens,
}

/// Who a stream authenticated as: the agent and the hosts its token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The agent the token belongs to.
    pub agent_id: Arc<str>,
    /// Hosts it may speak for (at least one).
    pub hosts: Arc<[Box<str>]>,
}

/// agent_id ↔ token ↔ hosts, tokens compared in constant time.
#[derive(Clone)]
pub struct TokenTable {
    entries: Vec<(Credentials, Box<[u8]>)>,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(credentials, _)| credentials))
            .finish()
    }
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
        let mut entries: Vec<(Credentials, Box<[u8]>)> = Vec::with_capacity(tokens.len());
        for (agent_id, spec) in tokens {
            let token = spec.token;
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
            let hosts = if spec.hosts.is_empty() {
                vec![agent_id.clone()]
            } else {
                spec.hosts
            };
            if let Some(host) = hosts.iter().find(|h| h.is_empty() || h.len() > 256) {
                return Err(AuthError::BadHost {
                    agent_id,
                    host: host.clone(),
                });
            }
            let credentials = Credentials {
                agent_id: agent_id.into(),
                hosts: hosts.into_iter().map(String::into_boxed_str).collect(),
            };
            entries.push((credentials, token.into_bytes().into()));
        }
        Ok(Self { entries })
    }

    /// The agent whose token the request carries (`authorization: Bearer <token>`).
    pub fn authenticate(&self, metadata: &MetadataMap) -> Option<Credentials> {
        let value = metadata.get("authorization")?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim().as_bytes();
        // Look at every entry, so the time taken does not tell which one matched.
        let mut found = None;
        for (credentials, expected) in &self.entries {
            if bool::from(expected.ct_eq(token)) {
                found = Some(credentials);
            }
        }
        found.cloned()
    }

    /// The agents the table knows.
    pub fn agents(&self) -> impl Iterator<Item = &Credentials> {
        self.entries.iter().map(|(credentials, _)| credentials)
    }
}

fn read_token_file(path: &Path) -> Result<BTreeMap<String, TokenSpec>, AuthError> {
    let read_error = |source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    // The mode of the file opened (not of the path again), so a swap in between cannot fool it.
    check_private(path, &file.metadata().map_err(read_error)?)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_error)?;
    let mut tokens = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let syntax = || AuthError::Syntax {
            path: path.to_path_buf(),
            line: i + 1,
        };
        let (Some(agent), Some(token), hosts, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(syntax());
        };
        let hosts: Vec<&str> = match hosts {
            Some(list) => list.split(',').collect(),
            None => Vec::new(),
        };
        if hosts.iter().any(|h| h.is_empty()) {
            return Err(syntax());
        }
        tokens.insert(agent.to_string(), TokenSpec::bound(token, &hosts));
    }
    Ok(tokens)
}

/// Refuses a file that group or others may read or write.
#[cfg(unix)]
fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(AuthError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), AuthError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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

    fn agent_of(table: &TokenTable, header: &str) -> Option<String> {
        table
            .authenticate(&metadata(header))
            .map(|c| c.agent_id.to_string())
    }

    /// A token file with `text`, readable by its owner only.
    fn private_file(dir: &Path, text: &str) -> PathBuf {
        let file = dir.join("tokens");
        std::fs::write(&file, text).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        file
    }

    #[test]
    fn bearer_token_selects_its_agent() {
        let table = table();
        assert_eq!(
            agent_of(&table, "Bearer token-of-mx2-0123456789").as_deref(),
            Some("mx2")
        );
        assert_eq!(
            agent_of(&table, "bearer token-of-mx1-0123456789").as_deref(),
            Some("mx1")
        );
        assert_eq!(agent_of(&table, "Bearer nope"), None);
        assert_eq!(agent_of(&table, "Basic token-of-mx1-0123456789"), None);
        assert_eq!(table.authenticate(&MetadataMap::new()), None);
    }

    #[test]
    fn only_the_exact_token_matches() {
        let table = table();
        let with = |token: &str| agent_of(&table, &format!("Bearer {token}"));
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
        let file = private_file(
            dir.path(),
            "# comment\n\nmx9 token-of-mx9-0123456789\nbroken\n",
        );
        let config = AuthConfig {
            tokens: BTreeMap::new(),
            token_file: Some(file),
        };
        match TokenTable::load(&config) {
            Err(AuthError::Syntax { line, .. }) => assert_eq!(line, 4),
            other => panic!("expected a syntax error on line 4, got {other:?}"),
        }
    }

    #[test]
    fn tokens_are_bound_to_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = private_file(
            dir.path(),
            "mx1 token-of-mx1-0123456789\n\
             relay token-of-relay-0123456789 mx7.example.net,mx8.example.net\n",
        );
        let mut config: AuthConfig = toml::from_str(
            r#"
            [tokens]
            mx2 = { token = "token-of-mx2-0123456789", hosts = ["mx2.example.net"] }
            mx3 = "token-of-mx3-0123456789"
            "#,
        )
        .expect("both forms parse");
        config.token_file = Some(file);
        let table = TokenTable::load(&config).expect("valid");
        let hosts = |token: &str| {
            let credentials = table
                .authenticate(&metadata(&format!("Bearer {token}")))
                .expect("known token");
            credentials
                .hosts
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
        };
        // Without hosts, a token is bound to the host named like its agent.
        assert_eq!(hosts("token-of-mx1-0123456789"), ["mx1"]);
        assert_eq!(hosts("token-of-mx3-0123456789"), ["mx3"]);
        assert_eq!(hosts("token-of-mx2-0123456789"), ["mx2.example.net"]);
        assert_eq!(
            hosts("token-of-relay-0123456789"),
            ["mx7.example.net", "mx8.example.net"]
        );

        for bad in [
            "mx1 token-of-mx1-0123456789 a,,b\n",
            "mx1 token-of-mx1-0123456789 a b\n",
        ] {
            let config = AuthConfig {
                token_file: Some(private_file(dir.path(), bad)),
                ..AuthConfig::default()
            };
            assert!(
                matches!(TokenTable::load(&config), Err(AuthError::Syntax { .. })),
                "{bad:?}"
            );
        }
        let unknown = toml::from_str::<AuthConfig>(
            "[tokens]\nmx1 = { token = \"token-of-mx1-0123456789\", host = \"x\" }",
        );
        assert!(unknown.is_err(), "unknown key in the table form");
    }

    #[test]
    fn a_token_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = private_file(dir.path(), "mx1 token-of-mx1-0123456789\n");
        let config = AuthConfig {
            token_file: Some(file.clone()),
            ..AuthConfig::default()
        };
        assert!(TokenTable::load(&config).is_ok(), "0600 is fine");
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match TokenTable::load(&config) {
                Err(e @ AuthError::Permissions { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("chmod 600"), "{text}");
                    assert!(text.contains(&format!("{mode:04o}")), "{text}");
                }
                other => panic!("mode {mode:o}: expected a permission error, got {other:?}"),
            }
        }
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let mut config = AuthConfig::default();
        config
            .tokens
            .insert("mx1".into(), "token-of-mx1-0123456789".into());
        config.tokens.insert(
            "mx2".into(),
            TokenSpec::bound("token-of-mx2-0123456789", &["mx2.example"]),
        );
        let table = TokenTable::load(&config).expect("valid");
        let credentials = table
            .authenticate(&metadata("Bearer token-of-mx1-0123456789"))
            .expect("known");
        for text in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{table:?}"),
            format!("{credentials:?}"),
        ] {
            assert!(!text.contains("token-of"), "{text}");
            assert!(text.contains("mx1"), "{text}");
        }
    }
}
