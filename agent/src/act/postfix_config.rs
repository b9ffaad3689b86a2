//! Configuration actions — throttle a destination, switch a sender domain's IP pool, block a
//! client network — made with `postconf` and tables mailpulse owns, and reverted exactly.
//!
//! What mailpulse adds to an instance, and nothing else:
//! - tables next to `main.cf`: `mailpulse_transport` (throttled domains → `mailpulse_slow:`),
//!   `mailpulse_sender_transport` (`@sender-domain` → `mailpulse_pool_<pool>:`), and the CIDR
//!   table `mailpulse_client_access` (`net/prefix REJECT …`), each rewritten whole;
//! - `master.cf` services `mailpulse_slow` (plain `smtp`) and `mailpulse_pool_<pool>` (`smtp`
//!   with `-o smtp_bind_address`/`smtp_bind_address6` and `-o smtp_helo_name` from the
//!   agent's configuration);
//! - `main.cf`: `mailpulse_slow_destination_rate_delay` (the longest delay asked for) and
//!   `mailpulse_slow_destination_concurrency_limit = 1`, and the owned table put first in
//!   `transport_maps`, `sender_dependent_default_transport_maps` or `smtpd_client_restrictions`
//!   (`check_client_access`) before the administrator's own value, which is kept.
//!
//! Before the first change the instance's `main.cf` and `master.cf` are copied to the agent's
//! state directory, and after every change their hashes are recorded. When the last owned entry
//! goes, the copies are put back byte for byte — if the files are still exactly as mailpulse
//! left them; if someone edited them since, only mailpulse's own parameters and services are
//! removed (`postconf -X`, `postconf -MX`) and the administrator's values put back, so their
//! edit survives. Each change ends with `postfix reload`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::Command;
use super::request::{Checked, Request};
use super::run;
use super::{ActionsConfig, Report, Status};

const SLOW: &str = "mailpulse_slow";
const TRANSPORT_TABLE: &str = "mailpulse_transport";
const SENDER_TABLE: &str = "mailpulse_sender_transport";
const CLIENT_TABLE: &str = "mailpulse_client_access";
/// The owned services log as `postfix/<service>/smtp`, so their deliveries are told apart (and
/// still read as the smtp client's).
const SYSLOG_NAME: &str = "postfix/$service_name";
/// The reply a blocked network gets (fixed text).
const BLOCK_REPLY: &str = "REJECT 5.7.1 Access denied: network blocked by the mail administrator";

/// Where a redirected destination or sender domain goes: through a mailpulse transport, to the
/// next hop the administrator's routing gave it (kept, so a throttle or a pool switch changes
/// how mail leaves, not where it goes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The throttle's delay (seconds) or the pool's name.
    pub via: String,
    /// `[host]:port`, a host name, or empty (the domain's own MX, or `relayhost`).
    pub nexthop: String,
}

/// What mailpulse owns in one instance, kept in the agent's state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// Throttled destination → delay (seconds) and next hop.
    pub throttled: BTreeMap<String, Route>,
    /// Sender domain → pool and next hop.
    pub pools: BTreeMap<String, Route>,
    /// Blocked networks (`net/prefix`).
    pub blocked: BTreeSet<String>,
    /// The administrator's values of the parameters mailpulse prepends to (None: not set).
    pub original: BTreeMap<String, Option<String>>,
    /// SHA-256 (hex) of `main.cf` and `master.cf` as mailpulse last left them.
    pub left_main_cf: String,
    pub left_master_cf: String,
}

impl Owned {
    fn is_empty(&self) -> bool {
        self.throttled.is_empty() && self.pools.is_empty() && self.blocked.is_empty()
    }
}

fn state_dir(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join("actions").join(instance)
}

fn load(dir: &Path) -> Result<Owned, String> {
    match std::fs::read(dir.join("owned.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: {e}", dir.join("owned.json").display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Owned::default()),
        Err(e) => Err(format!("{}: {e}", dir.join("owned.json").display())),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("mailpulse-tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn sha256_file(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        Err(_) => String::new(),
    }
}

/// The owned state after `request`; `nexthop` is where the redirected mail goes.
pub fn next(owned: &Owned, request: &Request, nexthop: &str) -> Owned {
    let mut next = owned.clone();
    let route = |via: String| Route {
        via,
        nexthop: nexthop.to_owned(),
    };
    match request {
        Request::Throttle {
            domain,
            rate_delay_secs,
        } => {
            next.throttled
                .insert(domain.clone(), route(rate_delay_secs.to_string()));
        }
        Request::Unthrottle { domain } => {
            next.throttled.remove(domain);
        }
        Request::SwitchPool {
            sender_domain,
            pool,
        } => {
            next.pools
                .insert(sender_domain.clone(), route(pool.clone()));
        }
        Request::RestorePool { sender_domain } => {
            next.pools.remove(sender_domain);
        }
        Request::Block { net } => {
            next.blocked.insert(format!("{}/{}", net.0, net.1));
        }
        Request::Unblock { net } => {
            next.blocked.remove(&format!("{}/{}", net.0, net.1));
        }
        _ => {}
    }
    next
}

/// The owned tables' contents for `owned` (name → text); an unused table is absent.
pub fn tables(owned: &Owned) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    if !owned.throttled.is_empty() {
        out.insert(
            TRANSPORT_TABLE,
            owned
                .throttled
                .iter()
                .map(|(d, r)| format!("{d} {SLOW}:{}\n", r.nexthop))
                .collect(),
        );
    }
    if !owned.pools.is_empty() {
        out.insert(
            SENDER_TABLE,
            owned
                .pools
                .iter()
                .map(|(d, r)| format!("@{d} mailpulse_pool_{}:{}\n", r.via, r.nexthop))
                .collect(),
        );
    }
    if !owned.blocked.is_empty() {
        out.insert(
            CLIENT_TABLE,
            owned
                .blocked
                .iter()
                .map(|net| format!("{net} {BLOCK_REPLY}\n"))
                .collect(),
        );
    }
    out
}

/// The `master.cf` service line of pool `name`.
fn pool_service(cfg: &ActionsConfig, name: &str) -> Option<String> {
    let pool = cfg.pools.get(name)?;
    let bind = match pool.bind_address {
        std::net::IpAddr::V4(a) => format!("smtp_bind_address={a}"),
        std::net::IpAddr::V6(a) => format!("smtp_bind_address6={a}"),
    };
    let helo = pool
        .helo_name
        .as_ref()
        .map_or(String::new(), |h| format!(" -o smtp_helo_name={h}"));
    Some(format!(
        "mailpulse_pool_{name}/unix=mailpulse_pool_{name} unix - - - - - smtp -o {bind}{helo} -o syslog_name={SYSLOG_NAME}"
    ))
}

/// The parameter each table is put first in, and how it is named there.
fn hooks(db_type: &str, dir: &Path) -> [(&'static str, &'static str, String); 3] {
    let path = |t: &str| dir.join(t).display().to_string();
    [
        (
            TRANSPORT_TABLE,
            "transport_maps",
            format!("{db_type}:{}", path(TRANSPORT_TABLE)),
        ),
        (
            SENDER_TABLE,
            "sender_dependent_default_transport_maps",
            format!("{db_type}:{}", path(SENDER_TABLE)),
        ),
        (
            CLIENT_TABLE,
            "smtpd_client_restrictions",
            format!("check_client_access cidr:{}", path(CLIENT_TABLE)),
        ),
    ]
}

/// `postconf` commands that make `main.cf`/`master.cf` carry `owned` (tables written apart),
/// given the administrator's original values; and those that remove what `before` had and
/// `owned` no longer has.
pub fn postconf_commands(
    cfg: &ActionsConfig,
    dir: &Path,
    db_type: &str,
    before: &Owned,
    owned: &Owned,
) -> Vec<Command> {
    let postconf = |args: &[&str]| Command::postfix(cfg, "postconf", dir, args);
    let mut out = Vec::new();
    let (old_tables, new_tables) = (tables(before), tables(owned));
    for (table, param, reference) in hooks(db_type, dir) {
        let original = owned.original.get(param).cloned().flatten();
        match (
            old_tables.contains_key(table),
            new_tables.contains_key(table),
        ) {
            (_, true) => {
                let value = match original.as_deref().map(str::trim) {
                    Some(o) if !o.is_empty() => format!("{reference}, {o}"),
                    _ => reference,
                };
                out.push(postconf(&["-e", &format!("{param}={value}")]));
            }
            (true, false) => match original {
                Some(o) => out.push(postconf(&["-e", &format!("{param}={o}")])),
                None => out.push(postconf(&["-X", param])),
            },
            (false, false) => {}
        }
    }
    // The slow transport.
    match (before.throttled.is_empty(), owned.throttled.is_empty()) {
        (_, false) => {
            let delay = owned
                .throttled
                .values()
                .filter_map(|r| r.via.parse::<u32>().ok())
                .max()
                .unwrap_or(1);
            out.push(postconf(&[
                "-M",
                &format!("{SLOW}/unix={SLOW} unix - - - - - smtp -o syslog_name={SYSLOG_NAME}"),
            ]));
            out.push(postconf(&[
                "-e",
                &format!("{SLOW}_destination_rate_delay={delay}s"),
                &format!("{SLOW}_destination_concurrency_limit=1"),
            ]));
        }
        (false, true) => {
            out.push(postconf(&["-MX", &format!("{SLOW}/unix")]));
            out.push(postconf(&[
                "-X",
                &format!("{SLOW}_destination_rate_delay"),
                &format!("{SLOW}_destination_concurrency_limit"),
            ]));
        }
        (true, true) => {}
    }
    // Pool transports: every pool in use has its service; pools no longer used lose theirs.
    let used: BTreeSet<&String> = owned.pools.values().map(|r| &r.via).collect();
    let was: BTreeSet<&String> = before.pools.values().map(|r| &r.via).collect();
    for pool in &used {
        if let Some(service) = pool_service(cfg, pool) {
            out.push(postconf(&["-M", &service]));
        }
    }
    for pool in was.difference(&used) {
        out.push(postconf(&["-MX", &format!("mailpulse_pool_{pool}/unix")]));
    }
    out
}

/// The next hop of a `transport:nexthop` value, if it is one mailpulse can keep (no space, no
/// control character, no comma).
pub fn nexthop_of(value: &str) -> Option<String> {
    let nexthop = value.split_once(':').map_or("", |(_, n)| n);
    let ok = nexthop.len() <= 255
        && nexthop
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'#');
    ok.then(|| nexthop.to_owned())
}

/// The lookup keys of a destination in `transport_maps`, in Postfix's order: the domain, its
/// parent domains with a leading dot, then `*`.
pub fn route_keys(domain: &str) -> Vec<String> {
    let mut keys = vec![domain.to_owned()];
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        keys.push(format!(".{parent}"));
        rest = parent;
    }
    keys.push("*".into());
    keys
}

/// The next hop the administrator's `transport_maps` give `domain` (`postmap -q` on each of
/// its tables, keys in Postfix's order); empty when none has a route.
async fn current_route(
    cfg: &ActionsConfig,
    dir: &Path,
    before: &Owned,
    domain: &str,
    report: &mut Report,
) -> Result<String, String> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let maps = match before.original.get("transport_maps") {
        Some(original) => original.clone().unwrap_or_default(),
        None => {
            let value = run::run(
                &Command::postfix(cfg, "postconf", dir, &["-h", "transport_maps"]),
                timeout,
                64 * 1024,
            )
            .await;
            let ok = value.succeeded();
            let text = value.stdout.trim().to_owned();
            report.commands.push(value);
            if !ok {
                return Err("cannot read transport_maps".into());
            }
            text
        }
    };
    let tables: Vec<&str> = maps
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| t.contains(':') && !t.contains("mailpulse_transport"))
        .take(16)
        .collect();
    for key in route_keys(domain) {
        for table in &tables {
            let query = run::run(
                &Command::postfix(cfg, "postmap", dir, &["-q", &key, table]),
                timeout,
                4096,
            )
            .await;
            let found = query.succeeded();
            let value = query.stdout.trim().to_owned();
            report.commands.push(query);
            if found {
                return nexthop_of(&value)
                    .ok_or_else(|| format!("cannot keep the route {value:?} of {domain}"));
            }
        }
    }
    Ok(String::new())
}

/// Applies a configuration request on the instance in `dir`.
pub async fn apply(
    cfg: &ActionsConfig,
    state_root: &Path,
    dir: &Path,
    checked: &Checked,
    dry_run: bool,
    report: &mut Report,
) -> Status {
    let sdir = state_dir(state_root, &checked.instance);
    let before = match load(&sdir) {
        Ok(owned) => owned,
        Err(e) => {
            report.error = e;
            return Status::Failed;
        }
    };
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let read = |args: &[&str]| Command::postfix(cfg, "postconf", dir, args);
    let nexthop = match &checked.request {
        Request::Throttle { domain, .. } if !before.throttled.contains_key(domain) => {
            match current_route(cfg, dir, &before, domain, report).await {
                Ok(n) => n,
                Err(e) => {
                    report.error = e;
                    return Status::Failed;
                }
            }
        }
        Request::SwitchPool { sender_domain, .. } => match before.pools.get(sender_domain) {
            Some(route) => route.nexthop.clone(),
            None => {
                let value = run::run(&read(&["-h", "default_transport"]), timeout, 4096).await;
                let ok = value.succeeded();
                let text = value.stdout.trim().to_owned();
                report.commands.push(value);
                match (ok, nexthop_of(&text)) {
                    (true, Some(n)) => n,
                    _ => {
                        report.error = format!("cannot keep default_transport's next hop {text:?}");
                        return Status::Failed;
                    }
                }
            }
        },
        Request::Throttle { domain, .. } => before.throttled[domain].nexthop.clone(),
        _ => String::new(),
    };
    let mut owned = next(&before, &checked.request, &nexthop);
    if owned == before {
        return if dry_run { Status::Planned } else { Status::Ok };
    }
    // The database type for the hashed tables.
    let db = run::run(&read(&["-h", "default_database_type"]), timeout, 256).await;
    let db_type = db.stdout.trim().to_owned();
    let db_ok = db.succeeded()
        && !db_type.is_empty()
        && db_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    report.commands.push(db);
    if !db_ok {
        report.error = "cannot read default_database_type".into();
        return Status::Failed;
    }
    // The administrator's values, read before mailpulse first touches a parameter.
    for (_, param, _) in hooks(&db_type, dir) {
        if owned.original.contains_key(param) {
            continue;
        }
        let value = run::run(&read(&["-n", "-h", param]), timeout, 64 * 1024).await;
        let ok = value.succeeded();
        let text = value.stdout.trim().to_owned();
        report.commands.push(value);
        if !ok {
            report.error = format!("cannot read {param}");
            return Status::Failed;
        }
        owned
            .original
            .insert(param.to_owned(), (!text.is_empty()).then_some(text));
    }
    let main_cf = dir.join("main.cf");
    let master_cf = dir.join("master.cf");
    let restore = owned.is_empty()
        && sha256_file(&main_cf) == before.left_main_cf
        && sha256_file(&master_cf) == before.left_master_cf
        && sdir.join("main.cf.orig").exists()
        && sdir.join("master.cf.orig").exists();
    let tables_now = tables(&owned);
    let mut commands = Vec::new();
    if !restore {
        commands = postconf_commands(cfg, dir, &db_type, &before, &owned);
    }
    for table in [TRANSPORT_TABLE, SENDER_TABLE] {
        if tables_now.contains_key(table) {
            commands.push(Command::postfix(
                cfg,
                "postmap",
                dir,
                &[&format!("{db_type}:{}", dir.join(table).display())],
            ));
        }
    }
    commands.push(Command::postfix(cfg, "postfix", dir, &["reload"]));
    if dry_run {
        for (table, text) in &tables_now {
            report.files.push(format!(
                "{} ({} lines)",
                dir.join(table).display(),
                text.lines().count()
            ));
        }
        return run::run_all(cfg, &commands, true, report).await;
    }
    if let Err(e) = std::fs::create_dir_all(&sdir) {
        report.error = format!("{}: {e}", sdir.display());
        return Status::Failed;
    }
    if before.is_empty() {
        // The first change: keep the files as the administrator left them.
        for (file, copy) in [(&main_cf, "main.cf.orig"), (&master_cf, "master.cf.orig")] {
            if let Err(e) = std::fs::copy(file, sdir.join(copy)) {
                report.error = format!("backing up {}: {e}", file.display());
                return Status::Failed;
            }
        }
    }
    if restore {
        for (file, copy) in [(&main_cf, "main.cf.orig"), (&master_cf, "master.cf.orig")] {
            let bytes = match std::fs::read(sdir.join(copy)) {
                Ok(b) => b,
                Err(e) => {
                    report.error = format!("reading the backup of {}: {e}", file.display());
                    return Status::Failed;
                }
            };
            if let Err(e) = write_atomically(file, &bytes) {
                report.error = e;
                return Status::Failed;
            }
            report.files.push(format!("{} (restored)", file.display()));
        }
    }
    for (table, text) in &tables_now {
        if let Err(e) = write_atomically(&dir.join(table), text.as_bytes()) {
            report.error = e;
            return Status::Failed;
        }
        report.files.push(format!(
            "{} ({} lines)",
            dir.join(table).display(),
            text.lines().count()
        ));
    }
    let status = run::run_all(cfg, &commands, false, report).await;
    if status != Status::Ok {
        return status;
    }
    // Tables no longer used go, with their indexes.
    for table in [TRANSPORT_TABLE, SENDER_TABLE, CLIENT_TABLE] {
        if !tables_now.contains_key(table) {
            for suffix in ["", ".db", ".lmdb", ".cdb"] {
                let _ = std::fs::remove_file(dir.join(format!("{table}{suffix}")));
            }
        }
    }
    if owned.is_empty() {
        let _ = std::fs::remove_dir_all(&sdir);
        return Status::Ok;
    }
    owned.left_main_cf = sha256_file(&main_cf);
    owned.left_master_cf = sha256_file(&master_cf);
    let json = serde_json::to_vec_pretty(&owned).unwrap_or_default();
    if let Err(e) = write_atomically(&sdir.join("owned.json"), &json) {
        report.error = e;
        return Status::Failed;
    }
    Status::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::PoolConfig;

    fn cfg() -> ActionsConfig {
        let mut cfg = ActionsConfig::default();
        cfg.pools.insert(
            "blue".into(),
            PoolConfig {
                bind_address: "127.0.0.2".parse().unwrap(),
                helo_name: Some("out-blue.example.net".into()),
            },
        );
        cfg
    }

    #[test]
    fn a_throttle_prepends_the_owned_table_and_adds_the_slow_transport() {
        let dir = Path::new("/etc/postfix");
        let mut before = Owned::default();
        before.original.insert(
            "transport_maps".into(),
            Some("hash:/etc/postfix/transport".into()),
        );
        let owned = next(
            &before,
            &Request::Throttle {
                domain: "gmail.com".into(),
                rate_delay_secs: 20,
            },
            "",
        );
        let argv: Vec<Vec<String>> = postconf_commands(&cfg(), dir, "hash", &before, &owned)
            .into_iter()
            .map(|c| c.argv)
            .collect();
        let p = |args: &[&str]| {
            let mut v = vec![
                "/usr/sbin/postconf".to_owned(),
                "-c".into(),
                "/etc/postfix".into(),
            ];
            v.extend(args.iter().map(|a| a.to_string()));
            v
        };
        assert_eq!(
            argv,
            [
                p(&[
                    "-e",
                    "transport_maps=hash:/etc/postfix/mailpulse_transport, hash:/etc/postfix/transport"
                ]),
                p(&[
                    "-M",
                    "mailpulse_slow/unix=mailpulse_slow unix - - - - - smtp -o syslog_name=postfix/$service_name"
                ]),
                p(&[
                    "-e",
                    "mailpulse_slow_destination_rate_delay=20s",
                    "mailpulse_slow_destination_concurrency_limit=1"
                ]),
            ]
        );
        assert_eq!(
            tables(&owned)[TRANSPORT_TABLE],
            "gmail.com mailpulse_slow:\n"
        );
        // Reverting the last throttle puts the administrator's value back and removes the rest.
        let reverted = next(
            &owned,
            &Request::Unthrottle {
                domain: "gmail.com".into(),
            },
            "",
        );
        let argv: Vec<Vec<String>> = postconf_commands(&cfg(), dir, "hash", &owned, &reverted)
            .into_iter()
            .map(|c| c.argv)
            .collect();
        assert_eq!(
            argv,
            [
                p(&["-e", "transport_maps=hash:/etc/postfix/transport"]),
                p(&["-MX", "mailpulse_slow/unix"]),
                p(&[
                    "-X",
                    "mailpulse_slow_destination_rate_delay",
                    "mailpulse_slow_destination_concurrency_limit"
                ]),
            ]
        );
    }

    #[test]
    fn routes_are_kept_when_they_can_be() {
        assert_eq!(
            nexthop_of("smtp:[127.0.0.1]:2525").as_deref(),
            Some("[127.0.0.1]:2525")
        );
        assert_eq!(nexthop_of("smtp").as_deref(), Some(""));
        assert_eq!(
            nexthop_of("relay:mx.example.net").as_deref(),
            Some("mx.example.net")
        );
        assert_eq!(nexthop_of("smtp:[a] b"), None);
        assert_eq!(
            route_keys("mx.gmail.com"),
            ["mx.gmail.com", ".gmail.com", ".com", "*"]
        );
    }

    #[test]
    fn pools_and_blocks_have_their_tables_and_services() {
        let dir = Path::new("/etc/postfix");
        let mut before = Owned::default();
        before
            .original
            .insert("sender_dependent_default_transport_maps".into(), None);
        before.original.insert(
            "smtpd_client_restrictions".into(),
            Some("permit_mynetworks".into()),
        );
        let owned = next(
            &next(
                &before,
                &Request::SwitchPool {
                    sender_domain: "shop.example".into(),
                    pool: "blue".into(),
                },
                "[127.0.0.1]:2525",
            ),
            &Request::Block {
                net: ("198.51.100.0".parse().unwrap(), 24),
            },
            "",
        );
        let t = tables(&owned);
        assert_eq!(
            t[SENDER_TABLE],
            "@shop.example mailpulse_pool_blue:[127.0.0.1]:2525\n"
        );
        assert_eq!(t[CLIENT_TABLE], format!("198.51.100.0/24 {BLOCK_REPLY}\n"));
        let argv: Vec<String> = postconf_commands(&cfg(), dir, "lmdb", &before, &owned)
            .into_iter()
            .map(|c| c.argv[3..].join(" "))
            .collect();
        assert_eq!(
            argv,
            [
                "-e sender_dependent_default_transport_maps=lmdb:/etc/postfix/mailpulse_sender_transport",
                "-e smtpd_client_restrictions=check_client_access cidr:/etc/postfix/mailpulse_client_access, permit_mynetworks",
                "-M mailpulse_pool_blue/unix=mailpulse_pool_blue unix - - - - - smtp -o smtp_bind_address=127.0.0.2 -o smtp_helo_name=out-blue.example.net -o syslog_name=postfix/$service_name",
            ]
        );
    }
}
