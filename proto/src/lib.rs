//! The `mailpulse.v1` gRPC contract (`proto/mailpulse/v1/agent.proto`).
//!
//! The Rust code in `src/gen/` is generated with `protox` + `tonic-prost-build` and committed, so
//! building needs no `protoc`; `tests/generated.rs` regenerates it and fails when it is stale
//! (`REGENERATE_PROTO=1 cargo test -p mailpulse-proto` rewrites it).

pub mod actions;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!("gen/mailpulse.v1.rs");
}
