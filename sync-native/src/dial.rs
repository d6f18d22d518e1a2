//! Opening a TCP connection to a relay's host, shared by the WebSocket
//! [`crate::connector`] and the NIP-11 fetch in [`crate::relay_info`].
//!
//! Why it is its own module: both must enforce the relay-URL safety rule a
//! second time, on resolved addresses (an announcement can name a
//! public-looking hostname that resolves to 127.0.0.1 or 10.x, which the URL
//! check alone cannot see), and both must then dial only an address that was
//! checked (no second lookup a rebinding DNS server could answer
//! differently). Keeping that in one place, with the TLS configuration both
//! use, means the two paths cannot drift apart, and neither imports the
//! other.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use sync_core::relay_url::is_public_ip;
use sync_core::{RelayUrl, TransportError};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Where a relay URL points: bare host (no IPv6 brackets), port, TLS or not.
pub struct Target {
    /// Host name or IP literal.
    pub host: String,
    /// Port (the scheme's default when the URL has none).
    pub port: u16,
    /// `wss://`: TLS over the TCP connection.
    pub tls: bool,
}

impl Target {
    /// The target of a (normalised) relay URL.
    pub fn of(relay: &RelayUrl) -> Result<Self, TransportError> {
        let url = url::Url::parse(relay.as_str()).map_err(|e| TransportError(format!("invalid url: {e}")))?;
        let tls = url.scheme() == "wss";
        let host = url.host_str().ok_or_else(|| TransportError("url has no host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { host, port, tls })
    }

    /// SNI / certificate name: the host name (or IP literal) from the URL.
    pub fn server_name(&self) -> Result<rustls_pki_types::ServerName<'static>, TransportError> {
        rustls_pki_types::ServerName::try_from(self.host.clone()).map_err(|e| TransportError(format!("bad TLS name {}: {e}", self.host)))
    }
}

/// TCP to `target`: its host resolved once ([`resolve_checked`]), then one
/// of the addresses that passed the check ([`dial`]).
pub async fn connect_checked(target: &Target, allow_private: bool, deadline: Instant) -> Result<TcpStream, TransportError> {
    let addrs = resolve_checked(&target.host, target.port, allow_private).await?;
    dial(&addrs, deadline).await
}

/// Resolves `host` once and returns the addresses that may be dialled, in
/// resolver order. Unless `allow_private`, a host with any non-public address
/// is refused outright (a name mixing public and private answers is hostile).
pub async fn resolve_checked(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, TransportError> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| TransportError(format!("cannot resolve {host}: {e}")))?.collect();
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| !is_public_ip(a.ip())) {
            return Err(TransportError(format!("refusing {host}: resolves to non-public address {}", bad.ip())));
        }
    }
    if addrs.is_empty() {
        return Err(TransportError(format!("{host} has no address")));
    }
    Ok(addrs)
}

/// Opens TCP to the first of `addrs` that accepts, trying them in order and
/// sharing the time left before `deadline` among the remaining ones (so one
/// black-holed address does not use it all). Never dials anything else.
pub async fn dial(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, TransportError> {
    let mut last = TransportError("no address to connect to".into());
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match tokio::time::timeout(budget, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                // small request frames should leave at once
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => last = TransportError(format!("connect {addr}: {e}")),
            Err(_) => last = TransportError(format!("connect {addr}: timed out")),
        }
    }
    Err(last)
}

/// rustls with the webpki roots, shared by the WebSocket and NIP-11 paths.
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = tokio_rustls::rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(Arc::clone(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn hostname_resolving_to_loopback_is_refused() {
        let err = resolve_checked("localhost", 9, false).await.unwrap_err();
        assert!(err.0.contains("non-public"), "{err}");
        assert!(resolve_checked("10.1.2.3", 9, false).await.is_err());
        assert!(resolve_checked("::ffff:127.0.0.1", 9, false).await.is_err());
        // allowed: the loopback addresses it resolved to, with the port, are what will be dialled
        let addrs = resolve_checked("localhost", 9, true).await.unwrap();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9), "{addrs:?}");
        assert_eq!(resolve_checked("8.8.8.8", 443, false).await.unwrap(), vec!["8.8.8.8:443".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn dial_connects_to_a_given_address_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = listener.local_addr().unwrap();
        // a closed port first: dial moves on to the next checked address, never elsewhere
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let tcp = dial(&[closed, good], Instant::now() + Duration::from_secs(2)).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), good);
        assert!(dial(&[closed], Instant::now() + Duration::from_secs(2)).await.is_err());
        assert!(dial(&[], Instant::now() + Duration::from_secs(2)).await.is_err());
    }
}
