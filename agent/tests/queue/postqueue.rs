//! `postqueue -j` summaries: golden fixtures, hand-counted values, hostile input, a naive reference.

use super::*;

#[test]
fn golden_fixtures_summarise_into_the_expected_snapshots() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .expect("fixtures/queue exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 2,
        "expected the queue fixtures, found {inputs:?}"
    );
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let snapshot = summarise_fixture(&name);
        let json_path = input.with_extension("json");
        if update {
            let mut text = serde_json::to_string_pretty(&snapshot).unwrap();
            text.push('\n');
            fs::write(&json_path, text).unwrap();
            continue;
        }
        let actual = serde_json::to_value(&snapshot).unwrap();
        match fs::read_to_string(&json_path) {
            Ok(text) => {
                let expected: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", json_path.display()));
                if expected != actual {
                    failures.push(format!(
                        "{}: snapshot differs\n  expected: {expected}\n  actual:   {actual}",
                        input.display()
                    ));
                }
            }
            Err(e) => failures.push(format!(
                "{}: expected file missing ({e}); run with UPDATE_GOLDEN=1 and review it",
                json_path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn realistic_fixture_has_the_hand_counted_values() {
    let snap = summarise_fixture("001.jsonl");
    assert_eq!(snap.source, SnapshotSource::Postqueue);
    assert_eq!(snap.taken_at_unix_secs, NOW);
    assert_eq!(
        snap.malformed_lines, 0,
        "the trailing blank line is not malformed"
    );
    let expect = |q: QueueName, messages, recipients, bytes, oldest, buckets: [u64; 8]| {
        let s = snap.queue(q);
        assert_eq!(
            (
                s.messages,
                s.recipients,
                s.bytes,
                s.oldest_age_secs,
                s.age_buckets
            ),
            (messages, recipients, bytes, oldest, buckets),
            "queue {q}: (messages, recipients, bytes, oldest age, age buckets)"
        );
    };
    expect(QueueName::Maildrop, 1, 1, 512, 5, [1, 0, 0, 0, 0, 0, 0, 0]);
    expect(QueueName::Incoming, 1, 2, 2048, 2, [1, 0, 0, 0, 0, 0, 0, 0]);
    expect(
        QueueName::Active,
        2,
        2,
        14_096,
        400,
        [1, 0, 1, 0, 0, 0, 0, 0],
    );
    // Ages 1000, 5000, 90000, 500000, 200 and 0 (an arrival 60 s in the future is clamped).
    expect(
        QueueName::Deferred,
        6,
        13,
        20_909,
        500_000,
        [1, 1, 0, 1, 1, 0, 1, 1],
    );
    // 3600 s is in the 3600 bucket: bounds are inclusive.
    expect(
        QueueName::Hold,
        2,
        2,
        7_100,
        20_000,
        [0, 0, 0, 1, 0, 1, 0, 0],
    );
    expect(QueueName::Corrupt, 0, 0, 0, 0, [0; 8]);
    assert_eq!(
        snap.queue(QueueName::Deferred).cumulative_age_buckets(),
        [1, 2, 2, 3, 4, 4, 5, 6]
    );

    let domains: BTreeMap<&str, (u64, u64, u64)> = snap
        .deferred_domains
        .iter()
        .map(|(d, s)| (d.as_str(), (s.messages, s.recipients, s.oldest_age_secs)))
        .collect();
    let expected: BTreeMap<&str, (u64, u64, u64)> = [
        // Two recipients of one message (one of them `MX-Down.Example.`) and one of another.
        ("mx-down.example", (2, 3, 90_000)),
        ("nx.example", (2, 2, 500_000)),
        ("greylist.example", (1, 1, 5_000)),
        ("mailbox.example", (1, 1, 90_000)),
        ("secure.example", (1, 1, 500_000)),
        ("bigmail.example", (1, 1, 500_000)),
        ("odd.example", (1, 1, 500_000)),
        ("slow.example", (1, 1, 200)),
        ("far.test", (1, 1, 0)),
        ("ok.test", (1, 1, 0)),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        domains, expected,
        "deferred domains: (messages, recipients, oldest age)"
    );
    assert!(snap.deferred_other_domains.is_empty());

    let reasons: BTreeMap<&str, u64> = snap
        .deferred_reasons
        .iter()
        .map(|(c, n)| (c.as_str(), n))
        .collect();
    let expected: BTreeMap<&str, u64> = [
        ("dns", 1),
        ("connect", 6),
        ("tls", 1),
        ("greylisting", 1),
        ("rate-limit", 1),
        ("mailbox", 1),
        ("policy-block", 0),
        ("user-unknown", 0),
        ("other", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(reasons, expected, "deferred recipients per reason class");
    assert_eq!(
        snap.deferred_recipients_without_reason, 1,
        "gina@nx.example"
    );
    let mx_down = snap.deferred_domains["mx-down.example"].reason_recipients;
    assert_eq!(mx_down.get(ReasonClass::Connect), 3);
    assert_eq!(mx_down.total(), 3);
}

#[test]
fn hostile_lines_are_counted_and_skipped() {
    let snap = summarise_fixture("002.jsonl");
    // Lines 2–18: garbage, truncation, huge numbers, a negative time, wrong types, an unknown
    // queue, non-objects, trailing garbage, a duplicate field, a float time, a recipient without
    // address, a negative size. Line 21 is blank.
    assert_eq!(snap.malformed_lines, 17);
    assert_eq!(snap.overlong_lines, 0);
    let deferred = snap.queue(QueueName::Deferred);
    assert_eq!(
        (deferred.messages, deferred.recipients, deferred.bytes),
        (3, 2, 112)
    );
    let hold = snap.queue(QueueName::Hold);
    assert_eq!(hold.bytes, u64::MAX, "the largest size still adds up");
    assert_eq!(hold.oldest_age_secs, NOW as u64, "arrival time 0");
    assert_eq!(snap.queue(QueueName::Active).messages, 0);
    assert!(
        snap.deferred_domains.contains_key("ctl.example"),
        "{snap:?}"
    );
}

#[test]
fn over_long_lines_are_skipped_without_being_buffered() {
    let valid = br#"{"queue_name": "active", "queue_id": "A", "arrival_time": 1700099000, "message_size": 10, "forced_expire": false, "sender": "", "recipients": [{"address": "a@x.example"}]}"#;
    let mut input = Vec::new();
    input.extend_from_slice(valid);
    input.push(b'\n');
    // A 2 MiB line that starts like an entry.
    input.extend_from_slice(br#"{"queue_name": "deferred", "recipients": [{"address": ""#);
    input.resize(input.len() + 2 * 1024 * 1024, b'a');
    input.extend_from_slice(b"\"}]}\n");
    input.extend_from_slice(valid);
    input.push(b'\n');
    // A line of exactly the limit is read; one byte more is not.
    let mut exact = valid.to_vec();
    exact.resize(MAX_LINE_BYTES, b' ');
    input.extend_from_slice(&exact);
    input.push(b'\n');
    exact.push(b' ');
    input.extend_from_slice(&exact);
    input.push(b'\n');
    // And an over-long last line without newline.
    input.resize(input.len() + MAX_LINE_BYTES + 10, b'{');
    let snap = summarise_bytes(&input, 10);
    assert_eq!(snap.queue(QueueName::Active).messages, 3);
    assert_eq!(snap.overlong_lines, 3);
    assert_eq!(snap.malformed_lines, 3);
}

#[test]
fn invalid_utf8_and_crlf() {
    let mut input = br#"{"queue_name": "active", "queue_id": "A", "arrival_time": 1700099000, "message_size": 10, "forced_expire": false, "sender": "", "recipients": [{"address": "a@x.example"}]}"#.to_vec();
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(br#"{"queue_name": "active", "queue_id": "B", "arrival_time": 1700099000, "message_size": 10, "forced_expire": false, "sender": "", "recipients": [{"address": "a@"#);
    input.extend_from_slice(b"\xff\xfe.example\"}]}\n\x00\x01\x02\n");
    let snap = summarise_bytes(&input, 10);
    assert_eq!(snap.queue(QueueName::Active).messages, 1, "CRLF is fine");
    assert_eq!(snap.malformed_lines, 2, "invalid UTF-8 and binary garbage");
}

/// What a naive reference implementation counts: every line parsed into a `serde_json::Value`,
/// no bounds.
#[derive(Debug, Default)]
struct Reference {
    queues: BTreeMap<QueueName, QueueStats>,
    /// (messages, recipients, oldest age) per deferred domain.
    domains: BTreeMap<String, (u64, u64, u64)>,
    reasons: BTreeMap<ReasonClass, u64>,
    without_reason: u64,
}

fn reference_summary(text: &str) -> Reference {
    let mut r = Reference {
        queues: QueueName::ALL
            .iter()
            .map(|&q| (q, QueueStats::default()))
            .collect(),
        reasons: ReasonClass::ALL.iter().map(|&c| (c, 0)).collect(),
        ..Reference::default()
    };
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let queue: QueueName = serde_json::from_value(v["queue_name"].clone()).unwrap();
        let age = (NOW - v["arrival_time"].as_i64().unwrap()).max(0) as u64;
        let rcpts = v["recipients"].as_array().unwrap();
        let q = r.queues.get_mut(&queue).unwrap();
        q.messages += 1;
        q.recipients += rcpts.len() as u64;
        q.bytes += v["message_size"].as_u64().unwrap();
        q.oldest_age_secs = q.oldest_age_secs.max(age);
        q.age_buckets[AGE_BOUNDS_SECS.iter().take_while(|&&b| b < age).count()] += 1;
        if queue != QueueName::Deferred {
            continue;
        }
        let mut seen = BTreeSet::new();
        for rcpt in rcpts {
            let address = rcpt["address"].as_str().unwrap();
            let (_, domain) = address.rsplit_once('@').unwrap();
            let domain = domain.trim_end_matches('.').to_lowercase();
            let d = r.domains.entry(domain.clone()).or_default();
            d.1 += 1;
            if seen.insert(domain) {
                d.0 += 1;
                d.2 = d.2.max(age);
            }
            match rcpt["delay_reason"].as_str() {
                Some(text) => *r.reasons.entry(classify(None, text)).or_default() += 1,
                None => r.without_reason += 1,
            }
        }
    }
    r
}

#[test]
fn generated_queues_match_a_naive_reference() {
    for seed in [1, 2, 3] {
        let mut bytes = Vec::new();
        write_synth_postqueue(
            &SynthQueueConfig {
                seed,
                entries: 3_000,
                now_unix_secs: NOW,
                ..SynthQueueConfig::default()
            },
            &mut bytes,
        )
        .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let reference = reference_summary(&text);
        let snap = summarise_bytes(text.as_bytes(), usize::MAX);
        assert_eq!(snap.malformed_lines, 0, "seed {seed}");
        assert_eq!(snap.queues, reference.queues, "seed {seed}: queues");
        let domains: BTreeMap<String, (u64, u64, u64)> = snap
            .deferred_domains
            .iter()
            .map(|(d, s)| (d.clone(), (s.messages, s.recipients, s.oldest_age_secs)))
            .collect();
        assert_eq!(domains, reference.domains, "seed {seed}: domains");
        let reasons: BTreeMap<ReasonClass, u64> = snap.deferred_reasons.iter().collect();
        assert_eq!(reasons, reference.reasons, "seed {seed}: reasons");
        assert_eq!(
            snap.deferred_recipients_without_reason,
            reference.without_reason
        );
        // Every deferred recipient is counted once: by reason class or as without reason, and
        // per domain.
        let deferred = snap.queue(QueueName::Deferred).recipients;
        assert_eq!(
            snap.deferred_reasons.total() + snap.deferred_recipients_without_reason,
            deferred
        );
        let per_domain: u64 = snap.deferred_domains.values().map(|d| d.recipients).sum();
        assert_eq!(per_domain, deferred);
        assert!(
            snap.deferred_domains.len() > 500,
            "long tail of domains: {}",
            snap.deferred_domains.len()
        );

        // With a small domain table the first domains seen keep their counts, the rest add up
        // in `other`.
        let small = summarise_bytes(text.as_bytes(), 20);
        assert_eq!(small.deferred_domains.len(), 20);
        for (domain, stats) in &small.deferred_domains {
            assert_eq!(
                stats, &snap.deferred_domains[domain],
                "seed {seed}: {domain} is tracked in full"
            );
        }
        let named: u64 = small.deferred_domains.values().map(|d| d.recipients).sum();
        assert_eq!(named + small.deferred_other_domains.recipients, deferred);
        assert_eq!(small.queues, snap.queues);
        assert_eq!(small.deferred_reasons, snap.deferred_reasons);
    }
}

/// A line that is (or is close to) a queue entry: every field drawn from valid and invalid values.
fn entry_line() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let queue = prop_oneof![
        Just(("deferred", true)),
        Just(("active", true)),
        Just(("hold", true)),
        Just(("maildrop", true)),
        Just(("Deferred", false)),
        Just(("", false)),
    ];
    let arrival = prop_oneof![
        any::<i64>().prop_map(|t| (t.to_string(), t >= 0)),
        Just(("1e99".to_owned(), false)),
        Just(("\"17\"".to_owned(), false)),
    ];
    let size = prop_oneof![
        any::<u64>().prop_map(|s| (s.to_string(), true)),
        any::<i64>().prop_map(|s| (s.to_string(), s >= 0)),
        Just(("184467440737095516150".to_owned(), false)),
    ];
    let recipient = (any::<String>(), proptest::option::of(any::<String>())).prop_map(|(a, r)| {
        let mut s = format!("{{\"address\": {}", serde_json::to_string(&a).unwrap());
        if let Some(r) = r {
            s.push_str(&format!(
                ", \"delay_reason\": {}",
                serde_json::to_string(&r).unwrap()
            ));
        }
        s.push('}');
        s
    });
    (queue, arrival, size, prop::collection::vec(recipient, 0..4)).prop_map(
        |((q, q_ok), (t, t_ok), (s, s_ok), rcpts)| {
            let line = format!(
                "{{\"queue_name\": \"{q}\", \"queue_id\": \"X\", \"arrival_time\": {t}, \"message_size\": {s}, \"recipients\": [{}]}}",
                rcpts.join(", ")
            );
            (line.into_bytes(), q_ok && t_ok && s_ok)
        },
    )
}

fn any_line() -> impl Strategy<Value = (Vec<u8>, Option<bool>)> {
    prop_oneof![
        entry_line().prop_map(|(l, ok)| (l, Some(ok))),
        // Arbitrary bytes: whether they are an entry is not known in advance.
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|l| (l, None)),
        // A valid entry cut short.
        (entry_line(), any::<prop::sample::Index>()).prop_map(|((l, _), cut)| {
            let n = cut.index(l.len().max(1));
            (l[..n].to_vec(), Some(false))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the lines, nothing panics and every non-blank line is either a message or
    /// counted as malformed; generated entries are counted exactly when they are valid.
    #[test]
    fn every_line_is_a_message_or_malformed(lines in prop::collection::vec(any_line(), 0..24)) {
        let mut input = Vec::new();
        let mut non_blank = 0u64;
        let mut valid = 0u64;
        let mut known = true;
        for (line, ok) in &lines {
            let line: Vec<u8> = line.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect();
            if !line.iter().all(u8::is_ascii_whitespace) {
                non_blank += 1;
            }
            match ok {
                Some(true) => valid += 1,
                Some(false) => {}
                None => known = false,
            }
            input.extend_from_slice(&line);
            input.push(b'\n');
        }
        let snap = summarise_bytes(&input, 3);
        prop_assert_eq!(snap.total_messages() + snap.malformed_lines, non_blank);
        if known {
            prop_assert_eq!(snap.total_messages(), valid);
        }
        prop_assert!(snap.deferred_domains.len() <= 3);
    }
}
