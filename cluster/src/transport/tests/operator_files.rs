//! Certificates supplied by the operator as PEM files (`CLUSTER_TLS_*`): nodes of the CA
//! talk; a foreign CA, a certificate without `clientAuth`, a wrong server name and a node
//! that derives its CA from a secret are refused.

use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use super::*;

const NAME: &str = "lark-test";

/// A scratch folder removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lark-cluster-tls-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write_pem(&self, file: &str, label: &str, der: &[u8]) -> PathBuf {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap()).collect();
        let path = self.0.join(file);
        std::fs::write(&path, format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n")))
            .unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            eprintln!("cannot remove {}: {err}", self.0.display());
        }
    }
}

/// A CA (ECDSA P-256, as an operator would make with openssl), written as `<name>.pem`.
fn ca(scratch: &Scratch, name: &str) -> (Issuer<'static, KeyPair>, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let cert = params.self_signed(&key).unwrap();
    let path = scratch.write_pem(&format!("{name}.pem"), "CERTIFICATE", cert.der());
    (Issuer::new(params, key), path)
}

/// A node certificate and key signed by `issuer`, as `TlsFiles` trusting `ca`.
fn node(
    scratch: &Scratch,
    name: &str,
    issuer: &Issuer<'static, KeyPair>,
    ca: &Path,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> TlsFiles {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![NAME.to_owned()]).unwrap();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, issuer).unwrap();
    TlsFiles {
        ca: ca.to_owned(),
        cert: scratch.write_pem(&format!("{name}.pem"), "CERTIFICATE", cert.der()),
        key: scratch.write_pem(&format!("{name}.key"), "PRIVATE KEY", &key.serialize_der()),
    }
}

fn both() -> Vec<ExtendedKeyUsagePurpose> {
    vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
}

fn security(files: &TlsFiles, server_name: &str) -> Security {
    Security::Tls(ClusterTls::from_files(files, server_name).unwrap())
}

async fn refused(client: Security, addr: &str) {
    let (client, _) = client_with(client);
    let err = client.call(addr, Service::Actors, vec![1], WAIT).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable(..)), "{err:?}");
}

#[tokio::test]
async fn nodes_of_the_operators_ca_talk_and_everyone_else_is_refused() {
    let scratch = Scratch::new();
    let (issuer, ca_path) = ca(&scratch, "cluster-ca");
    let (foreign, _) = ca(&scratch, "foreign-ca");
    let (_server, addr, _) = server_with(security(&node(&scratch, "a", &issuer, &ca_path, both()), NAME)).await;

    let (friend, _) = client_with(security(&node(&scratch, "b", &issuer, &ca_path, both()), NAME));
    assert_eq!(friend.call(&addr, Service::Actors, vec![1, 2], WAIT).await.unwrap(), vec![2, 1]);

    // Trusts our CA, but its own certificate comes from another.
    refused(security(&node(&scratch, "intruder", &foreign, &ca_path, both()), NAME), &addr).await;
    // Our CA, but only good for serving: it cannot dial.
    let server_only = node(&scratch, "server-only", &issuer, &ca_path, vec![ExtendedKeyUsagePurpose::ServerAuth]);
    refused(security(&server_only, NAME), &addr).await;
    // Expects another name than the server's certificate carries.
    refused(security(&node(&scratch, "c", &issuer, &ca_path, both()), "other-name"), &addr).await;
    // A node that derives its CA from a secret is of another cluster.
    refused(tls("s3cret"), &addr).await;
}

#[test]
fn unreadable_or_empty_files_are_configuration_errors() {
    let scratch = Scratch::new();
    let (issuer, ca_path) = ca(&scratch, "cluster-ca");
    let mut files = node(&scratch, "a", &issuer, &ca_path, both());
    files.key = scratch.0.join("missing.key");
    assert!(matches!(ClusterTls::from_files(&files, NAME), Err(TlsError::Read { .. })));
    let mut files = node(&scratch, "b", &issuer, &ca_path, both());
    files.ca = scratch.0.join("empty.pem");
    std::fs::write(&files.ca, "").unwrap();
    assert!(matches!(ClusterTls::from_files(&files, NAME), Err(TlsError::NoCertificate { .. })));
}
