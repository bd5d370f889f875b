//! Where a pair's issued certificates come from and how they are spelled as values: the value types of the
//! `CERTIFICATE_*` settings, read by configuration and used by the core (whose `sync/issued.rs` reads the
//! certificates themselves; the module doc there says why each source is read as it is).

use std::fmt;

/// Where a pair's certificates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CertificateSource {
    CloudPki,
    IntuneConnector,
}

impl CertificateSource {
    pub const CHOICES: &'static str = "none, cloud-pki or intune-connector";

    /// `None` for "none"; `Err` for anything unknown.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        match text.trim() {
            "" | "none" => Ok(None),
            "cloud-pki" => Ok(Some(Self::CloudPki)),
            "intune-connector" => Ok(Some(Self::IntuneConnector)),
            other => Err(format!("unknown certificate source {other:?}; expected {}", Self::CHOICES)),
        }
    }
}

impl fmt::Display for CertificateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CloudPki => "cloud-pki",
            Self::IntuneConnector => "intune-connector",
        })
    }
}

/// Byte order of the serial number in `X509:<I>…<SR>…` (the dispute in certificate-user-ids.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerialOrder {
    /// Byte-reversed, as the Entra how-to stores certutil's serial (the documented form).
    #[default]
    Reversed,
    /// As issued (big-endian), what `Get-EntraUserCertificateUserIdsFromCertificate` writes.
    AsIssued,
}

impl SerialOrder {
    pub const CHOICES: &'static str = "reversed (documented, default) or as-issued";

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "reversed" => Some(Self::Reversed),
            "as-issued" => Some(Self::AsIssued),
            _ => None,
        }
    }
}

/// What `X509:<SHA1-PUKEY>` hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sha1Reading {
    /// SHA-1 of the whole certificate: the thumbprint (Entra PowerShell cmdlet, CBA deep dive; the default).
    #[default]
    Thumbprint,
    /// SHA-1 of the public key (Samba/AD). Intune's records carry no public key, so no source can give it: the
    /// setting is refused at start-up with that reason (the calculator shows both readings for a file).
    PublicKey,
}

impl Sha1Reading {
    pub const CHOICES: &'static str = "thumbprint (default) or public-key";

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "thumbprint" => Some(Self::Thumbprint),
            "public-key" => Some(Self::PublicKey),
            _ => None,
        }
    }
}

/// A CA the connector source may name: its encoded DN, and the RDN set its display name is matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownIssuer {
    pub dn: String,
    key: Vec<String>,
}

impl KnownIssuer {
    /// From the CA's subject DN as certificateUserIds spell it (configuration takes it from the CA's certificate
    /// with the calculator's `subject_dn`).
    pub fn from_dn(dn: String) -> Self {
        Self { key: rdn_key(&dn), dn }
    }

    /// Whether every RDN of `name` (any order and spacing) is one of this CA's: a CA record's `subjectName` may give
    /// the whole DN or only part of it (undocumented), and must not name anything the certificate does not.
    pub fn has_every_part_of(&self, name: &str) -> bool {
        let parts = rdn_key(name);
        !parts.is_empty() && parts.iter().all(|part| self.key.contains(part))
    }

    /// The CA of `issuers` an issuer name as Intune displays it (undocumented order and spacing) names.
    pub fn named<'a>(issuers: &'a [Self], display: &str) -> Option<&'a Self> {
        let key = rdn_key(display);
        issuers.iter().find(|issuer| issuer.key == key)
    }
}

/// A DN as a sorted set of `TYPE=value` (type upper-case, value lower-case, spaces around separators dropped): the
/// same name whatever order or spacing a display string uses.
fn rdn_key(dn: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' => {
                current.push(c);
                escaped = true;
            }
            ',' | '+' | ';' => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    let mut key: Vec<String> = parts
        .iter()
        .filter_map(|part| {
            let (kind, value) = part.split_once('=')?;
            Some(format!("{}={}", kind.trim().to_uppercase(), value.trim().to_lowercase()))
        })
        .collect();
    key.sort();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_read_back_from_the_spelling_it_shows() {
        for source in [CertificateSource::CloudPki, CertificateSource::IntuneConnector] {
            assert_eq!(CertificateSource::parse(&source.to_string()), Ok(Some(source)));
        }
        assert_eq!(CertificateSource::parse(" none "), Ok(None));
        let err = CertificateSource::parse("adcs").unwrap_err();
        assert_eq!(err, "unknown certificate source \"adcs\"; expected none, cloud-pki or intune-connector");
    }

    #[test]
    fn an_issuer_is_named_whatever_the_order_spacing_and_case_of_its_rdns() {
        let issuers = [KnownIssuer::from_dn("CN=Other CA".into()), KnownIssuer::from_dn("DC=com,CN=Issuing".into())];
        assert_eq!(
            KnownIssuer::named(&issuers, "cn=issuing ,  DC=COM").map(|i| i.dn.as_str()),
            Some("DC=com,CN=Issuing")
        );
        assert!(KnownIssuer::named(&issuers, "CN=Issuing").is_none(), "a subset of the RDNs is another name");
    }
}
