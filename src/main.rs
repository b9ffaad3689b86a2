//! `mailpulse`: command-line entry point.

mod cli_actions;
mod cli_agent;
mod cli_alerts;
mod cli_check;
mod cli_collector;
mod cli_demo;
mod cli_detect;
mod cli_eval;
mod cli_events;
mod cli_http;
mod cli_simulate;
mod cli_spf;
mod input;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mailpulse_agent::parse::LogFormat;
use mailpulse_agent::pipeline::LineProcessor;
use mailpulse_agent::report::SummaryBuilder;

#[derive(Parser)]
#[command(
    name = "mailpulse",
    version,
    about = "Observability and self-healing for Postfix mail fleets",
    after_help = "Examples:\n  mailpulse parse /var/log/mail.log\n  mailpulse parse --summary json /var/log/mail.log.1 /var/log/mail.log\n  mailpulse events --follow --state-dir /var/lib/mailpulse /var/log/mail.log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Auto,
    Bsd,
    Rfc3339,
    Rfc5424,
    Maillog,
    JournalJson,
}

impl From<Format> for LogFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Auto => LogFormat::Auto,
            Format::Bsd => LogFormat::Bsd,
            Format::Rfc3339 => LogFormat::Rfc3339,
            Format::Rfc5424 => LogFormat::Rfc5424,
            Format::Maillog => LogFormat::Maillog,
            Format::JournalJson => LogFormat::JournalJson,
        }
    }
}

/// What `mailpulse detect` takes the values for.
#[derive(Clone, Copy, ValueEnum)]
enum DetectKind {
    /// Whole numbers ≥ 0 are event counts (the count test plus the band) for as long as every
    /// value is one; anything else is a level (the band).
    Auto,
    /// Event counts per window (negative values are counter resets): the count test plus the
    /// band, as the collector judges its counters.
    Count,
    /// Levels: the band only, as the collector judges its gauges.
    Level,
}

impl From<DetectKind> for cli_detect::Kind {
    fn from(kind: DetectKind) -> Self {
        match kind {
            DetectKind::Auto => cli_detect::Kind::Auto,
            DetectKind::Count => cli_detect::Kind::Count,
            DetectKind::Level => cli_detect::Kind::Level,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SummaryFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum SynthStyle {
    Bsd,
    Rfc3339,
    Maillog,
}

impl From<SynthStyle> for mailpulse_sim::synth::TimestampStyle {
    fn from(style: SynthStyle) -> Self {
        match style {
            SynthStyle::Bsd => Self::Bsd,
            SynthStyle::Rfc3339 => Self::Rfc3339,
            SynthStyle::Maillog => Self::Maillog,
        }
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate an agent or collector configuration file (errors name the line and column).
    #[command(
        after_help = "Examples:\n  mailpulse config check /etc/mailpulse/agent.toml\n  mailpulse config check /etc/mailpulse/collector.toml\n\nThe kind is taken from the file: an agent file has an [agent] table, anything else is\nchecked as a collector file."
    )]
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Check a mail domain's DNS once: MX, SPF (and whether IPs pass it), DMARC, DKIM, MTA-STS,
    /// TLS-RPT, BIMI, DNSSEC, and for each IP its PTR, block-list listings and Sender Score.
    #[command(
        after_help = "Examples:\n  mailpulse check example.com\n  mailpulse check example.com --ip 192.0.2.10 --selector s1 --json\n  mailpulse check example.com --resolver 127.0.0.1:53 --trust-anchor /usr/share/dns/root.key\n\nExit status 1 when an error-level finding was found (scripts can act on it)."
    )]
    Check {
        /// The domain.
        domain: String,
        /// A sending IP (repeatable): SPF is evaluated for it, its reputation checked.
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        /// A DKIM selector in use (repeatable); without, common selectors are tried.
        #[arg(long = "selector")]
        selectors: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Ask this resolver (repeatable) instead of the system's.
        #[arg(long = "resolver")]
        resolvers: Vec<std::net::SocketAddr>,
        /// DNSSEC trust anchor file (DS or DNSKEY records): validate the answers.
        #[arg(long)]
        trust_anchor: Option<PathBuf>,
        /// Fetch the MTA-STS policy over HTTPS too.
        #[arg(long)]
        fetch_policy: bool,
        /// Per-query timeout in milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Run an SPF test suite (the official YAML format, e.g. the RFC 7208 suite) against an
    /// in-memory zone built from its zonedata; the last line is `N passed, M failed`.
    #[command(
        after_help = "Examples:\n  mailpulse spf-suite agent/tests/fixtures/spf/rfc7208-tests.yml\n\nExit status 1 when a test failed."
    )]
    SpfSuite {
        /// The suite file (YAML, several documents).
        file: PathBuf,
    },
    /// The collector's alerts: firing first, with what was observed against what was
    /// expected, the evidence and the runbook (like `amtool alert`).
    #[command(
        after_help = "Examples:\n  mailpulse alerts\n  mailpulse alerts --collector http://collector.example.net:9470 --json\n  mailpulse alerts --all     # recently resolved ones too"
    )]
    Alerts {
        /// The collector's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:9470")]
        collector: String,
        /// Print the alerts as JSON (as /api/v1/alerts returns them).
        #[arg(long)]
        json: bool,
        /// Recently resolved alerts too.
        #[arg(long)]
        all: bool,
    },
    /// Remediation actions: those waiting for an approval (with the alert that asked for
    /// them), those running, the scheduled reverts, the kill switch and the latest audit entries.
    #[command(
        after_help = "Examples:\n  mailpulse actions\n  mailpulse actions --collector http://collector.example.net:9470 --json"
    )]
    Actions {
        /// The collector's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:9470")]
        collector: String,
        /// Print as JSON (as /api/v1/actions returns it).
        #[arg(long)]
        json: bool,
    },
    /// Approve a remediation action waiting for an approval (its id from `mailpulse actions`).
    #[command(
        after_help = "Example:\n  mailpulse approve 1765141200000123 --token-file /etc/mailpulse/api.token"
    )]
    Approve {
        id: u64,
        #[arg(long, default_value = "http://127.0.0.1:9470")]
        collector: String,
        /// The collector's API token ([remediation] api_token_file).
        #[arg(long, default_value = "/etc/mailpulse/api.token")]
        token_file: PathBuf,
    },
    /// Reject a remediation action waiting for an approval.
    #[command(
        after_help = "Example:\n  mailpulse reject 1765141200000123 --token-file /etc/mailpulse/api.token"
    )]
    Reject {
        id: u64,
        #[arg(long, default_value = "http://127.0.0.1:9470")]
        collector: String,
        #[arg(long, default_value = "/etc/mailpulse/api.token")]
        token_file: PathBuf,
    },
    /// Score one series offline, causally: `timestamp,value` CSV in (the Numenta Anomaly
    /// Benchmark format), `timestamp,value,anomaly_score` out, one row per input row.
    #[command(
        after_help = "Examples:\n  mailpulse detect --input realKnownCause/machine_temperature_system_failure.csv --output scored.csv\n  mailpulse detect --kind count --input bounces.csv\n\nThe score of a row uses only the rows before it and itself: the collector's volume detector\nwith its default parameters (count test and band for counts, band for levels). Scores are\ncalibrated tail probabilities on one scale for every series, in [0, 1] (0.5: about one point\nin a thousand, 0.95: one in a million), reported once per episode. Without --output the\nresult goes to standard output."
    )]
    Detect {
        /// The input CSV (`timestamp,value` with a header).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the scored CSV (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        /// What the values are: counts get the collector's count test as well as the band.
        #[arg(long, value_enum, default_value = "auto")]
        kind: DetectKind,
    },
    /// Evaluate detection end to end: simulated fleets (scenarios) through the agent pipeline
    /// and the collector's detectors; prints recall and median delay per incident kind and
    /// false alerts per host-week, and fails when the file's targets are missed.
    #[command(
        after_help = "Examples:\n  mailpulse eval\n  mailpulse eval --config scenarios/eval/full.toml --alerts /tmp/alerts.jsonl\n\nThe format of evaluation files is described in scenarios/README.md. --alerts writes every\nlabel (detected or missed, with its delay) and every false alert as JSON Lines."
    )]
    Eval {
        /// The evaluation file (TOML).
        #[arg(long, default_value = "scenarios/eval/ci.toml")]
        config: PathBuf,
        /// Where to write the labels and false alerts (JSON Lines).
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Where to write every anomaly (JSON Lines).
        #[arg(long)]
        anomalies: Option<PathBuf>,
        /// Trace the bands of the view series this selector matches, e.g.
        /// 'deferral_ratio{domain="outlook.com"}' (written to --trace-out).
        #[arg(long)]
        trace: Option<String>,
        /// Where to write the traced bands (CSV; default trace.csv).
        #[arg(long)]
        trace_out: Option<PathBuf>,
    },
    /// A small fleet's day, fast-forwarded, through an embedded collector: incidents, the alerts
    /// they raise with their evidence, the playbooks' dry runs, the web console; no
    /// configuration, no server.
    #[command(
        after_help = "Examples:\n  mailpulse demo\n  mailpulse demo --hosts 6 --seed 3 --speed 3000 --linger 600\n\nThe console and /metrics are served during the run (the URL is printed) and --linger seconds\nafter it. The day of the incidents is yesterday (UTC); the day before it teaches the detectors."
    )]
    Demo {
        /// Seed of the simulated fleet.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Mail hosts (3 to 12).
        #[arg(long, default_value_t = 4)]
        hosts: usize,
        /// Simulated seconds per second during the day of the incidents.
        #[arg(long, default_value_t = 1800.0)]
        speed: f64,
        /// Seconds the console stays up after the day.
        #[arg(long, default_value_t = 30)]
        linger: u64,
        /// Address of the console and /metrics (if taken, any free port).
        #[arg(long, default_value = "127.0.0.1:9470")]
        listen: std::net::SocketAddr,
        /// Exit with status 1 when fewer incidents were detected (CI).
        #[arg(long, default_value_t = 0)]
        min_detected: usize,
    },
    /// Simulate a mail fleet from a scenario file: one Postfix log per host and the labels of the
    /// injected incidents.
    #[command(
        after_help = "Examples:\n  mailpulse simulate --scenario scenarios/small.toml --out-dir /tmp/sim\n\nThe same scenario (and seed) always gives the same bytes."
    )]
    Simulate {
        /// The scenario (TOML).
        #[arg(long)]
        scenario: PathBuf,
        /// Output directory (default: named after the scenario).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Timestamp style of the logs (default: the scenario's).
        #[arg(long, value_enum)]
        format: Option<SynthStyle>,
    },
    /// Run the agent: follow the mail logs and stream samples to the collector.
    #[command(
        after_help = "Examples:\n  mailpulse agent --config /etc/mailpulse/agent.toml\n\nSee packaging/agent.toml for every setting. Stop with SIGTERM: batches not yet acknowledged\nstay in the on-disk outbox and are resent on the next start."
    )]
    Agent {
        /// Agent configuration file (TOML).
        #[arg(long, default_value = "/etc/mailpulse/agent.toml")]
        config: PathBuf,
    },
    /// Run the collector: ingest agent streams, store windows, serve /metrics and the API.
    #[command(
        after_help = "Examples:\n  mailpulse collector --config /etc/mailpulse/collector.toml\n\nSee packaging/collector.toml for every setting. gRPC for agents (default 127.0.0.1:4770;\nanother address needs [tls] or allow_plaintext_grpc = true), HTTP for /metrics, /healthz\nand /api/v1/* (default 127.0.0.1:9470)."
    )]
    Collector {
        /// Collector configuration file (TOML).
        #[arg(long, default_value = "/etc/mailpulse/collector.toml")]
        config: PathBuf,
    },
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a realistic, deterministic (seeded) Postfix log to standard output.
    #[command(
        after_help = "Examples:\n  mailpulse synth-log --messages 5000 > mail.log\n  mailpulse synth-log --seed 7 --style maillog --messages 100000 | gzip > mail.log.gz\n\nThe same seed and options always give the same bytes. The log mixes postscreen, smtpd,\nsubmission, cleanup, qmgr, smtp/lmtp/virtual deliveries, deferrals with retries, bounces,\nexpiries, rejects, SASL failures and TLS lines, with both queue id styles."
    )]
    SynthLog {
        /// Seed of every random choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Messages accepted into the queue (notifications and rejected sessions come on top).
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        /// Timestamp style.
        #[arg(long, value_enum, default_value = "bsd")]
        style: SynthStyle,
        /// Unix time of the first line (default: 2024-10-26 00:00 UTC).
        #[arg(long, default_value_t = 1_729_900_800)]
        start_unix_secs: i64,
    },
    /// Read whole log files and print a delivery summary (counts, domains, relays, delays, rejects).
    #[command(
        after_help = "Examples:\n  mailpulse parse /var/log/mail.log\n  mailpulse parse --summary json mail.log.2.gz mail.log.1 mail.log\n  journalctl -u postfix -o json | mailpulse parse --format journal-json -\n\nFiles are read in the order given, as one stream (give rotated files oldest first).\n`-` reads standard input; files ending in .gz are decompressed."
    )]
    Parse {
        /// Log line format; `auto` detects it per file.
        #[arg(long, value_enum, default_value = "auto")]
        format: Format,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "text")]
        summary: SummaryFormat,
        /// UTC offset, in seconds, of timestamps that carry none (BSD syslog, maillog_file).
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        utc_offset_secs: i32,
        /// Log files (`-` for standard input, `.gz` accepted).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print one JSON object per message event (JSON Lines); optionally follow and checkpoint.
    #[command(
        after_help = "Examples:\n  mailpulse events /var/log/mail.log\n  mailpulse events --follow --state-dir /var/lib/mailpulse /var/log/mail.log\n\nWith --state-dir, the read position of every file is checkpointed (after stdout is flushed)\nand a restart resumes from it: no line is lost, even after kill -9. Events of lines read after\nthe last checkpoint may be printed again after a crash."
    )]
    Events {
        /// Keep reading as the files grow and rotate.
        #[arg(long)]
        follow: bool,
        /// Directory for the checkpoint state file; resume from it.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Least time between two checkpoint saves while lines keep arriving (each save is
        /// fsynced; idle moments save at once).
        #[arg(long, default_value_t = 0)]
        checkpoint_interval_ms: u64,
        /// Log line format; `auto` detects it per file.
        #[arg(long, value_enum, default_value = "auto")]
        format: Format,
        /// UTC offset, in seconds, of timestamps that carry none (BSD syslog, maillog_file).
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        utc_offset_secs: i32,
        /// Log files (`-` for standard input without --follow/--state-dir, `.gz` accepted).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A closed stdout (`mailpulse events … | head`) is how pipelines end, not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailpulse: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Parse {
            format,
            summary,
            utc_offset_secs,
            files,
        } => parse(format.into(), summary, utc_offset_secs, &files),
        Command::Agent { config } => cli_agent::run(&config),
        Command::Demo {
            seed,
            hosts,
            speed,
            linger,
            listen,
            min_detected,
        } => cli_demo::run(cli_demo::DemoArgs {
            seed,
            hosts,
            speed,
            linger,
            listen,
            min_detected,
        }),
        Command::Alerts {
            collector,
            json,
            all,
        } => cli_alerts::run(&collector, json, all),
        Command::Actions { collector, json } => cli_actions::list(&collector, json),
        Command::Approve {
            id,
            collector,
            token_file,
        } => cli_actions::decide(&collector, &token_file, id, true),
        Command::Reject {
            id,
            collector,
            token_file,
        } => cli_actions::decide(&collector, &token_file, id, false),
        Command::Detect {
            input,
            output,
            kind,
        } => cli_detect::run(&input, output.as_deref(), kind.into()),
        Command::Eval {
            config,
            alerts,
            anomalies,
            trace,
            trace_out,
        } => cli_eval::run(&cli_eval::EvalArgs {
            config,
            alerts,
            anomalies,
            trace_out: trace_out.or_else(|| trace.is_some().then(|| PathBuf::from("trace.csv"))),
            trace,
        }),
        Command::Simulate {
            scenario,
            out_dir,
            format,
        } => cli_simulate::run(cli_simulate::SimulateArgs {
            scenario,
            out_dir,
            format: format.map(Into::into),
        }),
        Command::SpfSuite { file } => {
            if !cli_spf::run(&file)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Check {
            domain,
            ips,
            selectors,
            json,
            resolvers,
            trust_anchor,
            fetch_policy,
            timeout_ms,
        } => {
            let clean = cli_check::run(cli_check::CheckArgs {
                domain,
                ips,
                selectors,
                json,
                resolvers,
                trust_anchor,
                fetch_policy,
                timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
            })?;
            if !clean {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Collector { config } => cli_collector::run(&config),
        Command::Config(ConfigCommand::Check { file }) => config_check(&file),
        Command::SynthLog {
            seed,
            messages,
            style,
            start_unix_secs,
        } => synth_log(seed, messages, style, start_unix_secs),
        Command::Events {
            follow,
            state_dir,
            checkpoint_interval_ms,
            format,
            utc_offset_secs,
            files,
        } => cli_events::run(cli_events::EventsArgs {
            follow,
            state_dir,
            format: format.into(),
            utc_offset_secs,
            checkpoint_interval: std::time::Duration::from_millis(checkpoint_interval_ms),
            files,
        }),
    }
}

fn parse(
    format: LogFormat,
    summary: SummaryFormat,
    utc_offset_secs: i32,
    files: &[PathBuf],
) -> Result<()> {
    let mut processor = LineProcessor::new(format, input::now());
    processor.set_default_offset_secs(utc_offset_secs);
    // A report of whole files names every host and instance in them.
    processor.set_origin_limits(None);
    let mut builder = SummaryBuilder::new();
    let mut events = Vec::new();
    for path in files {
        input::for_each_line(path, &mut processor, |processor, line| {
            processor.process(line, &mut events);
            for ev in events.drain(..) {
                builder.add(&ev);
            }
        })
        .with_context(|| format!("reading {}", path.display()))?;
    }
    let s = builder.finish(processor.stats());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match summary {
        SummaryFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &s)?;
            writeln!(out)?;
        }
        SummaryFormat::Text => out.write_all(s.to_text().as_bytes())?,
    }
    out.flush()?;
    Ok(())
}

fn synth_log(seed: u64, messages: u64, style: SynthStyle, start_unix_secs: i64) -> Result<()> {
    use mailpulse_sim::synth::{SynthConfig, SynthLog};
    let config = SynthConfig {
        seed,
        messages,
        start_unix_secs,
        style: style.into(),
        ..SynthConfig::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    for line in SynthLog::new(config) {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn config_check(file: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let table: toml::Table = mailpulse_agent::config::parse_toml(file, &text)?;
    if table.contains_key("agent") {
        let config = mailpulse_agent::config::AgentConfig::load(file)?;
        cli_agent::options(&config)?;
        println!("{}: valid agent configuration", file.display());
        Ok(())
    } else {
        cli_collector::load(file)?;
        println!("{}: valid collector configuration", file.display());
        Ok(())
    }
}
