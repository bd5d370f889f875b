//! A test CA generated at start and a server certificate for `127.0.0.1` and `localhost` signed by it.

use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub(crate) struct Tls {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

pub(crate) fn generate() -> anyhow::Result<Tls> {
    let ca_key = KeyPair::generate().context("Failed to generate the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("Failed to build CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "graph-emulator test CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).context("Failed to self-sign the CA")?;

    let server_key = KeyPair::generate().context("Failed to generate the server key")?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .context("Failed to build server certificate parameters")?;
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let server_cert = params.signed_by(&server_key, &ca).context("Failed to sign the server certificate")?;

    let chain = vec![server_cert.der().clone(), CertificateDer::from(ca.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    // The provider is given explicitly: the final binary links more than one.
    let mut server_config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .context("Failed to choose TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("Failed to configure the TLS server")?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { ca_pem: ca.pem(), server_config: Arc::new(server_config) })
}
