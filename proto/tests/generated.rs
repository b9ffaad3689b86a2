//! The committed generated code must be what the .proto file generates today.

use std::path::Path;

fn generate(out_dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([root.join("mailpulse/v1/agent.proto")], [root])
        .expect("agent.proto compiles");
    tonic_prost_build::configure()
        .out_dir(out_dir)
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("code generation succeeds");
}

#[test]
fn committed_code_is_current() {
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen/mailpulse.v1.rs");
    let dir = tempfile::tempdir().expect("temp dir");
    generate(dir.path());
    let fresh =
        std::fs::read_to_string(dir.path().join("mailpulse.v1.rs")).expect("generated file");
    if std::env::var_os("REGENERATE_PROTO").is_some() {
        std::fs::write(&committed_path, &fresh).expect("write generated code");
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "proto/src/gen/mailpulse.v1.rs is stale: run `REGENERATE_PROTO=1 cargo test -p mailpulse-proto` and commit"
    );
}
