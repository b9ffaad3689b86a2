//! Collector integration tests: in-process collector on 127.0.0.1, real gRPC clients.

mod expose;
mod ingest;
mod store;
mod support;
mod tls;
