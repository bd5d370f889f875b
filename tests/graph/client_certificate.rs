//! The client certificate credential (an assertion signed with the app's RSA key) against the emulator's token
//! endpoint, which verifies the signature with the certificate registered on the app. [certificate-credentials]

use std::path::{Path, PathBuf};

use certsync::graph::{GraphClient, GraphError, MembershipScope, TenantCredential, USER_SELECT};
use graph_emulator::{AppRegistration, RequestKind};

use crate::helpers::{READ_WRITE, TestGraph};

/// A PEM file removed when dropped.
struct TempPem(PathBuf);

impl TempPem {
    fn new(contents: &str) -> TempPem {
        let path = std::env::temp_dir().join(format!("certsync-test-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).expect("the temp file is written");
        TempPem(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPem {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A self-signed certificate and its private key, PEM.
struct TestCertificate {
    certificate_pem: String,
    key_pem: String,
}

impl TestCertificate {
    fn rsa() -> TestCertificate {
        TestCertificate::with(&rcgen::PKCS_RSA_SHA256)
    }

    fn with(algorithm: &'static rcgen::SignatureAlgorithm) -> TestCertificate {
        let key = rcgen::KeyPair::generate_for(algorithm).expect("key generated");
        let certificate = rcgen::CertificateParams::new(vec!["certsync.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        TestCertificate { certificate_pem: certificate.pem(), key_pem: key.serialize_pem() }
    }

    /// The file the credential reads: certificate, then key.
    fn file(&self) -> TempPem {
        TempPem::new(&format!("{}{}", self.certificate_pem, self.key_pem))
    }
}

/// An app with no secret, known by `certificate`.
fn register_app_with_certificate(graph: &TestGraph, certificate: &TestCertificate) -> String {
    let client_id = uuid::Uuid::new_v4().to_string();
    let directory = graph.directory();
    directory.add_app(
        graph.tenant.as_str(),
        AppRegistration {
            client_id: client_id.clone(),
            client_secret: None,
            roles: READ_WRITE.iter().map(|role| (*role).to_owned()).collect(),
            federated_credentials: Vec::new(),
        },
    );
    directory.add_app_certificate(graph.tenant.as_str(), &client_id, &certificate.certificate_pem);
    client_id
}

fn credential(client_id: &str, file: &Path) -> TenantCredential {
    TenantCredential::ClientCertificate { client_id: client_id.to_owned(), certificate_pem_path: file.to_owned() }
}

#[tokio::test]
async fn a_client_certificate_credential_reads_a_group_over_https() {
    let graph = TestGraph::start().await;
    let (group, users) = graph.group_of_users("c", 3);
    let certificate = TestCertificate::rsa();
    let client_id = register_app_with_certificate(&graph, &certificate);
    let file = certificate.file();
    let client = GraphClient::connect(
        graph.tenant.clone(),
        &credential(&client_id, file.path()),
        &graph.cloud(),
        graph.options(),
    )
    .expect("the client builds");

    let first = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap();
    let second = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap();

    assert_eq!(first.users.len(), users.len());
    assert_eq!(second.users.len(), users.len());
    let requests = graph.directory().requests();
    let tokens: Vec<_> = requests.iter().filter(|r| r.kind == RequestKind::Token).collect();
    assert_eq!(tokens.len(), 1, "one assertion, the token cached: {tokens:?}");
    assert_eq!((tokens[0].status, tokens[0].app_id.as_deref()), (200, Some(client_id.as_str())));
    assert!(
        requests.iter().filter(|r| r.kind == RequestKind::Read).all(|r| r.app_id.as_deref() == Some(&client_id)),
        "Graph saw the certificate app's token"
    );
}

#[tokio::test]
async fn a_certificate_the_app_does_not_know_is_a_credential_error_naming_the_tenant_and_aadsts700027() {
    let graph = TestGraph::start().await;
    let (group, _) = graph.group_of_users("u", 1);
    let client_id = register_app_with_certificate(&graph, &TestCertificate::rsa());
    let file = TestCertificate::rsa().file();
    let client = GraphClient::connect(
        graph.tenant.clone(),
        &credential(&client_id, file.path()),
        &graph.cloud(),
        graph.options(),
    )
    .expect("the client builds: the key and certificate of the file match");

    let error = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap_err();

    let GraphError::Credential { tenant, credential, .. } = &error else { panic!("{error:?}") };
    assert_eq!((tenant, *credential), (&graph.tenant, "client certificate"));
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("could not get a token for tenant {} with client certificate: ", graph.tenant)),
        "{text}"
    );
    assert!(text.contains("AADSTS700027"), "Entra's own code reaches the administrator: {text}");
    assert!(!text.contains("PRIVATE KEY"), "no key material: {text}");
    assert!(graph.graph_requests().is_empty(), "Graph was never called without a token");
}

/// Building the credential fails with a [`GraphError::Credential`] for the tenant whose text names the file.
fn build_error(graph: &TestGraph, file: &Path) -> String {
    let credential = credential(&uuid::Uuid::new_v4().to_string(), file);
    let error = GraphClient::connect(graph.tenant.clone(), &credential, &graph.cloud(), graph.options()).unwrap_err();
    assert!(matches!(&error, GraphError::Credential { tenant, .. } if tenant == &graph.tenant), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(&format!("'{}'", file.display())), "the file is named: {text}");
    assert!(!text.contains("BEGIN") && !text.contains("MII"), "no PEM contents: {text}");
    text
}

#[tokio::test]
async fn an_unreadable_certificate_file_is_an_error_naming_the_file() {
    let graph = TestGraph::start().await;
    let missing = std::env::temp_dir().join(format!("certsync-missing-{}.pem", uuid::Uuid::new_v4()));

    let text = build_error(&graph, &missing);

    assert!(text.contains("cannot read the certificate file"), "{text}");
    assert!(graph.directory().requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_pem_without_a_private_key_is_an_error_naming_the_file() {
    let graph = TestGraph::start().await;
    let certificate_only = TempPem::new(&TestCertificate::rsa().certificate_pem);

    let text = build_error(&graph, certificate_only.path());

    assert!(text.contains("holds no private key"), "{text}");
}

#[tokio::test]
async fn a_pem_without_a_certificate_is_an_error_naming_the_file() {
    let graph = TestGraph::start().await;
    let key_only = TempPem::new(&TestCertificate::rsa().key_pem);

    let text = build_error(&graph, key_only.path());

    assert!(text.contains("holds no certificate"), "{text}");
}

#[tokio::test]
async fn an_ecdsa_key_is_refused_because_entra_accepts_only_rsa_certificates() {
    let graph = TestGraph::start().await;
    let file = TestCertificate::with(&rcgen::PKCS_ECDSA_P256_SHA256).file();

    let text = build_error(&graph, file.path());

    assert!(text.contains("Entra accepts only RSA certificates"), "{text}");
}

// The legacy shape `azure_identity`'s own (OpenSSL) `ClientCertificateCredential` sends, RS256 with only the SHA-1
// `x5t`, is accepted too: the emulator finds the certificate by either thumbprint.
#[tokio::test]
async fn the_emulator_accepts_a_legacy_rs256_assertion_with_only_the_sha1_thumbprint() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use sha1::{Digest, Sha1};

    let graph = TestGraph::start().await;
    let certificate = TestCertificate::rsa();
    let client_id = register_app_with_certificate(&graph, &certificate);
    let der = CertificateDer::from_pem_slice(certificate.certificate_pem.as_bytes()).expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).expect("key");
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .expect("RSA key")
        .choose_scheme(&[rustls::SignatureScheme::RSA_PKCS1_SHA256])
        .expect("RS256");
    let endpoint = format!("{}{}/oauth2/v2.0/token", graph.emulator.https_url(), graph.tenant);
    let now = graph.directory().now().unix_timestamp();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode(Sha1::digest(&der))});
    let claims = serde_json::json!({
        "aud": endpoint, "exp": now + 600, "iss": client_id, "jti": uuid::Uuid::new_v4().to_string(), "nbf": now,
        "sub": client_id,
    });
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let assertion = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signer.sign(input.as_bytes()).expect("signed")));
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(graph.emulator.ca_pem().as_bytes()).expect("CA"))
        .build()
        .expect("client");

    let response = http
        .post(&endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
            ("scope", crate::helpers::GRAPH_SCOPE),
        ])
        .send()
        .await
        .expect("the token endpoint answers");

    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}
