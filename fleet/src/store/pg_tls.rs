//! TLS for the PostgreSQL connection (`database.sslmode = "verify-full"`): the `postgres`
//! crate's `MakeTlsConnect`/`TlsConnect` over `tokio-rustls`, with the rustls client
//! configuration the settings built from `database.sslrootcert` (ring provider, the same
//! loader as the MQTT side). rustls checks both that the server's certificate chains to that
//! CA and that it names the host of the URL (an IP address in the URL must be in the
//! certificate as an IP address).
//!
//! No channel binding (`SCRAM-SHA-256-PLUS`) is offered: password logins use plain
//! SCRAM-SHA-256, which is sound here because the server's identity is already verified.

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `sslmode = "verify-full"`: the CA file (for messages) and the client configuration
/// trusting only it.
#[derive(Clone)]
pub struct PgTls {
    pub ca_file: PathBuf,
    pub config: Arc<rustls::ClientConfig>,
}

impl PartialEq for PgTls {
    fn eq(&self, other: &PgTls) -> bool {
        self.ca_file == other.ca_file
    }
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "verify-full against {}", self.ca_file.display())
    }
}

/// Makes one [`RustlsConnect`] per host the `postgres` crate connects to.
#[derive(Clone)]
pub struct MakeRustlsConnect(pub Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.0.clone()),
            name: ServerName::try_from(host)?.to_owned(),
        })
    }
}

/// The TLS handshake with one host, checked against its name.
pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// An established TLS connection to the server.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// What to check when the TLS connection to `host` failed with `error` (the `postgres`
/// crate's error, whose source is the handshake's).
pub fn hint(error: &postgres::Error, host: &str, ca_file: &std::path::Path) -> String {
    let ca = ca_file.display();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        // The handshake's rustls error comes wrapped in an io::Error, whose `source()` skips it.
        let inner = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(c)) =
            inner.or_else(|| e.downcast_ref::<rustls::Error>())
        {
            use rustls::CertificateError as C;
            return match c {
                C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                    "the server's certificate does not name {host}: connect to a name or address the certificate lists (its subjectAltName), or give the server a certificate for {host}"
                ),
                C::UnknownIssuer | C::BadSignature | C::UnknownRevocationStatus => format!(
                    "the server's certificate for {host} is not signed by the CA in database.sslrootcert {ca}: give the CA that signed the server's ssl_cert_file"
                ),
                C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => format!(
                    "the server's certificate for {host} is outside its validity period (or this machine's clock is wrong)"
                ),
                _ => format!(
                    "the server's certificate for {host} was refused when checked against database.sslrootcert {ca}"
                ),
            };
        }
        if e.to_string().contains("server does not support TLS") {
            return format!(
                "the server at {host} has TLS off: set ssl = on with ssl_cert_file and ssl_key_file in its postgresql.conf (or, on a trusted network only, database.sslmode = \"disable\")"
            );
        }
        if e.to_string().contains("no hostname provided") {
            return format!(
                "the URL gives only an address ({host}); verify-full checks the certificate against a host name: add host=NAME (hostaddr= may stay)"
            );
        }
        source = e.source();
    }
    format!(
        "a TLS connection to {host} checked against database.sslrootcert {ca} failed: is PostgreSQL running there with ssl = on?"
    )
}
