//! Deterministic simulator of a Postfix fleet over days or weeks, with labelled incidents.
//!
//! Why: detectors are judged by recall, false alerts and delay on incidents whose time and keys
//! are known. Real fleets rarely give both realistic traffic and labels; the simulator gives
//! both, reproducibly.
//!
//! What: a [`Scenario`] (TOML, see [`scenario`]) names hosts, a period, a seed, base rates and
//! incidents. Each host runs one [`crate::synth`] generator (the same session and delivery
//! writers as `mailpulse synth-log`) steered by hooks: the arrival rate follows a daily and
//! weekly seasonal model with trend and noise (module `seasonal`), and incidents add sessions or decide
//! delivery attempts while active ([`incident`]). Outputs:
//!
//! - [`HostSimulation`]: one host's Postfix log as an iterator of [`SimLine`]s, in time order,
//!   ending at the scenario's end, plus the probe gauges (queue sizes, spool filesystem) at any
//!   moment of the stream ([`gauges`]) and the queues as the agent's `postqueue -j` snapshot
//!   summarises them ([`queue`]);
//! - [`Scenario::labels`] and [`write_labels`]: the labels file ([`labels`]);
//! - [`simulate_samples`]: the fast-forward feed, every host's lines through [`LineProcessor`]
//!   and [`Aggregator`] (traffic signals on), cut per window like the agent ships them, plus the
//!   probe gauges of the window, the agent's queue watcher samples ([`queue`]), the
//!   feedback-loop complaints read in the window (module `complaints`) and the samples of the
//!   agent's DNS and reputation rounds in it ([`dns`]); [`simulate_feed`] also hands over those
//!   rounds' answers ([`pb::Probe`]), which the collector versions into its DNS change history.
//!
//! Invariants:
//! - Deterministic: the same scenario (seed included) gives byte-identical logs, labels and
//!   samples on every run and platform (own PRNG, no hash-order dependence, no clock reads).
//! - Bounded memory: lines are generated lazily; what is held is the generator's in-flight
//!   work (messages in the queue, sessions under way) and the aggregator's open windows, which
//!   depend on the traffic rate and the queue lifetime, not on the length of the period.
//! - Spool filling has no log lines (the log says nothing about disks): it exists only in the
//!   gauges. A DNS change has none either: it exists only in the DNS rounds. Complaints are
//!   drawn from the log's deliveries with a random stream of their own: they add no lines.
//!
//! [`pb::Probe`]: mailpulse_proto::v1::Probe
//!
//! [`LineProcessor`]: mailpulse_agent::pipeline::LineProcessor
//! [`Aggregator`]: mailpulse_agent::aggregate::Aggregator

mod complaints;
pub mod dns;
mod feed;
pub mod gauges;
pub mod incident;
pub mod labels;
pub mod queue;
pub mod scenario;
mod seasonal;
mod write;

use std::path::PathBuf;

pub use feed::{FeedSummary, HostFeedSummary, simulate_feed, simulate_samples};
pub use gauges::{HostGauges, QueueGauge, SPOOL_PATH};
pub use incident::{AffectedKeys, IncidentKind};
pub use labels::{IncidentLabel, LabelsError, parse_labels, write_labels};
pub use queue::{HostQueues, InstanceQueues, QueueSamples};
pub use scenario::Scenario;
pub use write::{FleetOutput, HostReport, WriteError, dir_name, summary, write_fleet};

use mailpulse_agent::config::ConfigError;

use crate::synth::hooks::{Delivery, HostSetup};
use crate::synth::rng::Rng;
use crate::synth::{SynthConfig, SynthLog, SynthTruth};
use gauges::SpoolModel;
use incident::{Effect, HostHooks};
use seasonal::{RateModel, Seasonality};

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Reading the file failed, or its TOML is malformed or has unknown keys (with line and
    /// column).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A value is out of range or inconsistent.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// One generated log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLine {
    /// Its timestamp (Unix microseconds).
    pub at_unix_micros: i64,
    /// The line, without newline.
    pub text: String,
}

/// One host's simulated log, lazily generated; see the module documentation.
#[derive(Debug)]
pub struct HostSimulation {
    name: String,
    log: SynthLog,
    end_us: i64,
    finished: bool,
    spool: SpoolModel,
}

impl Scenario {
    /// The simulation of the host at `index` (file order), or `None` past the last host.
    pub fn host_simulation(&self, index: usize) -> Option<HostSimulation> {
        let host = self.hosts.get(index)?;
        let t = &host.traffic;
        let host_seed =
            Rng::new(self.seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64();
        let config = SynthConfig {
            seed: host_seed,
            start_unix_secs: self.start_unix_secs(),
            messages: u64::MAX,
            host: host.name.clone(),
            local_domains: host.local_domains.clone(),
            style: self.style,
            messages_per_sec: t.messages_per_day / 86_400.0,
            diurnal_amplitude: 0.0,
            submission_share: t.submission_share,
            outbound_instance_share: t.outbound_instance_share,
            pickup_share: t.pickup_share,
            deferral_rate: t.deferral_rate,
            bounce_rate: t.bounce_rate,
            expire_ratio: t.expire_ratio,
            reject_rate: t.reject_rate,
            postscreen_drop_rate: t.postscreen_drop_rate,
            auth_failure_rate: t.auth_failure_rate,
            max_queue_lifetime_secs: (t.max_queue_lifetime_hours * 3600.0) as i64,
            ..SynthConfig::default()
        };
        let rate = RateModel::new(
            Seasonality {
                messages_per_day: t.messages_per_day,
                night_factor: t.night_factor,
                weekend_factor: t.weekend_factor,
                utc_offset_secs: (t.utc_offset_hours * 3600.0) as i64,
                trend_per_week: t.trend_per_week,
                noise: t.noise,
            },
            self.start_us,
            host_seed ^ 0x5EA5_0117,
        );
        let incidents: Vec<_> = self
            .incidents
            .iter()
            .filter(|i| i.hosts.contains(&index))
            .cloned()
            .collect();
        let mut extra_users = Vec::new();
        let mut fills = Vec::new();
        for incident in &incidents {
            match &incident.effect {
                Effect::CompromisedAccount { sasl_user, .. }
                    if !extra_users.contains(sasl_user) =>
                {
                    extra_users.push(sasl_user.clone());
                }
                Effect::SpoolFilling {
                    fill_bytes_per_hour,
                } => fills.push((
                    incident.start_us,
                    incident.end_us,
                    fill_bytes_per_hour / 3600.0,
                )),
                _ => {}
            }
        }
        let hooks = HostHooks::new(
            rate,
            incidents,
            host_seed,
            host.local_domains[0].clone(),
            host.main_ip,
        );
        let setup = HostSetup {
            main_ip: host.main_ip,
            out_ip: host.out_ip,
            extra_users,
            hooks: Box::new(hooks),
        };
        Some(HostSimulation {
            name: host.name.clone(),
            log: SynthLog::with_setup(config, setup),
            end_us: self.end_us,
            finished: false,
            spool: SpoolModel::new(t.spool_size_bytes, t.spool_used_share, fills),
        })
    }

    /// The simulations of every host, in file order.
    pub fn host_simulations(&self) -> Vec<HostSimulation> {
        (0..self.hosts.len())
            .filter_map(|i| self.host_simulation(i))
            .collect()
    }
}

impl HostSimulation {
    /// The host's name (the syslog host of its lines).
    pub fn host(&self) -> &str {
        &self.name
    }

    /// The probe gauges with the queues as of the last line returned and the spool at
    /// `unix_secs` (meant to be at or just after that line).
    pub fn gauges_at(&self, unix_secs: i64) -> HostGauges {
        self.spool
            .gauges(unix_secs.saturating_mul(1_000_000), self.log.queue_loads())
    }

    /// The queues of both instances as of the last line returned, summarised as the agent's
    /// `postqueue -j` snapshot at `unix_secs` would summarise them ([`queue`]).
    pub fn queues_at(&self, unix_secs: i64) -> HostQueues {
        let max_domains = mailpulse_agent::queue::QueueConfig::default().max_domains;
        queue::summarise(&self.log, unix_secs, max_domains)
    }

    /// Writes what `postqueue -j` of the main instance (`instance` 0) or of `postfix-out` (1,
    /// as [`queue::INSTANCES`]; another index writes nothing) would print now: the messages
    /// [`HostSimulation::queues_at`] summarises, with their `delay_reason`s.
    pub fn write_postqueue(
        &self,
        instance: usize,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        queue::write_postqueue(&self.log, instance, out)
    }

    /// From now on, keeps the remote deliveries for [`HostSimulation::take_deliveries`].
    pub(crate) fn record_deliveries(&mut self) {
        self.log.record_deliveries();
    }

    /// Appends the remote deliveries made since the last call to `out`.
    pub(crate) fn take_deliveries(&mut self, out: &mut Vec<Delivery>) {
        self.log.take_deliveries(out);
    }

    /// What has been generated so far (`received` counts accepted messages).
    pub fn truth(&self) -> &SynthTruth {
        self.log.truth()
    }
}

impl Iterator for HostSimulation {
    type Item = SimLine;

    fn next(&mut self) -> Option<SimLine> {
        if self.finished {
            return None;
        }
        match self.log.next_timed() {
            Some((at, text)) if at < self.end_us => Some(SimLine {
                at_unix_micros: at,
                text,
            }),
            _ => {
                self.finished = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
