//! Outgoing HTTP/1.1 requests: citizen report callbacks ([`crate::reports::callbacks`]) and
//! requests forwarded to another node of the fleet ([`crate::fleet::forward`]). One new
//! connection per request; TLS with the system's trusted CAs.

use std::sync::{Arc, OnceLock};

use axum::http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;

/// Sends `request` to `host:port` over a new connection (TLS when `https`). The answer's body
/// streams from the connection, which is driven in the background until the body has been
/// read or dropped.
pub(crate) async fn send(
    host: &str,
    port: u16,
    https: bool,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if https {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host} is not a TLS name: {e}"))?;
        let tls = tls_connector()?
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(TokioIo::new(tls), request).await
    } else {
        exchange(TokioIo::new(tcp), request).await
    }
}

async fn exchange<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))
}

/// TLS with the system's trusted CAs (ring, like the MQTT sink), built once.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A certificate the system has but rustls cannot read is skipped.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no trusted CA certificates on this system".to_string());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map(tokio_rustls::TlsConnector::from)
}
