//! cleanup: message-id logging and header/body/milter check actions.

use super::{FindLit, check_action, endpoint, reply, split_queue_id, split_trailer, unbracket};
use crate::parse::record::{CheckAction, Cleanup, Endpoint, Record};

pub(super) fn parse(m: &str) -> Option<Record<'_>> {
    let (queue_id, rest) = split_queue_id(m)?;
    if let Some(id) = rest.strip_prefix("message-id=") {
        return Some(Record::Cleanup(Cleanup::MessageId {
            queue_id,
            message_id: unbracket(id),
        }));
    }
    if rest.starts_with("resent-message-id=") {
        return Some(Record::Cleanup(Cleanup::Note {
            queue_id: Some(queue_id),
            text: rest,
        }));
    }
    let (token, detail) = rest.split_lit(": ")?;
    check(queue_id, token, detail).map(Record::Cleanup)
}

/// `QID: ACTION: …` after the queue id; `token` is `reject`, `milter-reject`,
/// `milter-header-redirect`, ...
fn check<'a>(queue_id: &'a str, token: &'a str, detail: &'a str) -> Option<Cleanup<'a>> {
    let (prefix, word) = match token.rsplit_byte(b'-') {
        Some((prefix, word)) if prefix.starts_with("milter") => (Some(prefix), word),
        _ => (None, token),
    };
    let action = check_action(word)?;
    if prefix == Some("milter") {
        return milter_stage(queue_id, action, detail);
    }
    // `SOURCE CONTENT from CLIENT; from=<…> to=<…>[ proto=… helo=<…>][: TEXT]`
    let (checked, envelope, tail) = split_trailer(detail)?;
    let (source_and_content, client) = checked.rsplit_lit(" from ")?;
    let client = client_or_local(client)?;
    let (first_word, content) = source_and_content.split_byte(b' ')?;
    let tail = (!tail.is_empty()).then_some(tail);
    let (reply, argument) = split_tail(action, tail);
    Some(Cleanup::Check {
        queue_id,
        action,
        source: prefix.unwrap_or(first_word),
        stage: None,
        client,
        reply,
        envelope,
        detail: content,
        argument,
    })
}

/// `milter-reject: END-OF-MESSAGE from h[ip]: 5.7.1 text; from=<…> to=<…> proto=… helo=<…>`
fn milter_stage<'a>(
    queue_id: &'a str,
    action: CheckAction,
    detail: &'a str,
) -> Option<Cleanup<'a>> {
    let (stage, rest) = detail.split_lit(" from ")?;
    let (client, rest) = match rest.strip_prefix("local:") {
        Some(r) => (None, r),
        None => {
            let (r, ep) = endpoint(rest).ok()?;
            (Some(ep), r.strip_prefix(':')?)
        }
    };
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (text, envelope, _) = split_trailer(rest)?;
    let (reply, argument) = split_tail(action, Some(text));
    Some(Cleanup::Check {
        queue_id,
        action,
        source: "milter",
        stage: Some(stage),
        client,
        reply,
        envelope,
        detail: "",
        argument,
    })
}

/// `local` (mail submitted with sendmail) has no endpoint.
fn client_or_local(s: &str) -> Option<Option<Endpoint<'_>>> {
    if s == "local" {
        return Some(None);
    }
    match endpoint(s) {
        Ok(("", ep)) => Some(Some(ep)),
        _ => None,
    }
}

/// A rejection's text is its SMTP reply; any other action's text is its argument.
fn split_tail(
    action: CheckAction,
    tail: Option<&str>,
) -> (Option<crate::parse::record::Reply<'_>>, Option<&str>) {
    match action {
        CheckAction::Reject => (tail.map(reply), None),
        _ => (None, tail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::record::Envelope;

    fn p(m: &str) -> Cleanup<'_> {
        match parse(m) {
            Some(Record::Cleanup(c)) => c,
            other => panic!("expected a cleanup record for {m:?}, got {other:?}"),
        }
    }

    #[test]
    fn message_ids() {
        for (line, id) in [
            (
                "0F5383D: message-id=<544D2523.30609@rhsoft.net>",
                "544D2523.30609@rhsoft.net",
            ),
            ("4104E3D: message-id=<>", ""),
            ("4104E3D: message-id=bare-id@host", "bare-id@host"),
            ("4104E3D: message-id=", ""),
        ] {
            assert!(
                matches!(p(line), Cleanup::MessageId { message_id, .. } if message_id == id),
                "{line}"
            );
        }
    }

    #[test]
    fn header_reject_with_reply() {
        assert_eq!(
            p(
                "4KJd2L6vmtz9sQ6: reject: header Subject: You won! from mail.example.net[192.0.2.8]; \
               from=<s@example.net> to=<r@example.org> proto=ESMTP helo=<mail.example.net>: \
               5.7.1 Spam subject"
            ),
            Cleanup::Check {
                queue_id: "4KJd2L6vmtz9sQ6",
                action: CheckAction::Reject,
                source: "header",
                stage: None,
                client: Some(Endpoint {
                    host: "mail.example.net",
                    ip: "192.0.2.8",
                    port: None
                }),
                reply: Some(crate::parse::record::Reply {
                    code: None,
                    dsn: Some("5.7.1"),
                    text: "5.7.1 Spam subject"
                }),
                envelope: Envelope {
                    from: Some("s@example.net"),
                    to: Some("r@example.org"),
                    proto: Some("ESMTP"),
                    helo: Some("mail.example.net")
                },
                detail: "Subject: You won!",
                argument: None,
            }
        );
    }

    #[test]
    fn milter_reject_and_local_warning() {
        let Cleanup::Check {
            source,
            stage,
            reply,
            client,
            ..
        } = p(
            "4104E3D: milter-reject: END-OF-MESSAGE from a.example[61.238.241.86]: 5.7.1 \
               Blocked; from=<a@b> to=<c@d> proto=ESMTP helo=<e>",
        )
        else {
            panic!()
        };
        assert_eq!((source, stage), ("milter", Some("END-OF-MESSAGE")));
        assert_eq!(reply.and_then(|r| r.dsn), Some("5.7.1"));
        assert_eq!(client.map(|c| c.ip), Some("61.238.241.86"));

        let Cleanup::Check {
            action,
            client,
            argument,
            ..
        } = p("D95341E50350: warning: header Subject: hi from local; from=<a@b> to=<c@d>")
        else {
            panic!()
        };
        assert_eq!((action, client, argument), (CheckAction::Warn, None, None));
    }

    #[test]
    fn redirect_target_is_the_argument() {
        let Cleanup::Check {
            action,
            source,
            argument,
            ..
        } = p(
            "4104E3D: milter-header-redirect: header X-Spam: Yes from h[1.2.3.4]; from=<a@b> \
               to=<c@d> proto=ESMTP helo=<e>: tom@example.com",
        )
        else {
            panic!()
        };
        assert_eq!(
            (action, source, argument),
            (
                CheckAction::Redirect,
                "milter-header",
                Some("tom@example.com")
            )
        );
    }

    #[test]
    fn unknown_actions_and_truncation() {
        assert!(parse("4104E3D: frobnicate: header x from local; from=<> to=<>").is_none());
        assert!(parse("4104E3D: reject: header Subject: x from h[1.2").is_none());
        assert!(parse("warning: 9BECF3F19D: map lookup problem").is_none());
    }
}
