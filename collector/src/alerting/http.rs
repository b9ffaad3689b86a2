//! A small HTTP/1.1 client for notifications: one POST of a JSON body per connection, over
//! plain TCP or TLS (system roots, or a CA file), bounded in time and in the answer it reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Most bytes of an answer read (the rest is ignored).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {0:?}: {1}")]
    Url(String, String),
    #[error("TLS set-up: {0}")]
    TlsSetup(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// TLS options of an `https` endpoint, as Prometheus' `tls_config` has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// CA certificates (PEM) the server is checked against; default: the system roots.
    #[serde(default)]
    pub ca_path: Option<PathBuf>,
    /// A client certificate chain (PEM) to present, with its private key (PEM, PKCS#8, PKCS#1
    /// or SEC1): for receivers that require mutual TLS.
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    #[serde(default)]
    pub key_path: Option<PathBuf>,
    /// The name the server's certificate must carry; default: the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Where requests go: scheme, host, port and path of one URL.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    path: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.url).finish()
    }
}

/// The answer: status and (the first 64 KiB of) the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Endpoint {
    /// An endpoint for `url` (`http://` or `https://`); `https` checks the server against the
    /// system roots, or against `tls.ca_path` (PEM) when given, and presents `tls.cert_path`
    /// when given.
    pub fn new(url: &str, tls: &TlsOptions, timeout: Duration) -> Result<Self, HttpError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url(url.into(), e.to_string()))?;
        let bad = |why: &str| HttpError::Url(url.into(), why.into());
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let tls = if https {
            let name = tls.server_name.clone().unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(name.clone())
                .map_err(|e| HttpError::TlsSetup(format!("server name {name:?}: {e}")))?;
            Some((connector(tls)?, name))
        } else {
            if tls.cert_path.is_some() || tls.ca_path.is_some() {
                return Err(bad("TLS options need an https URL"));
            }
            None
        };
        Ok(Endpoint {
            url: url.to_owned(),
            host,
            port,
            path,
            tls,
            timeout,
        })
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This endpoint with `suffix` appended to its path.
    pub fn join(&self, suffix: &str) -> Self {
        let mut joined = self.clone();
        joined.path = format!("{}{}", self.path.trim_end_matches('/'), suffix);
        joined.url = format!("{}{}", self.url.trim_end_matches('/'), suffix);
        joined
    }

    /// POSTs `body` as JSON with `headers`; the whole exchange within the timeout.
    pub async fn post_json(
        &self,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, HttpError> {
        tokio::time::timeout(self.timeout, self.send(true, headers, body, true))
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }

    /// POSTs `body` as `content_type` with `headers`; the whole exchange within the timeout.
    pub async fn post(
        &self,
        content_type: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, HttpError> {
        let mut all = vec![("Content-Type", content_type.to_owned())];
        all.extend(headers.iter().cloned());
        tokio::time::timeout(self.timeout, self.send(false, &all, body, true))
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }

    /// GETs the endpoint; the whole exchange within the timeout.
    pub async fn get(&self) -> Result<Answer, HttpError> {
        tokio::time::timeout(self.timeout, self.send(false, &[], Bytes::new(), false))
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }

    /// `json`: a JSON body (Content-Type set here); `post`: POST rather than GET.
    async fn send(
        &self,
        json: bool,
        headers: &[(&str, String)],
        body: Bytes,
        post: bool,
    ) -> Result<Answer, HttpError> {
        let address = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| HttpError::Connect(address.clone(), e.to_string()))?;
        match &self.tls {
            None => {
                self.exchange(TokioIo::new(tcp), post, json, headers, body)
                    .await
            }
            Some((tls, name)) => {
                let stream = tls
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| HttpError::Tls(address.clone(), e.to_string()))?;
                self.exchange(TokioIo::new(stream), post, json, headers, body)
                    .await
            }
        }
    }

    async fn exchange<T>(
        &self,
        io: TokioIo<T>,
        post: bool,
        json: bool,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, HttpError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let http = |e: hyper::Error| HttpError::Http(e.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(http)?;
        let driver = tokio::spawn(connection);
        let host = if (self.tls.is_some() && self.port == 443)
            || (self.tls.is_none() && self.port == 80)
        {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let method = if post {
            hyper::Method::POST
        } else {
            hyper::Method::GET
        };
        let mut request = Request::builder()
            .method(method)
            .uri(self.path.as_str())
            .header(HOST, host)
            .header(USER_AGENT, concat!("mailpulse/", env!("CARGO_PKG_VERSION")))
            .header(CONNECTION, "close");
        if json {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| HttpError::Http(e.to_string()))?;
        let result = async {
            let response = sender.send_request(request).await.map_err(http)?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            Ok(Answer { status, body })
        }
        .await;
        driver.abort();
        result
    }
}

fn connector(options: &TlsOptions) -> Result<TlsConnector, HttpError> {
    let mut roots = RootCertStore::empty();
    match options.ca_path.as_deref() {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| HttpError::TlsSetup(format!("{}: {e}", path.display())))?;
            for cert in pem_certificates(&pem) {
                roots
                    .add(cert)
                    .map_err(|e| HttpError::TlsSetup(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(HttpError::TlsSetup(format!(
                    "{}: no certificate",
                    path.display()
                )));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HttpError::TlsSetup(e.to_string()))?
    .with_root_certificates(roots);
    let config = match (&options.cert_path, &options.key_path) {
        (None, None) => config.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let (chain, key) = client_identity(cert, key)?;
            config
                .with_client_auth_cert(chain, key)
                .map_err(|e| HttpError::TlsSetup(format!("{}: {e}", cert.display())))?
        }
        _ => {
            return Err(HttpError::TlsSetup(
                "cert_path and key_path go together".into(),
            ));
        }
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

type Identity = (
    Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
    tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
);

/// The client certificate chain and its key, from PEM files.
fn client_identity(cert: &Path, key: &Path) -> Result<Identity, HttpError> {
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| HttpError::TlsSetup(format!("{}: {e}", path.display())))
    };
    let chain = pem_certificates(&read(cert)?);
    if chain.is_empty() {
        return Err(HttpError::TlsSetup(format!(
            "{}: no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| HttpError::TlsSetup(format!("{}: no private key ({e})", key.display())))?;
    Ok((chain, key))
}

/// The certificates of a PEM text.
fn pem_certificates(pem: &[u8]) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_joined() {
        let none = TlsOptions::default();
        let e = Endpoint::new("http://127.0.0.1:9093/", &none, Duration::from_secs(1)).unwrap();
        let alerts = e.join("/api/v2/alerts");
        assert_eq!(alerts.url(), "http://127.0.0.1:9093/api/v2/alerts");
        assert_eq!(alerts.path, "/api/v2/alerts");
        assert_eq!((alerts.host.as_str(), alerts.port), ("127.0.0.1", 9093));
        assert!(Endpoint::new("ftp://x/", &none, Duration::from_secs(1)).is_err());
        assert!(Endpoint::new("not a url", &none, Duration::from_secs(1)).is_err());
        let hook = Endpoint::new("http://[::1]/hook?x=1", &none, Duration::from_secs(1)).unwrap();
        assert_eq!(
            (hook.host.as_str(), hook.port, hook.path.as_str()),
            ("::1", 80, "/hook?x=1")
        );
        let half = TlsOptions {
            cert_path: Some("/nonexistent/cert.pem".into()),
            ..TlsOptions::default()
        };
        let err = Endpoint::new("https://127.0.0.1/", &half, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
        let err = Endpoint::new("http://127.0.0.1/", &half, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }
}
