//! SMTP sinks: tiny SMTP servers on 127.0.0.1 that Postfix delivers to.
//!
//! A sink answers every recipient the same way ([`SinkMode`]) and counts what it received. It speaks
//! enough ESMTP for the Postfix SMTP client: EHLO/HELO, MAIL, RCPT, DATA (dot-terminated, with
//! dot-unstuffing), RSET, NOOP, QUIT, and PIPELINING (replies are written in command order).
//!
//! One accept thread per sink; each connection gets its own thread (Postfix opens several parallel
//! connections and parks idle ones in its connection cache), at most [`MAX_CONNECTIONS`] at once. All
//! reads time out, every loop is bounded, and dropping the sink stops and joins every thread.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at the same time; more get `421` and are closed.
pub const MAX_CONNECTIONS: usize = 32;
/// Connections served over the sink's lifetime; a runaway client cannot make the test loop forever.
pub const MAX_TOTAL_CONNECTIONS: usize = 10_000;
/// Commands per connection.
const MAX_COMMANDS: usize = 10_000;
/// Longest command line (RFC 5321 says 512; Postfix adds ESMTP parameters).
const MAX_COMMAND_BYTES: usize = 4096;
/// Largest message body accepted.
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// A connection idle this long is closed (Postfix's connection cache keeps them 2 s by default).
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Read timeout; between reads the handler checks whether the sink is stopping.
const READ_TICK: Duration = Duration::from_millis(200);

/// How a sink answers `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    /// `250` for every recipient; messages are counted.
    Accept,
    /// `451 4.7.1 Greylisted, try again later` for every recipient.
    Tempfail,
    /// `550 5.1.1 <addr>: Recipient address rejected: User unknown` for every recipient.
    Reject,
}

/// What a sink has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// TCP connections accepted.
    pub connections: usize,
    /// Messages whose DATA completed with a `250`.
    pub messages: usize,
    /// Recipients of those messages (one per accepted `RCPT TO`).
    pub recipients: usize,
    /// Addresses of those recipients, in arrival order.
    pub recipient_addrs: Vec<String>,
    /// Envelope senders of those messages (`""` for the null sender of bounce notices).
    pub senders: Vec<String>,
    /// `RCPT TO` commands answered with a 4xx or 5xx.
    pub refused_recipients: usize,
    /// Body bytes received after dot-unstuffing, over all messages.
    pub body_bytes: usize,
    /// Client addresses of the connections, in order (the first [`MAX_PEERS_KEPT`]).
    pub peers: Vec<std::net::IpAddr>,
}

/// Client addresses [`SinkStats::peers`] keeps.
pub const MAX_PEERS_KEPT: usize = 1_000;

/// A running SMTP sink. Dropping it stops the server.
pub struct SmtpSink {
    addr: SocketAddr,
    mode: SinkMode,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    stats: Mutex<SinkStats>,
    stopping: AtomicBool,
    live_connections: AtomicUsize,
    handlers: Mutex<Vec<JoinHandle<()>>>,
    hostname: String,
}

impl SmtpSink {
    /// Binds 127.0.0.1 on a kernel-chosen port and starts serving.
    pub fn start(mode: SinkMode) -> io::Result<Self> {
        Self::start_on(0, mode)
    }

    /// Binds `127.0.0.1:port` (0 = any free port) and starts serving.
    pub fn start_on(port: u16, mode: SinkMode) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stats: Mutex::new(SinkStats::default()),
            stopping: AtomicBool::new(false),
            live_connections: AtomicUsize::new(0),
            handlers: Mutex::new(Vec::new()),
            hostname: format!("sink-{}.test", addr.port()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name(format!("smtp-sink-{}", addr.port()))
            .spawn(move || accept_loop(listener, mode, accept_shared))?;
        Ok(Self {
            addr,
            mode,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the sink listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How this sink answers recipients.
    pub fn mode(&self) -> SinkMode {
        self.mode
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SinkStats {
        lock(&self.shared.stats).clone()
    }

    /// Postfix next-hop for this sink, for `transport_maps`: `smtp:[127.0.0.1]:PORT`.
    pub fn nexthop(&self) -> String {
        format!("smtp:[127.0.0.1]:{}", self.port())
    }

    /// How Postfix logs this sink as `relay=`: `127.0.0.1[127.0.0.1]:PORT`.
    pub fn relay(&self) -> String {
        format!("127.0.0.1[127.0.0.1]:{}", self.port())
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let handlers = std::mem::take(&mut *lock(&self.shared.handlers));
        for handler in handlers {
            let _ = handler.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler thread must not hide the counters from the test.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: TcpListener, mode: SinkMode, shared: Arc<Shared>) {
    let mut accepted = 0usize;
    while !shared.stopping.load(Ordering::SeqCst) && accepted < MAX_TOTAL_CONNECTIONS {
        match listener.accept() {
            Ok((stream, peer)) => {
                accepted += 1;
                {
                    let mut stats = lock(&shared.stats);
                    stats.connections += 1;
                    if stats.peers.len() < MAX_PEERS_KEPT {
                        stats.peers.push(peer.ip());
                    }
                }
                if shared.live_connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let mut stream = stream;
                    let _ = stream.write_all(b"421 4.3.2 Too many connections\r\n");
                    continue;
                }
                shared.live_connections.fetch_add(1, Ordering::SeqCst);
                let conn_shared = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name("smtp-sink-conn".into())
                    .spawn(move || {
                        let _ = serve_connection(stream, mode, &conn_shared);
                        conn_shared.live_connections.fetch_sub(1, Ordering::SeqCst);
                    });
                match spawned {
                    Ok(handle) => {
                        let mut handlers = lock(&shared.handlers);
                        handlers.retain(|h| !h.is_finished());
                        handlers.push(handle);
                    }
                    Err(_) => {
                        shared.live_connections.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One SMTP transaction in progress.
#[derive(Default)]
struct Transaction {
    sender: Option<String>,
    recipients: Vec<String>,
}

/// Line reader over a socket with a read timeout: keeps partial lines across timeouts and gives up
/// when the sink stops or the peer stays idle too long.
struct LineReader<'a> {
    reader: BufReader<TcpStream>,
    shared: &'a Shared,
}

enum Line {
    Data(Vec<u8>),
    Closed,
}

impl LineReader<'_> {
    fn next_line(&mut self, max_bytes: usize) -> io::Result<Line> {
        let mut buf = Vec::new();
        let idle_since = Instant::now();
        loop {
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => return Ok(Line::Closed),
                Ok(_) if buf.ends_with(b"\n") => return Ok(Line::Data(buf)),
                // EOF in the middle of a line.
                Ok(_) => return Ok(Line::Closed),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // read_until keeps what it read so far in `buf`; continue the same line.
                    if self.shared.stopping.load(Ordering::SeqCst)
                        || idle_since.elapsed() > IDLE_LIMIT
                    {
                        return Ok(Line::Closed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if buf.len() > max_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "line longer than the sink accepts",
                ));
            }
        }
    }
}

fn serve_connection(stream: TcpStream, mode: SinkMode, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TICK))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut lines = LineReader {
        reader: BufReader::new(stream),
        shared,
    };
    let host = &shared.hostname;
    reply(&mut out, &format!("220 {host} ESMTP mailpulse test sink"))?;

    let mut txn = Transaction::default();
    for _ in 0..MAX_COMMANDS {
        let raw = match lines.next_line(MAX_COMMAND_BYTES)? {
            Line::Data(raw) => raw,
            Line::Closed => return Ok(()),
        };
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" => {
                txn = Transaction::default();
                reply(
                    &mut out,
                    &format!(
                        "250-{host}\r\n250-PIPELINING\r\n250-SIZE {MAX_MESSAGE_BYTES}\r\n\
                         250-8BITMIME\r\n250 ENHANCEDSTATUSCODES"
                    ),
                )?;
            }
            "HELO" => {
                txn = Transaction::default();
                reply(&mut out, &format!("250 {host}"))?;
            }
            "MAIL" => match path_argument(arg, "FROM:") {
                _ if txn.sender.is_some() => {
                    reply(&mut out, "503 5.5.1 Error: nested MAIL command")?
                }
                Some(sender) => {
                    txn.sender = Some(sender);
                    reply(&mut out, "250 2.1.0 Ok")?;
                }
                None => reply(&mut out, "501 5.5.4 Syntax: MAIL FROM:<address>")?,
            },
            "RCPT" => match path_argument(arg, "TO:") {
                _ if txn.sender.is_none() => reply(&mut out, "503 5.5.1 Error: need MAIL command")?,
                Some(rcpt) => match mode {
                    SinkMode::Accept => {
                        txn.recipients.push(rcpt);
                        reply(&mut out, "250 2.1.5 Ok")?;
                    }
                    SinkMode::Tempfail => {
                        lock(&shared.stats).refused_recipients += 1;
                        reply(&mut out, "451 4.7.1 Greylisted, try again later")?;
                    }
                    SinkMode::Reject => {
                        lock(&shared.stats).refused_recipients += 1;
                        reply(
                            &mut out,
                            &format!(
                                "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
                            ),
                        )?;
                    }
                },
                None => reply(&mut out, "501 5.5.4 Syntax: RCPT TO:<address>")?,
            },
            "DATA" => {
                if txn.sender.is_none() {
                    reply(&mut out, "503 5.5.1 Error: need MAIL command")?;
                    continue;
                }
                if txn.recipients.is_empty() {
                    // Pipelining clients send DATA before they saw the RCPT replies.
                    reply(&mut out, "554 5.5.1 Error: no valid recipients")?;
                    continue;
                }
                reply(&mut out, "354 End data with <CR><LF>.<CR><LF>")?;
                let Some(body_bytes) = read_body(&mut lines)? else {
                    return Ok(());
                };
                let done = std::mem::take(&mut txn);
                let mut stats = lock(&shared.stats);
                stats.messages += 1;
                stats.recipients += done.recipients.len();
                stats.recipient_addrs.extend(done.recipients);
                stats.senders.push(done.sender.unwrap_or_default());
                stats.body_bytes += body_bytes;
                let queue_id = format!("SINK{:06}", stats.messages);
                drop(stats);
                reply(&mut out, &format!("250 2.0.0 Ok: queued as {queue_id}"))?;
            }
            "RSET" => {
                txn = Transaction::default();
                reply(&mut out, "250 2.0.0 Ok")?;
            }
            "NOOP" => reply(&mut out, "250 2.0.0 Ok")?,
            "VRFY" => reply(&mut out, "252 2.0.0 Cannot VRFY user")?,
            "QUIT" => {
                reply(&mut out, "221 2.0.0 Bye")?;
                return Ok(());
            }
            _ => reply(&mut out, "502 5.5.2 Error: command not recognized")?,
        }
    }
    reply(&mut out, "421 4.7.0 Too many commands")
}

/// Reads a dot-terminated message body; returns its size after dot-unstuffing, or `None` when the
/// peer went away before the final dot.
fn read_body(lines: &mut LineReader<'_>) -> io::Result<Option<usize>> {
    let mut size = 0usize;
    // Bounded by MAX_MESSAGE_BYTES: every line is at least one byte.
    for _ in 0..=MAX_MESSAGE_BYTES {
        let raw = match lines.next_line(MAX_MESSAGE_BYTES)? {
            Line::Data(raw) => raw,
            Line::Closed => return Ok(None),
        };
        let content = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content == b"." {
            return Ok(Some(size));
        }
        // RFC 5321 4.5.2: a leading dot was doubled by the client.
        let unstuffed = content.strip_prefix(b".").unwrap_or(content);
        size += unstuffed.len() + 2;
        if size > MAX_MESSAGE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message larger than the sink accepts",
            ));
        }
    }
    Ok(None)
}

/// `FROM:<addr> PARAMS` → `addr` (the angle brackets are required, as Postfix always sends them).
fn path_argument(arg: &str, keyword: &str) -> Option<String> {
    let rest = arg.get(..keyword.len())?;
    if !rest.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_string())
}

fn reply(out: &mut TcpStream, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.write_all(b"\r\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp_client::{Envelope, submit};

    #[test]
    fn path_argument_takes_the_address_between_brackets() {
        assert_eq!(
            path_argument("FROM:<a@b.test> SIZE=10 BODY=8BITMIME", "FROM:"),
            Some("a@b.test".into())
        );
        assert_eq!(path_argument("from: <>", "FROM:"), Some(String::new()));
        assert_eq!(path_argument("TO:a@b.test", "TO:"), None);
        assert_eq!(path_argument("", "TO:"), None);
    }

    #[test]
    fn accept_sink_counts_messages_and_unstuffs_dots() {
        let sink = SmtpSink::start(SinkMode::Accept).unwrap();
        let envelope = Envelope {
            helo: "client.test",
            from: "s@sender.test",
            recipients: vec!["a@ok.test".into(), "b@ok.test".into()],
        };
        let report = submit(sink.addr(), &envelope, "Subject: x\r\n\r\n.dot\r\nend\r\n").unwrap();
        assert_eq!(report.accepted_recipients(), 2);
        assert!(report.data_reply.as_ref().unwrap().is_positive());
        let stats = sink.stats();
        assert_eq!(stats.messages, 1);
        assert_eq!(stats.recipients, 2);
        assert_eq!(stats.recipient_addrs, ["a@ok.test", "b@ok.test"]);
        // "Subject: x" + "" + ".dot" (stuffed by the client, unstuffed by the sink) + "end", each
        // with CRLF.
        assert_eq!(stats.body_bytes, 12 + 2 + 6 + 5);
    }

    #[test]
    fn tempfail_and_reject_sinks_refuse_every_recipient() {
        for (mode, code) in [(SinkMode::Tempfail, 451), (SinkMode::Reject, 550)] {
            let sink = SmtpSink::start(mode).unwrap();
            let envelope = Envelope {
                helo: "client.test",
                from: "s@sender.test",
                recipients: vec!["a@x.test".into()],
            };
            let report = submit(sink.addr(), &envelope, "Subject: x\r\n\r\nbody\r\n").unwrap();
            assert_eq!(report.rcpt_replies[0].code, code, "{mode:?}");
            assert!(report.data_reply.is_none(), "no DATA without recipients");
            assert_eq!(sink.stats().messages, 0);
            assert_eq!(sink.stats().refused_recipients, 1);
        }
    }

    #[test]
    fn pipelined_commands_get_replies_in_order() {
        let sink = SmtpSink::start(SinkMode::Accept).unwrap();
        let mut stream = TcpStream::connect(sink.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(
                b"EHLO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<a@ok.test>\r\nRCPT TO:<b@ok.test>\r\n\
                  DATA\r\nSubject: p\r\n\r\n..x\r\n.\r\nNOOP\r\nRSET\r\nQUIT\r\n",
            )
            .unwrap();
        let mut replies = String::new();
        io::Read::read_to_string(&mut stream, &mut replies).unwrap();
        let codes: Vec<&str> = replies
            .lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| &l[..3])
            .collect();
        assert_eq!(
            codes,
            [
                "220", "250", "250", "250", "250", "354", "250", "250", "250", "221"
            ]
        );
        assert_eq!(sink.stats().senders, [""]);
        assert_eq!(sink.stats().recipients, 2);
    }
}
