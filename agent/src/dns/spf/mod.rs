//! SPF (RFC 7208): record parsing, `check_host()`, a record linter and the RFC 7208 test-suite
//! runner.
//!
//! Why here: a mail host's deliverability depends on its domains' SPF policies, and the most
//! common breakage is not a wrong address but a policy that silently stopped evaluating (an
//! eleventh DNS lookup added by a vendor's include, an include that vanished). The evaluator
//! answers "would this client pass?"; the linter answers "will this policy keep working?".
//!
//! Map:
//! - [`record`]: text → [`SpfRecord`] (typed terms, syntax errors with a column);
//! - [`macros`]: `%{…}` macro strings, parsed with the record and expanded per check;
//! - [`eval`]: [`check_host`] over any [`Resolve`](crate::dns::Resolve), with the RFC's
//!   processing limits and a trace of every lookup;
//! - [`mod@lint`]: [`lint()`] walks a domain's include tree and reports
//!   [`Finding`](crate::dns::finding::Finding)s, the shape every DNS check reports in;
//! - [`suite`]: runs the official YAML test suite against an in-memory zone.
//!
//! Architecture invariant: evaluation is bounded whatever DNS returns: at most
//! [`MAX_DNS_TERMS`] include/a/mx/ptr/exists/redirect terms (so recursion is at most that
//! deep), [`MAX_VOID_LOOKUPS`] empty answers, [`MAX_MX_NAMES`] MX and [`MAX_PTR_NAMES`] PTR
//! names per mechanism; parsing and macro expansion never panic on hostile text.

pub mod eval;
pub mod lint;
pub mod macros;
pub mod record;
pub mod suite;

pub use eval::{
    CheckOptions, LookupOutcome, LookupTrace, MAX_DNS_TERMS, MAX_MX_NAMES, MAX_PTR_NAMES,
    MAX_VOID_LOOKUPS, SpfResult, Verdict, check_host, check_host_with, sender_domain,
};
pub use lint::lint;
pub use macros::{MacroError, MacroString, MacroSyntax, MacroVars};
pub use record::{
    Directive, DualCidr, Mechanism, Modifier, ParseError, Qualifier, SpfRecord, Term, TermKind,
};
pub use suite::{SuiteError, SuiteReport, TestOutcome, run_suite};
