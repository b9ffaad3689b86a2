//! The fast-forward feed: simulated lines through the agent's pipeline, per window.
//!
//! Every host gets its own [`LineProcessor`] (traffic signals on) and [`Aggregator`], as the agent
//! on that host would. Time advances window by window over the scenario's period; for each
//! window, each host's lines up to the window's end are processed, the aggregator is cut, the
//! host's probe gauges and queue watcher samples ([`super::queue`]) at the window's end are
//! appended, then the feedback-loop complaints read in the window (module `complaints`), and
//! the samples of the DNS and reputation rounds that started in the window ([`super::dns`]),
//! whose answers come as [`pb::Probe`]s. So the sink sees windows in time order and, within a
//! window, hosts in file order: a consumer can compare hosts per window without buffering.

use mailpulse_proto::v1 as pb;

use super::complaints::HostComplaints;
use super::dns::HostDns;
use super::queue::QueueSamples;
use super::{HostSimulation, Scenario, SimLine};
use crate::synth::TimestampStyle;
use mailpulse_agent::aggregate::{Aggregator, AggregatorConfig, window_start};
use mailpulse_agent::parse::{LogFormat, Timestamp};
use mailpulse_agent::pipeline::LineProcessor;
use mailpulse_agent::track::MessageEvent;
use mailpulse_agent::traffic::{TrafficConfig, TrafficSignal};

/// What [`simulate_feed`] (or [`simulate_samples`]) went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedSummary {
    pub hosts: Vec<HostFeedSummary>,
}

/// One host's share of a [`FeedSummary`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFeedSummary {
    pub host: String,
    /// Lines generated and processed.
    pub lines: u64,
    /// Lines the pipeline could not parse (0 for a correct generator).
    pub unparsed: u64,
    /// Messages the generator accepted.
    pub messages_received: u64,
    /// Windows emitted.
    pub windows: u64,
    /// Samples emitted (gauges, queue, complaint and DNS samples included).
    pub samples: u64,
    /// DNS probes emitted.
    pub probes: u64,
}

/// Runs every host of `scenario` through the pipeline and calls `sink(host, samples)` once per
/// window of `window_secs` (at least 1) and host. `samples` are what the aggregator cut at the
/// window's end (almost always of that window only; a late event would add a slice of an
/// earlier one) followed by the probe gauges of [`HostSimulation::gauges_at`] and the queue
/// watcher's samples of [`HostSimulation::queues_at`] at the window's last second, the
/// `complaints` counted from the feedback-loop reports that arrived in the window, and the
/// samples of the DNS rounds that started in the window; the DNS probes themselves are left out
/// ([`simulate_feed`] has them).
pub fn simulate_samples(
    scenario: &Scenario,
    window_secs: u32,
    mut sink: impl FnMut(&str, Vec<pb::Sample>),
) -> FeedSummary {
    run_feed(scenario, window_secs, false, |host, samples, _| {
        sink(host, samples);
    })
}

/// [`simulate_samples`] with the DNS probes: calls `sink(host, samples, probes)` once per window
/// and host, `probes` being the answers of the DNS rounds that started in the window (what the
/// agent ships in `Batch.probes`, empty in most windows), in time order.
pub fn simulate_feed(
    scenario: &Scenario,
    window_secs: u32,
    sink: impl FnMut(&str, Vec<pb::Sample>, Vec<pb::Probe>),
) -> FeedSummary {
    run_feed(scenario, window_secs, true, sink)
}

/// Both feeds; the probes are built `with_probes` only (empty otherwise).
fn run_feed(
    scenario: &Scenario,
    window_secs: u32,
    with_probes: bool,
    mut sink: impl FnMut(&str, Vec<pb::Sample>, Vec<pb::Probe>),
) -> FeedSummary {
    let window_secs = window_secs.max(1);
    let step = i64::from(window_secs);
    let end = scenario.end_unix_secs();
    let mut feeds: Vec<HostFeed> = scenario
        .host_simulations()
        .into_iter()
        .enumerate()
        .filter_map(|(i, sim)| {
            let dns = scenario.host_dns(i)?;
            let complaints = scenario.host_complaints(i)?;
            Some(HostFeed::new(sim, dns, complaints, scenario, window_secs))
        })
        .collect();
    let mut window = window_start(scenario.start_unix_secs(), window_secs);
    while window < end {
        let boundary = window + step;
        for feed in &mut feeds {
            let (samples, probes) = feed.advance(boundary, window, end, with_probes);
            feed.summary.windows += 1;
            feed.summary.samples += samples.len() as u64;
            feed.summary.probes += probes.len() as u64;
            sink(feed.sim.host(), samples, probes);
        }
        window = boundary;
    }
    FeedSummary {
        hosts: feeds.into_iter().map(HostFeed::finish).collect(),
    }
}

/// One host's generator and pipeline.
struct HostFeed {
    sim: HostSimulation,
    dns: HostDns,
    queue: QueueSamples,
    complaints: HostComplaints,
    processor: LineProcessor,
    aggregator: Aggregator,
    /// The first line past the last boundary, held for the next window.
    pending: Option<SimLine>,
    events: Vec<MessageEvent>,
    signals: Vec<TrafficSignal>,
    window_secs: u32,
    summary: HostFeedSummary,
}

impl HostFeed {
    fn new(
        mut sim: HostSimulation,
        dns: HostDns,
        complaints: HostComplaints,
        scenario: &Scenario,
        window_secs: u32,
    ) -> Self {
        sim.record_deliveries();
        let format = match scenario.timestamp_style() {
            TimestampStyle::Bsd => LogFormat::Bsd,
            TimestampStyle::Rfc3339 => LogFormat::Rfc3339,
            TimestampStyle::Maillog => LogFormat::Maillog,
        };
        // Year-less timestamps resolve to the year that puts them just before the reference.
        let reference = Timestamp {
            unix_secs: scenario.end_unix_secs(),
            nanos: 0,
        };
        let mut processor = LineProcessor::new(format, reference);
        processor.enable_traffic(&TrafficConfig::default());
        let aggregator = Aggregator::new(AggregatorConfig {
            window_secs,
            ..AggregatorConfig::default()
        });
        let summary = HostFeedSummary {
            host: sim.host().to_owned(),
            ..HostFeedSummary::default()
        };
        Self {
            sim,
            dns,
            queue: QueueSamples::default(),
            complaints,
            processor,
            aggregator,
            pending: None,
            events: Vec::new(),
            signals: Vec::new(),
            window_secs,
            summary,
        }
    }

    /// Processes the lines before `boundary` (Unix seconds) and returns the window's samples and
    /// DNS probes.
    fn advance(
        &mut self,
        boundary: i64,
        window: i64,
        end: i64,
        with_probes: bool,
    ) -> (Vec<pb::Sample>, Vec<pb::Probe>) {
        let boundary_us = boundary.saturating_mul(1_000_000);
        loop {
            let line = match self.pending.take() {
                Some(line) => line,
                None => match self.sim.next() {
                    Some(line) => line,
                    None => break,
                },
            };
            if line.at_unix_micros >= boundary_us {
                self.pending = Some(line);
                break;
            }
            self.summary.lines += 1;
            self.processor
                .process_with_signals(&line.text, &mut self.events, &mut self.signals);
            for signal in self.signals.drain(..) {
                self.aggregator.observe_signal(&signal);
            }
            for event in self.events.drain(..) {
                self.aggregator.observe(&event);
            }
        }
        let mut samples = self.aggregator.cut();
        // Taken at the window's last second, so the window shows the state inside it.
        let at = boundary.min(end) - 1;
        let gauges = self.sim.gauges_at(at);
        samples.extend(gauges.to_samples(self.sim.host(), window, self.window_secs));
        let queues = self.sim.queues_at(at);
        self.queue
            .poll(&queues, self.sim.host(), self.window_secs, &mut samples);
        samples.extend(
            self.complaints
                .poll(&mut self.sim, boundary.min(end), self.window_secs),
        );
        let dns = self
            .dns
            .rounds(window, boundary.min(end), self.window_secs, with_probes);
        samples.extend(dns.samples);
        (samples, dns.probes)
    }

    fn finish(self) -> HostFeedSummary {
        HostFeedSummary {
            unparsed: self.processor.stats().unparsed,
            messages_received: self.sim.truth().received,
            ..self.summary
        }
    }
}
