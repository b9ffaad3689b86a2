//! Collector integration tests: in-process collector on 127.0.0.1, real gRPC clients.

mod advice;
mod alerting;
mod analyze;
mod connections;
mod dns;
mod expose;
mod ingest;
mod limits;
mod refusal;
mod store;
mod support;
mod tls;
