//! A small SMTP client for submitting test messages (no pipelining, no TLS, no AUTH).
//!
//! It always sends an explicit HELO name, so the server never needs DNS to name the client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect, read and write timeout for every step.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Longest reply line and most lines in one multi-line reply the client reads.
const MAX_REPLY_LINE_BYTES: usize = 4096;
const MAX_REPLY_LINES: usize = 100;

/// Who sends to whom.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The EHLO name the client announces.
    pub helo: &'a str,
    /// `MAIL FROM` address; empty for the null sender.
    pub from: &'a str,
    /// `RCPT TO` addresses in order.
    pub recipients: Vec<String>,
}

/// One SMTP reply: code and the text of all its lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// What happened to one submission.
#[derive(Debug, Clone)]
pub struct SubmitReport {
    /// The reply to `MAIL FROM`.
    pub mail_reply: Reply,
    /// The reply to each `RCPT TO`, in envelope order (empty when MAIL was refused).
    pub rcpt_replies: Vec<Reply>,
    /// The final reply after the message body; `None` when no recipient was accepted.
    pub data_reply: Option<Reply>,
}

impl SubmitReport {
    /// Recipients the server accepted.
    pub fn accepted_recipients(&self) -> usize {
        self.rcpt_replies.iter().filter(|r| r.is_positive()).count()
    }

    /// The queue id from a Postfix `250 2.0.0 Ok: queued as ID` reply.
    pub fn queue_id(&self) -> Option<&str> {
        let reply = self.data_reply.as_ref().filter(|r| r.code == 250)?;
        let (_, id) = reply.text.rsplit_once("queued as ")?;
        Some(id.trim())
    }
}

/// A submission that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SmtpClientError {
    #[error("SMTP connection to {addr} failed")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("SMTP I/O with {addr} failed during {step}")]
    Io {
        addr: SocketAddr,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("SMTP server {addr} answered {step} with {code} {text}")]
    Refused {
        addr: SocketAddr,
        step: &'static str,
        code: u16,
        text: String,
    },
    #[error("SMTP server {addr} sent a malformed reply during {step}: {line:?}")]
    Malformed {
        addr: SocketAddr,
        step: &'static str,
        line: String,
    },
}

/// Submits one message: greeting, EHLO, MAIL, one RCPT per recipient, DATA when at least one
/// recipient was accepted, QUIT.
///
/// Refused recipients are not errors: they are in the report. A refused greeting, EHLO or DATA is.
/// `body` is header + body text; lines may end in `\n` or `\r\n`, dots are stuffed here.
pub fn submit(
    addr: SocketAddr,
    envelope: &Envelope<'_>,
    body: &str,
) -> Result<SubmitReport, SmtpClientError> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|source| SmtpClientError::Connect { addr, source })?;
    let mut session = Session::new(addr, stream)?;

    session.expect_positive("greeting", None)?;
    session.expect_positive("EHLO", Some(&format!("EHLO {}", envelope.helo)))?;
    let mail_reply = session.command("MAIL", &format!("MAIL FROM:<{}>", envelope.from))?;
    if !mail_reply.is_positive() {
        session.quit();
        return Ok(SubmitReport {
            mail_reply,
            rcpt_replies: Vec::new(),
            data_reply: None,
        });
    }
    let mut rcpt_replies = Vec::with_capacity(envelope.recipients.len());
    for rcpt in &envelope.recipients {
        rcpt_replies.push(session.command("RCPT", &format!("RCPT TO:<{rcpt}>"))?);
    }
    let data_reply = if rcpt_replies.iter().any(Reply::is_positive) {
        session.expect_positive("DATA", Some("DATA"))?;
        session.send_raw("message body", &dot_stuff(body))?;
        Some(session.command("end of data", ".")?)
    } else {
        None
    };
    session.quit();
    Ok(SubmitReport {
        mail_reply,
        rcpt_replies,
        data_reply,
    })
}

/// CRLF line endings, a doubled leading dot, and a final CRLF.
fn dot_stuff(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    for line in body.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

struct Session {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Session {
    fn new(addr: SocketAddr, stream: TcpStream) -> Result<Self, SmtpClientError> {
        let io_err = |source| SmtpClientError::Io {
            addr,
            step: "connect",
            source,
        };
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        Ok(Self {
            addr,
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn send_raw(&mut self, step: &'static str, data: &str) -> Result<(), SmtpClientError> {
        self.writer
            .write_all(data.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|source| SmtpClientError::Io {
                addr: self.addr,
                step,
                source,
            })
    }

    /// Sends one command line and reads its reply, whatever the code.
    fn command(&mut self, step: &'static str, line: &str) -> Result<Reply, SmtpClientError> {
        self.send_raw(step, &format!("{line}\r\n"))?;
        self.read_reply(step)
    }

    /// Sends `line` (if any) and requires a 2xx/3xx reply.
    fn expect_positive(
        &mut self,
        step: &'static str,
        line: Option<&str>,
    ) -> Result<Reply, SmtpClientError> {
        let reply = match line {
            Some(line) => self.command(step, line)?,
            None => self.read_reply(step)?,
        };
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(SmtpClientError::Refused {
                addr: self.addr,
                step,
                code: reply.code,
                text: reply.text,
            })
        }
    }

    /// Best effort: the message is already accepted or refused.
    fn quit(&mut self) {
        if self.send_raw("QUIT", "QUIT\r\n").is_ok() {
            let _ = self.read_reply("QUIT");
        }
    }

    fn read_reply(&mut self, step: &'static str) -> Result<Reply, SmtpClientError> {
        let mut text = Vec::new();
        for _ in 0..MAX_REPLY_LINES {
            let mut raw = Vec::new();
            let n = (&mut self.reader)
                .take(MAX_REPLY_LINE_BYTES as u64)
                .read_until(b'\n', &mut raw)
                .map_err(|source| SmtpClientError::Io {
                    addr: self.addr,
                    step,
                    source,
                })?;
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            let malformed = || SmtpClientError::Malformed {
                addr: self.addr,
                step,
                line: line.to_string(),
            };
            if n == 0 {
                return Err(SmtpClientError::Io {
                    addr: self.addr,
                    step,
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                });
            }
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(malformed)?;
            let separator = line.as_bytes().get(3).copied().unwrap_or(b' ');
            text.push(line.get(4..).unwrap_or("").to_string());
            match separator {
                b'-' => continue,
                b' ' => {
                    return Ok(Reply {
                        code,
                        text: text.join("\n"),
                    });
                }
                _ => return Err(malformed()),
            }
        }
        Err(SmtpClientError::Malformed {
            addr: self.addr,
            step,
            line: format!("more than {MAX_REPLY_LINES} reply lines"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_uses_crlf() {
        assert_eq!(dot_stuff("a\n.b\r\n..c"), "a\r\n..b\r\n...c\r\n");
    }

    #[test]
    fn queue_id_comes_from_the_postfix_data_reply() {
        let report = SubmitReport {
            mail_reply: Reply {
                code: 250,
                text: "2.1.0 Ok".into(),
            },
            rcpt_replies: vec![],
            data_reply: Some(Reply {
                code: 250,
                text: "2.0.0 Ok: queued as 4F2C11A0B3".into(),
            }),
        };
        assert_eq!(report.queue_id(), Some("4F2C11A0B3"));
    }
}
