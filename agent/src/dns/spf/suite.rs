//! Runner for the official SPF test suite (openspf.org's `rfc7208-tests.yml` format).
//!
//! A suite file is a stream of YAML documents (scenarios). Each has `tests` (name → `helo`,
//! `host`, `mailfrom`, `result` as one result or a list of acceptable ones, optional
//! `explanation`, `spec`, …) and `zonedata` (name → list of records: `A`, `AAAA`, `MX: [pref,
//! name]`, `TXT`/`SPF` as a string or a list of strings, `PTR`, `CNAME`, or the bare word
//! `TIMEOUT`). Each scenario's zone is loaded into a [`MemoryZone`] the way the reference driver
//! (pyspf's `testspf.py`) loads it:
//! - a name with `SPF` records and no `TXT` entry gets the same records as TXT (the suite's
//!   scenarios outside "Selecting records" rely on it); `TXT: NONE` means "no TXT records" and
//!   suppresses the copy;
//! - `TIMEOUT` makes queries time out for every type not listed before it on that name (and
//!   hides everything after it); `TYPE: TIMEOUT` times out that type only;
//! - string escapes such as `"\x96"` are bytes, not UTF-8: a character up to U+00FF is one byte.
//!
//! Like the reference driver, an expected explanation is compared with the check's explanation,
//! or with [`DEFAULT_EXPLANATION`] when the domain gave none. The comparison ignores ASCII case:
//! the suite was written against pyspf, which writes `%{i}` nibbles of IPv6 addresses in upper
//! case, while RFC 7208 section 7.4 writes them in lower case (as [`check_host`] does).
//!
//! Invariant: a malformed suite file is a [`SuiteError`], never a panic.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use saphyr::{LoadableYamlNode, Scalar, Yaml};

use super::eval::{check_host, sender_domain};
use crate::dns::{Answer, LookupError, MemoryZone, RData, RecordType, Resolve, normalise_name};

/// What the reference driver uses as the explanation of a fail without `exp=`.
pub const DEFAULT_EXPLANATION: &str = "DEFAULT";

/// Why a suite file could not be run.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The file is not YAML.
    #[error("not valid YAML")]
    Yaml(#[from] saphyr::ScanError),
    /// A document (1-based) is YAML but not a scenario of the suite format.
    #[error("document {document}: {message}")]
    Format { document: usize, message: String },
}

/// The result of every test of a suite, in file order.
#[derive(Debug, Clone, Default)]
pub struct SuiteReport {
    /// One per test, in file order.
    pub outcomes: Vec<TestOutcome>,
}

/// One test's expectation and what the evaluator said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// The scenario's description.
    pub scenario: String,
    /// The test's name (its key in the file).
    pub name: String,
    /// The RFC 7208 sections the test is about.
    pub spec: String,
    /// Acceptable results, preferred first.
    pub expected: Vec<String>,
    /// The evaluator's result.
    pub got: String,
    /// The explanation the test expects, if it checks one.
    pub expected_explanation: Option<String>,
    /// The evaluator's explanation (`None`: the domain gave none).
    pub explanation: Option<String>,
    /// The evaluator's reason for a none/permerror/temperror.
    pub problem: Option<String>,
    /// Result (and explanation, if checked) as expected.
    pub passed: bool,
    /// Passed with the first (preferred) of the acceptable results.
    pub preferred: bool,
}

/// One scenario (YAML document): its tests and its zone.
#[derive(Debug)]
pub struct Scenario {
    /// The document's `description`.
    pub description: String,
    /// Its tests, in file order.
    pub tests: Vec<SuiteTest>,
    /// Its `zonedata`, loaded.
    pub zone: SuiteZone,
}

/// One test of a scenario.
#[derive(Debug, Clone)]
pub struct SuiteTest {
    /// The test's key in the file.
    pub name: String,
    /// The RFC sections it is about.
    pub spec: String,
    /// HELO/EHLO name.
    pub helo: String,
    /// The client address.
    pub host: IpAddr,
    /// MAIL FROM (empty for a bounce).
    pub mail_from: String,
    /// Acceptable results, preferred first.
    pub expected: Vec<String>,
    /// Expected explanation, if the test checks one.
    pub explanation: Option<String>,
}

/// A scenario's zone: a [`MemoryZone`] plus the per-type time-outs of the suite format.
#[derive(Debug, Default)]
pub struct SuiteZone {
    zone: MemoryZone,
    /// Names whose queries time out except for these types (those listed before `TIMEOUT`).
    answered_before_timeout: HashMap<String, HashSet<RecordType>>,
    /// Names whose queries of these types time out (`TYPE: TIMEOUT`).
    type_timeouts: HashMap<String, HashSet<RecordType>>,
}

impl Resolve for SuiteZone {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Answer, LookupError> {
        let key = normalise_name(name);
        let times_out = self
            .answered_before_timeout
            .get(&key)
            .is_some_and(|answered| !answered.contains(&rtype))
            || self
                .type_timeouts
                .get(&key)
                .is_some_and(|types| types.contains(&rtype));
        if times_out {
            return Err(LookupError::Timeout);
        }
        self.zone.answer(name, rtype)
    }
}

impl SuiteZone {
    /// The underlying zone.
    pub fn zone(&self) -> &MemoryZone {
        &self.zone
    }
}

impl SuiteReport {
    /// Tests that passed.
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed).count()
    }

    /// Tests that failed, in file order.
    pub fn failed(&self) -> impl Iterator<Item = &TestOutcome> {
        self.outcomes.iter().filter(|o| !o.passed)
    }

    /// Tests that passed with an acceptable result other than the preferred one.
    pub fn not_preferred(&self) -> impl Iterator<Item = &TestOutcome> {
        self.outcomes.iter().filter(|o| o.passed && !o.preferred)
    }

    /// One line per test that passed with a result other than the preferred one (`NOTE`) and
    /// per failed test (`FAIL`), then `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for o in self.not_preferred() {
            let _ = writeln!(
                out,
                "NOTE {} ({}; spec {}): got {}, acceptable, {} preferred",
                o.name,
                o.scenario,
                o.spec,
                o.got,
                o.expected.first().map_or("", String::as_str)
            );
        }
        for o in self.failed() {
            let _ = write!(
                out,
                "FAIL {} ({}; spec {}): expected {}, got {}",
                o.name,
                o.scenario,
                o.spec,
                o.expected.join(" or "),
                o.got
            );
            if let Some(want) = &o.expected_explanation {
                let got = o.explanation.as_deref().unwrap_or(DEFAULT_EXPLANATION);
                let _ = write!(out, "; explanation expected {want:?}, got {got:?}");
            }
            if let Some(problem) = &o.problem {
                let _ = write!(out, " [{problem}]");
            }
            out.push('\n');
        }
        let failed = self.outcomes.len() - self.passed();
        let _ = writeln!(out, "{} passed, {failed} failed", self.passed());
        out
    }
}

/// Parses a suite file and runs every test; see the module documentation.
pub async fn run_suite(yaml: &str) -> Result<SuiteReport, SuiteError> {
    let scenarios = parse_suite(yaml)?;
    let mut report = SuiteReport::default();
    for scenario in &scenarios {
        for test in &scenario.tests {
            report.outcomes.push(run_test(scenario, test).await);
        }
    }
    Ok(report)
}

async fn run_test(scenario: &Scenario, test: &SuiteTest) -> TestOutcome {
    let domain = sender_domain(&test.mail_from, &test.helo);
    let result = check_host(
        test.host,
        domain,
        &test.mail_from,
        &test.helo,
        &scenario.zone,
    )
    .await;
    let got = result.verdict.as_str().to_owned();
    let result_ok = test.expected.iter().any(|e| e.eq_ignore_ascii_case(&got));
    let explanation_ok = test.explanation.as_ref().is_none_or(|want| {
        want.eq_ignore_ascii_case(result.explanation.as_deref().unwrap_or(DEFAULT_EXPLANATION))
    });
    TestOutcome {
        scenario: scenario.description.clone(),
        name: test.name.clone(),
        spec: test.spec.clone(),
        expected: test.expected.clone(),
        expected_explanation: test.explanation.clone(),
        explanation: result.explanation,
        problem: result.problem,
        passed: result_ok && explanation_ok,
        preferred: test
            .expected
            .first()
            .is_some_and(|e| e.eq_ignore_ascii_case(&got)),
        got,
    }
}

/// Parses a suite file into scenarios with loaded zones.
pub fn parse_suite(yaml: &str) -> Result<Vec<Scenario>, SuiteError> {
    let documents = Yaml::load_from_str(yaml)?;
    documents
        .iter()
        .enumerate()
        .filter(|(_, doc)| !doc.is_null())
        .map(|(i, doc)| {
            parse_scenario(doc).map_err(|message| SuiteError::Format {
                document: i + 1,
                message,
            })
        })
        .collect()
}

fn parse_scenario(doc: &Yaml<'_>) -> Result<Scenario, String> {
    if doc.as_mapping().is_none() {
        return Err("a scenario must be a mapping".into());
    }
    let description = doc
        .as_mapping_get("description")
        .and_then(scalar_text)
        .unwrap_or_default();
    let mut tests = Vec::new();
    if let Some(map) = doc.as_mapping_get("tests").and_then(|t| t.as_mapping()) {
        for (name, test) in map {
            let name = scalar_text(name).ok_or("a test name must be a scalar")?;
            tests.push(parse_test(&name, test).map_err(|e| format!("test {name}: {e}"))?);
        }
    }
    let mut zone = SuiteZone::default();
    if let Some(map) = doc.as_mapping_get("zonedata").and_then(|z| z.as_mapping()) {
        for (name, records) in map {
            let name = scalar_text(name).ok_or("a zone name must be a scalar")?;
            load_name(&mut zone, &name, records).map_err(|e| format!("zonedata {name}: {e}"))?;
        }
    }
    Ok(Scenario {
        description,
        tests,
        zone,
    })
}

fn parse_test(name: &str, test: &Yaml<'_>) -> Result<SuiteTest, String> {
    let field = |key: &str| test.as_mapping_get(key).and_then(scalar_text);
    let required = |key: &str| field(key).ok_or_else(|| format!("missing {key}"));
    let host = required("host")?;
    let host: IpAddr = host
        .parse()
        .map_err(|_| format!("host {host:?} is not an IP address"))?;
    let expected = match test.as_mapping_get("result") {
        Some(Yaml::Sequence(list)) => list.iter().filter_map(scalar_text).collect(),
        Some(other) => scalar_text(other).into_iter().collect(),
        None => Vec::new(),
    };
    if expected.is_empty() {
        return Err("missing result".into());
    }
    let spec = match test.as_mapping_get("spec") {
        Some(Yaml::Sequence(list)) => list
            .iter()
            .filter_map(scalar_text)
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => scalar_text(other).unwrap_or_default(),
        None => String::new(),
    };
    Ok(SuiteTest {
        name: name.to_owned(),
        spec,
        helo: required("helo")?,
        host,
        mail_from: field("mailfrom").unwrap_or_default(),
        expected,
        explanation: field("explanation"),
    })
}

/// Loads one name's record list; see the module documentation for the rules.
fn load_name(zone: &mut SuiteZone, name: &str, records: &Yaml<'_>) -> Result<(), String> {
    let key = normalise_name(name);
    let items = records.as_sequence().ok_or("records must be a list")?;
    let mut answered = HashSet::new();
    let mut has_txt = false;
    let mut spf_copies = Vec::new();
    let mut timed_out = false;
    for item in items {
        if scalar_text(item).is_some_and(|s| s == "TIMEOUT") {
            timed_out = true;
            break;
        }
        let map = item
            .as_mapping()
            .ok_or("a record must be TYPE: value or TIMEOUT")?;
        for (rtype, value) in map {
            let rtype = scalar_text(rtype).ok_or("a record type must be a scalar")?;
            let text = scalar_text(value);
            if rtype == "TXT" {
                has_txt = true;
            }
            if text.as_deref() == Some("NONE") {
                continue;
            }
            let data = if text.as_deref() == Some("TIMEOUT") {
                None
            } else {
                Some(record_data(&rtype, value)?)
            };
            let record_type = data
                .as_ref()
                .map_or_else(|| type_of_name(&rtype), |d| Ok(d.record_type()))?;
            answered.insert(record_type);
            match data {
                None => {
                    zone.type_timeouts
                        .entry(key.clone())
                        .or_default()
                        .insert(record_type);
                }
                Some(data) => {
                    if let RData::Spf(strings) = &data {
                        spf_copies.push(RData::Txt(strings.clone()));
                    }
                    zone.zone.add(&key, data);
                }
            }
        }
    }
    if timed_out {
        if answered.is_empty() {
            zone.zone.set_timeout(&key);
        } else {
            zone.answered_before_timeout.insert(key, answered);
        }
        return Ok(());
    }
    if !has_txt {
        for copy in spf_copies {
            zone.zone.add(&key, copy);
        }
    }
    Ok(())
}

fn type_of_name(rtype: &str) -> Result<RecordType, String> {
    Ok(match rtype {
        "A" => RecordType::A,
        "AAAA" => RecordType::Aaaa,
        "MX" => RecordType::Mx,
        "TXT" => RecordType::Txt,
        "SPF" => RecordType::Spf,
        "PTR" => RecordType::Ptr,
        "CNAME" => RecordType::Cname,
        other => return Err(format!("unsupported record type {other:?}")),
    })
}

fn record_data(rtype: &str, value: &Yaml<'_>) -> Result<RData, String> {
    let text = || scalar_text(value).ok_or_else(|| format!("{rtype} needs a scalar value"));
    Ok(match type_of_name(rtype)? {
        RecordType::A => {
            let t = text()?;
            RData::A(t.parse::<Ipv4Addr>().map_err(|_| format!("bad A {t:?}"))?)
        }
        RecordType::Aaaa => {
            let t = text()?;
            RData::Aaaa(
                t.parse::<Ipv6Addr>()
                    .map_err(|_| format!("bad AAAA {t:?}"))?,
            )
        }
        RecordType::Mx => {
            let pair = value.as_sequence().ok_or("MX needs [preference, name]")?;
            let [preference, exchange] = pair.as_slice() else {
                return Err("MX needs [preference, name]".into());
            };
            let preference = scalar_text(preference)
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or("bad MX preference")?;
            RData::Mx {
                preference,
                exchange: scalar_text(exchange).ok_or("bad MX name")?,
            }
        }
        RecordType::Txt => RData::Txt(txt_strings(value)?),
        RecordType::Spf => RData::Spf(txt_strings(value)?),
        RecordType::Ptr => RData::Ptr(text()?),
        RecordType::Cname => RData::Cname(text()?),
        other => return Err(format!("unsupported record type {}", other.name())),
    })
}

/// A TXT value: one string or a list of strings, as bytes.
fn txt_strings(value: &Yaml<'_>) -> Result<Vec<Vec<u8>>, String> {
    match value {
        Yaml::Sequence(list) => list
            .iter()
            .map(|s| {
                scalar_text(s)
                    .map(|s| latin1_bytes(&s))
                    .ok_or_else(|| "TXT strings must be scalars".to_owned())
            })
            .collect(),
        other => Ok(vec![latin1_bytes(
            &scalar_text(other).ok_or("TXT needs a string or a list of strings")?,
        )]),
    }
}

/// `"\x96"` in the suite is the byte 0x96: characters up to U+00FF become one byte each; any
/// other character is written in UTF-8.
fn latin1_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => out.push(b),
            Err(_) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// A scalar as text (numbers and booleans as written in canonical form, null as empty).
fn scalar_text(node: &Yaml<'_>) -> Option<String> {
    match node {
        Yaml::Value(Scalar::String(s)) => Some(s.to_string()),
        Yaml::Value(Scalar::Integer(i)) => Some(i.to_string()),
        Yaml::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        Yaml::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        Yaml::Value(Scalar::Null) => Some(String::new()),
        Yaml::Representation(s, _, _) => Some(s.to_string()),
        Yaml::Tagged(_, inner) => scalar_text(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
description: mini
tests:
  passes:
    helo: mail.example.com
    host: 192.0.2.1
    mailfrom: foo@example.com
    result: pass
  explains:
    helo: mail.example.com
    host: 192.0.2.9
    mailfrom: foo@example.com
    result: [fail, softfail]
    explanation: nope foo
  wrong-on-purpose:
    helo: mail.example.com
    host: 192.0.2.9
    mailfrom: foo@example.com
    result: pass
zonedata:
  example.com:
    - SPF: v=spf1 ip4:192.0.2.1 -all exp=exp.example.com
  exp.example.com:
    - TXT: "nope %{l}"
---
description: second
tests:
  timeout:
    helo: mail.example.com
    host: 192.0.2.1
    mailfrom: foo@slow.example.com
    result: temperror
  bytes:
    helo: mail.example.com
    host: 192.0.2.1
    mailfrom: foo@hosed.example.com
    result: permerror
zonedata:
  slow.example.com:
    - TIMEOUT
  hosed.example.com:
    - SPF: "v=spf1 \x80a -all"
"#;

    #[tokio::test]
    async fn runs_a_small_suite_and_renders() {
        let report = run_suite(MINI).await.unwrap();
        assert_eq!(report.outcomes.len(), 5);
        assert_eq!(report.passed(), 4);
        let failed: Vec<_> = report.failed().map(|o| o.name.as_str()).collect();
        assert_eq!(failed, ["wrong-on-purpose"]);
        let text = report.render();
        assert!(text.starts_with("FAIL wrong-on-purpose (mini; spec ): expected pass, got fail"));
        assert_eq!(text.lines().last(), Some("4 passed, 1 failed"));
    }

    #[test]
    fn zone_rules_of_the_reference_driver() {
        let yaml = r#"
description: z
tests: {}
zonedata:
  copy.example:
    - SPF: v=spf1 -all
  nocopy.example:
    - SPF: v=spf1 -all
    - TXT: NONE
  partial.example:
    - TXT: v=spf1 -all
    - TIMEOUT
  bin.example:
    - TXT: "\xEF\xBB\xBF"
"#;
        let scenarios = parse_suite(yaml).unwrap();
        let z = &scenarios[0].zone;
        let txt = |n: &str| z.zone().answer(n, RecordType::Txt).unwrap().records.len();
        assert_eq!(txt("copy.example"), 1);
        assert_eq!(txt("nocopy.example"), 0);
        assert_eq!(txt("partial.example"), 1);
        assert!(z.answered_before_timeout["partial.example"].contains(&RecordType::Txt));
        let bin = z.zone().answer("bin.example", RecordType::Txt).unwrap();
        assert_eq!(
            bin.records[0].data,
            RData::Txt(vec![vec![0xef, 0xbb, 0xbf]])
        );
        assert!(matches!(
            parse_suite("tests: {}\nzonedata:\n  x:\n    - BOGUS: 1\n"),
            Err(SuiteError::Format { document: 1, .. })
        ));
        assert!(matches!(parse_suite("a: [b"), Err(SuiteError::Yaml(_))));
    }
}
