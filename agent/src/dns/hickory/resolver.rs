//! [`HickoryResolver`]: [`Resolve`] over hickory-resolver, one per set of name servers, with a
//! bound on its lookups in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::proto::rr as hrr;
use tokio::sync::Semaphore;

use super::convert::{answer_from_error, answer_from_lookup, query_name};
use super::dnssec::Dnssec;
use super::options::{ResolverOptions, ResolverSetupError, build_engine, hickory_options};
use crate::dns::{Answer, LookupError, RecordType, Resolve};

/// A resolver backed by hickory-resolver; see the module documentation for the mapping.
pub struct HickoryResolver {
    /// Asks without validation: every name when DNSSEC is off, names outside the anchored
    /// zones when it is on.
    plain: TokioResolver,
    /// Validation state; `None` when DNSSEC is off.
    dnssec: Option<Dnssec>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// The servers asked.
    servers: Vec<SocketAddr>,
}

impl HickoryResolver {
    /// The system resolver: name servers from `/etc/resolv.conf`, asked with `options` (the
    /// file's own timeout and attempts are replaced by `options`).
    pub fn system(options: ResolverOptions) -> Result<Self, ResolverSetupError> {
        let (config, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| ResolverSetupError::SystemConfig(e.to_string()))?;
        let servers: Vec<SocketAddr> = config
            .name_servers()
            .iter()
            .map(|ns| {
                let port = ns.connections.first().map_or(53, |c| c.port);
                SocketAddr::new(ns.ip, port)
            })
            .collect();
        let config = ResolverConfig::from_name_servers(config.name_servers().to_vec());
        Self::build(config, servers, options)
    }

    /// Asks `servers` (UDP first, TCP on truncation; any port) with `options`.
    pub fn with_nameservers(
        servers: &[SocketAddr],
        options: ResolverOptions,
    ) -> Result<Self, ResolverSetupError> {
        let name_servers = servers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut ns.connections {
                    connection.port = addr.port();
                }
                ns
            })
            .collect();
        Self::build(
            ResolverConfig::from_name_servers(name_servers),
            servers.to_vec(),
            options,
        )
    }

    /// Asks one authoritative server directly: no recursion, no cache, one attempt of
    /// `timeout`. A name outside the server's zones answers `Refused`.
    pub fn authoritative(addr: SocketAddr, timeout: Duration) -> Result<Self, ResolverSetupError> {
        Self::with_nameservers(&[addr], ResolverOptions::authoritative(timeout))
    }

    /// The servers this resolver asks.
    pub fn nameservers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Whether answers are validated with DNSSEC.
    pub fn is_validating(&self) -> bool {
        self.dnssec.is_some()
    }

    /// The configured limit of lookups in flight.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Lookups that could start now without waiting for a permit.
    pub fn available_permits(&self) -> usize {
        self.in_flight.available_permits()
    }

    fn build(
        config: ResolverConfig,
        servers: Vec<SocketAddr>,
        options: ResolverOptions,
    ) -> Result<Self, ResolverSetupError> {
        if config.name_servers().is_empty() {
            return Err(ResolverSetupError::NoNameServers);
        }
        if options.attempts == 0 {
            return Err(ResolverSetupError::Option("attempts must be at least 1"));
        }
        if options.max_in_flight == 0 {
            return Err(ResolverSetupError::Option(
                "max_in_flight must be at least 1",
            ));
        }
        if options.timeout.is_zero() {
            return Err(ResolverSetupError::Option("timeout must be positive"));
        }
        let opts = hickory_options(&options);
        let plain = build_engine(config.clone(), opts.clone(), None)?;
        let dnssec = match options.dnssec {
            Some(anchor) if anchor.is_empty() => {
                return Err(ResolverSetupError::Option(
                    "the DNSSEC trust anchor is empty",
                ));
            }
            Some(anchor) => Some(Dnssec::new(anchor, config, opts)),
            None => None,
        };
        Ok(Self {
            plain,
            dnssec,
            in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
            max_in_flight: options.max_in_flight,
            servers,
        })
    }
}

impl Resolve for HickoryResolver {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Answer, LookupError> {
        let query_name = query_name(name)?;
        // The semaphore is never closed, so acquiring only fails if that invariant breaks.
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| LookupError::Transport("resolver is shut down".into()))?;
        let (engine, validating) = match &self.dnssec {
            Some(dnssec) if dnssec.covers(&query_name) => (dnssec.engine().await?, true),
            _ => (&self.plain, false),
        };
        let result = engine
            .lookup(query_name, hrr::RecordType::from(rtype.code()))
            .await;
        match result {
            Ok(lookup) => Ok(answer_from_lookup(&lookup, rtype, validating)),
            Err(error) => answer_from_error(error, validating),
        }
    }
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryResolver")
            .field("servers", &self.servers)
            .field("validating", &self.is_validating())
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Instant;

    use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_resolver::proto::rr::Name;
    use hickory_resolver::proto::rr::rdata::{A, CNAME};

    use super::*;
    use crate::dns::hickory::anchor::TrustAnchor;
    use crate::dns::hickory::anchor::tests::TEST_DNSKEY;
    use crate::dns::{RData, Rcode, Record};

    /// A UDP DNS server on loopback that answers each query with `respond` (or not at all when
    /// it returns `None`), for at most `max_queries` queries.
    fn fake_server(
        max_queries: usize,
        respond: impl Fn(&Message) -> Option<Message> + Send + 'static,
    ) -> SocketAddr {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            for _ in 0..max_queries {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                if let Some(response) = respond(&query)
                    && let Ok(bytes) = response.to_vec()
                {
                    let _ = socket.send_to(&bytes, peer);
                }
            }
        });
        addr
    }

    fn reply(query: &Message, rcode: ResponseCode) -> Message {
        let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        response.metadata.response_code = rcode;
        response.metadata.authoritative = true;
        response.add_queries(query.queries.iter().cloned());
        response
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn error_rcodes_are_answers_not_errors() {
        let addr = fake_server(8, |q| {
            let name = q.queries.first()?.name().to_ascii();
            let rcode = match name.as_str() {
                "servfail.test." => ResponseCode::ServFail,
                "refused.test." => ResponseCode::Refused,
                "nx.test." => ResponseCode::NXDomain,
                _ => ResponseCode::NoError,
            };
            Some(reply(q, rcode))
        });
        let resolver =
            HickoryResolver::authoritative(addr, Duration::from_secs(2)).expect("resolver");
        runtime().block_on(async {
            for (name, rcode) in [
                ("servfail.test", Rcode::ServFail),
                ("refused.test", Rcode::Refused),
                ("nx.test", Rcode::NxDomain),
                ("nodata.test", Rcode::NoError),
            ] {
                let answer = resolver.lookup(name, RecordType::A).await;
                assert_eq!(answer, Ok(Answer::empty(rcode)), "{name}");
            }
        });
    }

    #[test]
    fn cname_chain_and_ttls_come_through() {
        let addr = fake_server(4, |q| {
            let mut r = reply(q, ResponseCode::NoError);
            let alias = Name::from_ascii("Alias.test.").ok()?;
            let target = Name::from_ascii("target.test.").ok()?;
            r.add_answer(hrr::Record::from_rdata(
                alias,
                300,
                hrr::RData::CNAME(CNAME(target.clone())),
            ));
            r.add_answer(hrr::Record::from_rdata(
                target,
                42,
                hrr::RData::A(A::new(192, 0, 2, 7)),
            ));
            Some(r)
        });
        let resolver =
            HickoryResolver::authoritative(addr, Duration::from_secs(2)).expect("resolver");
        let answer = runtime()
            .block_on(resolver.lookup("alias.test", RecordType::A))
            .expect("answer");
        assert_eq!(
            answer.records,
            vec![
                Record {
                    name: "alias.test".into(),
                    ttl: 300,
                    data: RData::Cname("target.test".into()),
                },
                Record {
                    name: "target.test".into(),
                    ttl: 42,
                    data: RData::A(Ipv4Addr::new(192, 0, 2, 7)),
                },
            ]
        );
        assert!(!answer.authenticated);
    }

    #[test]
    fn silence_is_a_timeout_within_the_configured_time() {
        let addr = fake_server(4, |_| None);
        let resolver = HickoryResolver::with_nameservers(
            &[addr],
            ResolverOptions::authoritative(Duration::from_millis(300)),
        )
        .expect("resolver");
        let started = Instant::now();
        let result = runtime().block_on(resolver.lookup("quiet.test", RecordType::A));
        assert_eq!(result, Err(LookupError::Timeout));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "expected the timeout after about 300 ms, took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn validation_covers_the_anchored_zones_only() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
        let island = HickoryResolver::with_nameservers(
            &[addr],
            ResolverOptions::default().dnssec(TrustAnchor::parse(TEST_DNSKEY).unwrap()),
        )
        .unwrap();
        let dnssec = island.dnssec.as_ref().expect("validating");
        assert!(dnssec.covers(&query_name("signed.test").unwrap()));
        assert!(dnssec.covers(&query_name("WWW.Signed.Test").unwrap()));
        assert!(!dnssec.covers(&query_name("unsigned.test").unwrap()));
        assert!(!dnssec.covers(&query_name("notsigned.test").unwrap()));
        let root = HickoryResolver::with_nameservers(
            &[addr],
            ResolverOptions::default().dnssec(TrustAnchor::iana_root()),
        )
        .unwrap();
        let dnssec = root.dnssec.as_ref().expect("validating");
        assert!(dnssec.covers(&query_name("example.com").unwrap()));
        assert!(matches!(
            HickoryResolver::with_nameservers(
                &[addr],
                ResolverOptions::default().dnssec(TrustAnchor::default())
            ),
            Err(ResolverSetupError::Option(_))
        ));
    }

    #[test]
    fn the_system_resolver_uses_resolv_conf() {
        let listed = std::fs::read_to_string("/etc/resolv.conf")
            .map(|text| {
                text.lines()
                    .filter(|l| l.split_whitespace().next() == Some("nameserver"))
                    .count()
            })
            .unwrap_or(0);
        match HickoryResolver::system(ResolverOptions::default()) {
            Ok(resolver) => assert_eq!(resolver.nameservers().len(), listed),
            Err(e) => assert_eq!(listed, 0, "resolv.conf lists {listed} servers, got {e}"),
        }
    }

    #[test]
    fn options_are_checked() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
        assert!(matches!(
            HickoryResolver::with_nameservers(&[], ResolverOptions::default()),
            Err(ResolverSetupError::NoNameServers)
        ));
        assert!(matches!(
            HickoryResolver::with_nameservers(&[addr], ResolverOptions::default().attempts(0)),
            Err(ResolverSetupError::Option(_))
        ));
        let resolver =
            HickoryResolver::with_nameservers(&[addr], ResolverOptions::default().max_in_flight(3))
                .unwrap();
        assert_eq!(
            (resolver.max_in_flight(), resolver.available_permits()),
            (3, 3)
        );
        assert!(!resolver.is_validating());
    }
}
