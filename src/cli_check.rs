//! `mailpulse check DOMAIN [--ip IP]...`: every DNS, authentication and reputation finding for a
//! domain, once, for a human (coloured on a terminal) or as JSON.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use mailpulse_agent::dns::check::{CheckInput, CheckReport, check_domain};
use mailpulse_agent::dns::dnsbl::default_lists;
use mailpulse_agent::dns::finding::Severity;
use mailpulse_agent::dns::hickory::{HickoryResolver, ResolverOptions, TrustAnchor};
use mailpulse_agent::dns::mtasts::{FetchDisabled, HttpsPolicyFetcher, MtaStsConfig};

/// What `mailpulse check` was asked.
pub struct CheckArgs {
    pub domain: String,
    pub ips: Vec<IpAddr>,
    pub selectors: Vec<String>,
    pub json: bool,
    /// Resolvers to ask instead of the system's.
    pub resolvers: Vec<SocketAddr>,
    /// DNSSEC trust anchor (DS or DNSKEY records): validate answers.
    pub trust_anchor: Option<PathBuf>,
    /// Fetch the MTA-STS policy over HTTPS.
    pub fetch_policy: bool,
    pub timeout: Duration,
}

/// Runs the check and prints it; `Ok(false)` when an error-level finding was found.
pub fn run(args: CheckArgs) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(check(&args))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        out.write_all(render(&report, colour).as_bytes())?;
    }
    out.flush()?;
    Ok(report.worst() != Some(Severity::Error))
}

async fn check(args: &CheckArgs) -> Result<CheckReport> {
    let mut options = ResolverOptions::default().timeout(args.timeout).attempts(2);
    if let Some(path) = &args.trust_anchor {
        let anchor = TrustAnchor::from_file(path)
            .with_context(|| format!("reading the trust anchor {}", path.display()))?;
        options = options.dnssec(anchor);
    }
    let resolver = if args.resolvers.is_empty() {
        HickoryResolver::system(options)
    } else {
        HickoryResolver::with_nameservers(&args.resolvers, options)
    }
    .context("setting up the resolver")?;
    let input = CheckInput {
        domain: args.domain.clone(),
        ips: args.ips.clone(),
        dkim_selectors: args.selectors.clone(),
        lists: default_lists(),
        ip_reputation: true,
    };
    Ok(if args.fetch_policy {
        let fetcher = HttpsPolicyFetcher::new(&MtaStsConfig {
            fetch_policy: true,
            ..MtaStsConfig::default()
        })
        .context("setting up the HTTPS client for MTA-STS")?;
        check_domain(&input, &resolver, &fetcher).await
    } else {
        check_domain(&input, &resolver, &FetchDisabled).await
    })
}

/// The report as text: one block per finding, most severe first, then a summary line.
pub fn render(report: &CheckReport, colour: bool) -> String {
    use std::fmt::Write as _;
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}",
        paint("1", &format!("mailpulse check {}", report.domain))
    );
    for outcome in &report.spf {
        let _ = writeln!(s, "  SPF for {}: {}", outcome.ip, outcome.verdict);
    }
    let _ = writeln!(
        s,
        "  DNSSEC: {}",
        if report.dnssec_authenticated {
            "validated"
        } else {
            "not validated"
        }
    );
    let _ = writeln!(s);
    for f in &report.findings {
        let (tag, code) = match f.severity {
            Severity::Error => ("ERROR", "31;1"),
            Severity::Warning => ("WARN ", "33"),
            Severity::Info => ("INFO ", "36"),
            Severity::Ok => ("OK   ", "32"),
        };
        let _ = writeln!(s, "{} [{}] {}", paint(code, tag), f.check, f.message);
        if let Some(fix) = &f.fix {
            let _ = writeln!(s, "        fix: {fix}");
        }
    }
    let count = |sev| report.findings.iter().filter(|f| f.severity == sev).count();
    let _ = writeln!(
        s,
        "\n{} errors, {} warnings, {} notes, {} ok",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
        count(Severity::Ok)
    );
    s
}
