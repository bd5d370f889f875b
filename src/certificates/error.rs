//! Why a certificate could not be read: the bytes (no certificate in them, corrupt DER) or the file (unreadable).

use std::path::PathBuf;

/// The bytes hold no usable certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("the input is empty")]
    Empty,
    #[error("the input is neither PEM (no \"-----BEGIN\" line) nor DER (it does not start with an ASN.1 SEQUENCE)")]
    NotACertificate,
    #[error("the PEM text is malformed")]
    MalformedPem(#[source] pem::PemError),
    #[error("the PEM text holds no CERTIFICATE block (found: {found})")]
    NoCertificateBlock { found: String },
    #[error("the DER certificate is truncated: it ends before the length its header announces")]
    TruncatedDer,
    #[error("the DER is not a valid X.509 certificate")]
    CorruptDer(#[source] x509_parser::error::X509Error),
}

/// A certificate file could not be read or holds no usable certificate. The message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertificateFileError {
    #[error("cannot read the certificate file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is larger than {limit} bytes: not a certificate file", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{} holds no usable certificate", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: CertificateError,
    },
}
