//! Mutual TLS 1.3 on the cluster port (rustls with ring).
//!
//! Both ends present a certificate and both verify the other's against the cluster CA: the
//! acceptor with a webpki client verifier (chain to the CA, `clientAuth`), the dialler with
//! a root store holding only the CA (chain, `serverAuth`, the name
//! [`DEFAULT_SERVER_NAME`] or the operator's). The CA comes from the cluster secret
//! ([`ClusterTls::from_secret`]) or from PEM files ([`ClusterTls::from_files`]).
//!
//! Resumption and early data are off: links live long, so a full handshake per connection
//! costs nothing that matters, and without them there is no state a replay could reuse.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::ca::{self, Certified};
use super::link::{HandshakeError, Link};

/// The name node certificates carry and diallers expect, unless the operator says otherwise.
pub const DEFAULT_SERVER_NAME: &str = "lark-node";

/// The protocol named in the TLS handshake (ALPN): both ends must speak this version.
const ALPN_PROTOCOL: &[u8] = b"lark-cluster/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the cluster certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bad pem in {path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("bad cluster tls server name {0:?}")]
    ServerName(String),
    #[error("cluster tls setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cluster tls client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Operator-supplied PEM files (`CLUSTER_TLS_CA`, `CLUSTER_TLS_CERT`, `CLUSTER_TLS_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA (or CAs) whose certificates are accepted from peers.
    pub ca: PathBuf,
    /// This node's certificate, then any intermediates.
    pub cert: PathBuf,
    /// This node's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The TLS side of the cluster port, both as acceptor and as dialler.
#[derive(Clone)]
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// The CA derived from the cluster secret and a fresh certificate for this run: whoever
    /// knows the secret can join, nobody else can.
    pub fn from_secret(secret: &str) -> Result<Self, TlsError> {
        let (ca, leaf) = ca::derive(secret, DEFAULT_SERVER_NAME)?;
        Self::new(vec![ca], leaf, DEFAULT_SERVER_NAME)
    }

    /// Certificates made by the operator; peers must present a certificate of `files.ca`
    /// valid for `server_name` (and for client authentication, as they also dial).
    pub fn from_files(files: &TlsFiles, server_name: &str) -> Result<Self, TlsError> {
        let roots = certificates(&files.ca)?;
        let chain = certificates(&files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
            .map_err(|err| TlsError::Pem { path: files.key.clone(), reason: err.to_string() })?;
        Self::new(roots, Certified { chain, key }, server_name)
    }

    fn new(roots: Vec<CertificateDer<'static>>, own: Certified, server_name: &str) -> Result<Self, TlsError> {
        let server_name =
            ServerName::try_from(server_name.to_owned()).map_err(|_| TlsError::ServerName(server_name.to_owned()))?;
        let provider = Arc::new(provider());
        let mut root_store = RootCertStore::empty();
        for root in roots {
            root_store.add(root)?;
        }
        let root_store = Arc::new(root_store);

        let verifier = WebPkiClientVerifier::builder_with_provider(root_store.clone(), provider.clone()).build()?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(own.chain.clone(), own.key.clone_key())?;
        server.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(root_store)
            .with_client_auth_cert(own.chain, own.key)?;
        client.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
        client.resumption = Resumption::disabled();

        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    async fn accept(&self, tcp: TcpStream) -> Result<Link, HandshakeError> {
        let stream = self.acceptor.accept(tcp).await.map_err(HandshakeError::Tls)?;
        // A client that offers no ALPN gets through rustls without one: refuse it here.
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_PROTOCOL) {
            return Err(HandshakeError::Protocol);
        }
        Ok(Box::new(stream))
    }

    async fn connect(&self, tcp: TcpStream) -> Result<Link, HandshakeError> {
        let stream = self.connector.connect(self.server_name.clone(), tcp).await.map_err(HandshakeError::Tls)?;
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_PROTOCOL) {
            return Err(HandshakeError::Protocol);
        }
        Ok(Box::new(stream))
    }

    #[cfg(test)]
    pub(super) fn connector(&self) -> (&TlsConnector, &ServerName<'static>) {
        (&self.connector, &self.server_name)
    }
}

/// A dialler that trusts `roots` and presents no certificate (what an outsider can do).
#[cfg(test)]
pub(super) fn connector_without_certificate(roots: Vec<CertificateDer<'static>>) -> TlsConnector {
    let mut root_store = RootCertStore::empty();
    for root in roots {
        root_store.add(root).unwrap();
    }
    let mut client = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(root_store)
        .with_no_client_auth();
    client.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
    TlsConnector::from(Arc::new(client))
}

/// ring, as rustls already uses in this workspace; TLS 1.3 is chosen per config.
fn provider() -> CryptoProvider {
    ring::default_provider()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem { path: path.to_owned(), reason: err.to_string() })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certificates)
}

/// How connections are secured.
pub(super) enum Security {
    Tls(ClusterTls),
    /// Plain TCP, only to measure what TLS costs (never in a build outside this crate's tests).
    #[cfg(test)]
    Plaintext,
}

impl Security {
    pub(super) async fn accept(&self, tcp: TcpStream) -> Result<Link, HandshakeError> {
        match self {
            Security::Tls(tls) => tls.accept(tcp).await,
            #[cfg(test)]
            Security::Plaintext => Ok(Box::new(tcp)),
        }
    }

    pub(super) async fn connect(&self, tcp: TcpStream) -> Result<Link, HandshakeError> {
        match self {
            Security::Tls(tls) => tls.connect(tcp).await,
            #[cfg(test)]
            Security::Plaintext => Ok(Box::new(tcp)),
        }
    }
}
