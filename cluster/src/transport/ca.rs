//! The cluster CA derived from `CLUSTER_SECRET`, and a certificate for each run of a node.
//!
//! The CA's Ed25519 key is `HMAC-SHA256(secret, "lark cluster ca v1")` used as the seed, so
//! every node that knows the secret computes the same CA (with fixed fields and Ed25519's
//! deterministic signatures, the very same certificate) and nobody else can sign for it.
//! Each start draws a fresh leaf key that never leaves the process's memory and has it
//! signed by that CA.

use hmac::{Hmac, Mac};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ED25519,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::Sha256;

/// Domain separation: the secret keys other things too (nothing else may derive this seed).
const CA_SEED_LABEL: &[u8] = b"lark cluster ca v1";

/// PKCS#8 v1 (RFC 8410) of an Ed25519 private key, up to the 32-byte seed that follows:
/// SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A certificate and its key, as rustls takes them.
pub(super) struct Certified {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The derived CA certificate (the trust anchor) and a fresh leaf for this run, valid
/// for `server_name`, for serving and for dialling.
pub(super) fn derive(secret: &str, server_name: &str) -> Result<(CertificateDer<'static>, Certified), rcgen::Error> {
    let ca_key = ca_key(secret)?;
    let ca_params = ca_params();
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate_for(&PKCS_ED25519)?;
    let mut leaf_params = CertificateParams::new(vec![server_name.to_owned()])?;
    leaf_params.distinguished_name = DistinguishedName::new();
    leaf_params.distinguished_name.push(DnType::CommonName, "lark node");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    // The leaf key exists in memory for one run only: an expiry would protect nothing and
    // add a way to fail (a node running past it, clocks apart). RFC 5280 reserves
    // 9999-12-31 for "no well-defined expiration".
    leaf_params.not_before = date_time_ymd(2024, 1, 1);
    leaf_params.not_after = date_time_ymd(9999, 12, 31);
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let leaf = Certified { chain: vec![leaf_cert.der().clone()], key };
    Ok((ca_cert.der().clone(), leaf))
}

fn ca_key(secret: &str) -> Result<KeyPair, rcgen::Error> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac takes keys of any size");
    mac.update(CA_SEED_LABEL);
    let seed = mac.finalize().into_bytes();
    let mut pkcs8 = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + seed.len());
    pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    pkcs8.extend_from_slice(&seed);
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), &PKCS_ED25519)
}

/// Fixed fields only, so every node issues the same CA certificate.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "lark cluster ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(SerialNumber::from_slice(&[1]));
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(9999, 12, 31);
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_depends_on_the_secret_only_and_leaves_are_fresh() {
        let (ca_one, leaf_one) = derive("s3cret", "lark-node").unwrap();
        let (ca_two, leaf_two) = derive("s3cret", "lark-node").unwrap();
        let (other_ca, _) = derive("other", "lark-node").unwrap();
        assert_eq!(ca_one, ca_two, "the same secret gives the same CA on every node");
        assert_ne!(ca_one, other_ca);
        assert_ne!(leaf_one.chain, leaf_two.chain, "each run has its own leaf");
        assert_ne!(leaf_one.key.secret_der(), leaf_two.key.secret_der());
    }
}
