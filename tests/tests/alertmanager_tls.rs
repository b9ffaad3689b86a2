//! Mutual TLS to Alertmanager: a real prometheus-alertmanager (Debian 0.25) serves its API over
//! TLS and requires a client certificate from the test CA (`--web.config.file`). The collector,
//! configured with the CA, its client certificate and key, pushes an alert (a blocklisted
//! sending IP an agent reports) that the Alertmanager lists; a client without a certificate is
//! refused at the handshake.

#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpulse_collector::alerting::http::{Endpoint, TlsOptions};
use mailpulse_collector::alerting::notify::AlertmanagerTarget;
use mailpulse_proto::v1::{Sample, sample};
use mailpulse_tests::alertmanager;
use mailpulse_tests::net::{free_port, loopback};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use serde_json::Value;

use support::*;

/// Writes ca.pem, server.pem/key (127.0.0.1) and client.pem/key, all from one test CA.
fn write_pki(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailpulse test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let leaf = |names: Vec<String>, usage, file: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).expect("cert");
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).expect("write");
    };
    leaf(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    leaf(
        vec!["collector".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
}

/// An Alertmanager on `port` that requires a client certificate of the test CA.
struct TlsAlertmanager(Child);

impl Drop for TlsAlertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_alertmanager(dir: &Path, port: u16) -> TlsAlertmanager {
    std::fs::write(
        dir.join("alertmanager.yml"),
        "route:\n  receiver: test\nreceivers:\n  - name: test\n",
    )
    .expect("config");
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {d}/server.pem\n  key_file: {d}/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {d}/ca.pem\n",
            d = dir.display()
        ),
    )
    .expect("web config");
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    let log = std::fs::File::create(dir.join("alertmanager.log")).expect("log");
    let child = Command::new("prometheus-alertmanager")
        .arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!(
            "--web.config.file={}",
            dir.join("web.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={}", loopback(port)))
        .arg("--cluster.listen-address=")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("run prometheus-alertmanager");
    TlsAlertmanager(child)
}

fn options(dir: &Path, with_cert: bool) -> TlsOptions {
    TlsOptions {
        ca_path: Some(dir.join("ca.pem")),
        cert_path: with_cert.then(|| dir.join("client.pem")),
        key_path: with_cert.then(|| dir.join("client.key")),
        server_name: None,
    }
}

async fn get(url: &str, tls: &TlsOptions) -> Result<(u16, String), String> {
    Endpoint::new(url, tls, Duration::from_secs(2))
        .map_err(|e| e.to_string())?
        .get()
        .await
        .map(|a| (a.status, a.body))
        .map_err(|e| e.to_string())
}

fn listed(window_ms: i64) -> Sample {
    Sample {
        metric: "dnsbl_listed".into(),
        labels: labels(&[("ip", "192.0.2.7"), ("list", "bl.spamcop.net")]),
        window_start_unix_ms: window_ms,
        window_secs: 1,
        value: Some(sample::Value::Gauge(1.0)),
    }
}

#[tokio::test]
async fn the_collector_pushes_to_an_alertmanager_that_requires_client_certificates() {
    assert!(
        alertmanager::available(),
        "install the Debian prometheus-alertmanager package"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    write_pki(dir.path());
    let port = free_port();
    let _am = start_alertmanager(dir.path(), port);
    let url = format!("https://127.0.0.1:{port}");
    let with_cert = options(dir.path(), true);
    let mut ready = false;
    for _ in 0..100 {
        if get(&format!("{url}/-/ready"), &with_cert)
            .await
            .is_ok_and(|(s, _)| s == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "Alertmanager not ready over mTLS: {}",
        std::fs::read_to_string(dir.path().join("alertmanager.log")).unwrap_or_default()
    );
    let refused = get(&format!("{url}/-/ready"), &options(dir.path(), false)).await;
    assert!(
        refused.is_err(),
        "no client certificate, no answer: {refused:?}"
    );

    let store = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(store.path());
    cfg.store.resolution_secs = 1;
    cfg.store.fold_interval_secs = 1;
    cfg.detect.interval_secs = 1;
    cfg.detect.settle_secs = 0;
    cfg.alerting.resend_interval_secs = 1;
    cfg.alerting.alertmanagers = vec![AlertmanagerTarget {
        tls: with_cert.clone(),
        timeout_secs: 2,
        ..AlertmanagerTarget::at(url.as_str())
    }];
    let collector = start(cfg).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    agent
        .batch(1, vec![listed(now_ms / 1000 * 1000)])
        .await
        .expect("ack");
    let mut found: Option<Value> = None;
    for _ in 0..60 {
        if let Ok((200, body)) = get(&format!("{url}/api/v2/alerts"), &with_cert).await {
            let alerts: Vec<Value> = serde_json::from_str(&body).expect("JSON");
            if let Some(a) = alerts
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "dnsbl_listed")
            {
                found = Some(a);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let alert = found.expect("the alert reached the mTLS Alertmanager");
    assert_eq!(alert["labels"]["ip"], "192.0.2.7", "{alert}");
    assert_eq!(alert["labels"]["host"], "mx1.example", "{alert}");
    collector.shutdown().await.expect("clean shutdown");
}
