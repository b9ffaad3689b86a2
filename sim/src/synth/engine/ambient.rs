//! The background lines of a busy server that belong to no message: anvil's and scache's
//! periodic statistics and stand-alone warnings (TLS, milter, DNSBL and MX lookup trouble).

use super::model::{Instance, Service, Task};
use super::{Engine, STATS_INTERVAL};
use crate::synth::format::bsd_time;
use crate::synth::world;

impl Engine {
    /// Statistics continue while messages are still to come or other tasks are pending, so a
    /// run ends once its last message has left the queue.
    fn keep_ticking(&self) -> bool {
        self.arrivals_left > 0 || self.heap.len() > self.stats_tasks
    }

    /// anvil's statistics for the last interval (peak rate and count of one recent client,
    /// cache size), then the next tick.
    pub(super) fn anvil_stats(&mut self) {
        if !self.keep_ticking() {
            return;
        }
        let t = self.now;
        if !self.recent_ips.is_empty() {
            let ip = *self.rng.pick(&self.recent_ips);
            let at = bsd_time(t - self.ms(1000, 590_000));
            let rate = self.rng.range(1, 12);
            let body =
                format!("statistics: max connection rate {rate}/60s for (smtp:{ip}) at {at}");
            self.note(t, Instance::Main, Service::Anvil, body);
            let ip = *self.rng.pick(&self.recent_ips);
            let at = bsd_time(t - self.ms(1000, 590_000));
            let count = self.rng.range(1, 4);
            let body = format!("statistics: max connection count {count} for (smtp:{ip}) at {at}");
            self.note(t, Instance::Main, Service::Anvil, body);
            let at = bsd_time(t - self.ms(1000, 590_000));
            let size = self.rng.range(2, 30);
            let body = format!("statistics: max cache size {size} at {at}");
            self.note(t, Instance::Main, Service::Anvil, body);
        }
        self.stats_tasks += 1;
        self.schedule(t + STATS_INTERVAL, Task::AnvilStats);
    }

    /// scache's statistics for the last interval (lookup hit rates, peak cache sizes), then the
    /// next tick.
    pub(super) fn scache_stats(&mut self) {
        if !self.keep_ticking() {
            return;
        }
        let t = self.now;
        let start = bsd_time(t - STATS_INTERVAL);
        self.note(
            t,
            Instance::Main,
            Service::Scache,
            format!("statistics: start interval {start}"),
        );
        let (hits, miss) = (self.rng.range(0, 400), self.rng.range(20, 900));
        let body = format!(
            "statistics: domain lookup hits={hits} miss={miss} success={}%",
            hits * 100 / (hits + miss)
        );
        self.note(t, Instance::Main, Service::Scache, body);
        let (hits, miss) = (self.rng.range(0, 50), self.rng.range(20, 900));
        let body = format!(
            "statistics: address lookup hits={hits} miss={miss} success={}%",
            hits * 100 / (hits + miss)
        );
        self.note(t, Instance::Main, Service::Scache, body);
        let body = format!(
            "statistics: max simultaneous domains={} addresses={} connection={}",
            self.rng.range(1, 8),
            self.rng.range(1, 10),
            self.rng.range(1, 12)
        );
        self.note(t, Instance::Main, Service::Scache, body);
        self.stats_tasks += 1;
        self.schedule(t + STATS_INTERVAL, Task::ScacheStats);
    }

    /// One `warning:` line of a kind busy servers log now and then, unrelated to any message.
    pub(super) fn standalone_warning(&mut self, t: i64) {
        let (instance, service, body) = match self.rng.below(5) {
            0 => (
                Instance::Main,
                Service::Smtp,
                "warning: TLS library problem: error:0A000126:SSL routines::unexpected eof while reading:../ssl/record/rec_layer_s3.c:322:".to_string(),
            ),
            1 => (
                Instance::Main,
                Service::Cleanup,
                "warning: milter unix:/run/opendkim/opendkim.sock: can't read SMFIC_OPTNEG reply packet header: Connection reset by peer".to_string(),
            ),
            2 => (
                Instance::Main,
                Service::Postscreen,
                "warning: getpeername: Transport endpoint is not connected -- dropping this connection".to_string(),
            ),
            3 => {
                let [a, b, c, d] = world::public_ip(&mut self.rng).octets();
                let name = format!("{d}.{c}.{b}.{a}.zen.spamhaus.org");
                (
                    Instance::Main,
                    Service::Dnsblog,
                    format!(
                        "warning: dnsblog_query: lookup error for DNS query {name}: Host or domain name not found. Name service error for name={name} type=A: Host not found, try again"
                    ),
                )
            }
            _ => {
                let d = self.world.recipient_domain(&mut self.rng);
                (
                    Instance::Out,
                    Service::Smtp,
                    format!(
                        "warning: no MX host for {} has a valid address record",
                        self.world.domains[d].name
                    ),
                )
            }
        };
        self.truth.warnings += 1;
        self.note(t, instance, service, body);
    }
}
