//! How issued certificates become values (issue 7): `CERTIFICATE_SOURCE` (per pair), `CERTIFICATE_SERIAL_ORDER`,
//! `CERTIFICATE_SHA1_PUKEY` and `CERTIFICATE_ISSUER_CERTIFICATES`, checked against the pairs and the templates.

use super::names::*;
use super::pairs::PairSettings;
use super::{MAX_CA_PEM_BYTES, Reader, read_small_file};
use crate::certificates::subject_dn;
use crate::domain::{CertificateSource, KnownIssuer, SerialOrder, Sha1Reading, Template};

/// How issued certificates become values (issue 7; the core's `sync::issued` says how each source is read).
#[derive(Debug, Clone, Default)]
pub struct CertificateSettings {
    pub serial_order: SerialOrder,
    pub sha1_reading: Sha1Reading,
    /// The CAs the connector source's issuer names are matched against (`CERTIFICATE_ISSUER_CERTIFICATES`).
    pub connector_issuers: Vec<KnownIssuer>,
}

/// Reads the certificate settings, gives each pair its source, and checks that templates reading a certificate and
/// pairs with a source go together. `pairs` and `templates` are `None` when they had a problem (already recorded).
pub(super) fn read(
    r: &mut Reader<'_>,
    mut pairs: Option<&mut [PairSettings]>,
    templates: Option<&[Template]>,
) -> Option<CertificateSettings> {
    let certificates = read_certificate_settings(r);
    if let (Some(pairs), Some((sources, _))) = (pairs.as_deref_mut(), certificates.as_ref()) {
        match assign_sources(pairs, sources) {
            Ok(()) => {}
            Err(problem) => r.problem(CERTIFICATE_SOURCE, problem),
        }
    }
    if let (Some(pairs), Some(templates)) = (pairs.as_deref(), templates) {
        let per_certificate = templates.iter().filter(|t| t.is_per_certificate()).map(|t| t.to_string());
        let per_certificate: Vec<String> = per_certificate.collect();
        let with_source = pairs.iter().any(|p| p.certificate_source.is_some());
        if !per_certificate.is_empty() && !with_source {
            r.problem(
                CERTIFICATE_USER_ID_TEMPLATES,
                format!(
                    "{} read issued certificates, but no pair has a CERTIFICATE_SOURCE (cloud-pki or intune-connector)",
                    per_certificate.join(", ")
                ),
            );
        }
        if per_certificate.is_empty() && with_source {
            r.problem(
                CERTIFICATE_SOURCE,
                "is set, but no template reads a certificate: add issuer-serial or sha1-public-key to \
                 CERTIFICATE_USER_ID_TEMPLATES, or leave CERTIFICATE_SOURCE unset",
            );
        }
        if pairs.iter().any(|p| p.certificate_source == Some(CertificateSource::IntuneConnector))
            && certificates.as_ref().is_some_and(|(_, c)| c.connector_issuers.is_empty())
        {
            r.problem(
                CERTIFICATE_ISSUER_CERTIFICATES,
                "is required with the intune-connector source: a PEM file with the certificates of the CAs that \
                 issue through the connector (their names in Intune's records are display strings of \
                 undocumented order, so the encoded DN is taken from the CA certificate)",
            );
        }
    }
    certificates.map(|(_, c)| c)
}

/// `CERTIFICATE_SOURCE` as read: one source for every pair, or `pair-N=source` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceChoice {
    Every(Option<CertificateSource>),
    PerPair(Vec<(String, Option<CertificateSource>)>),
}

/// Reads `CERTIFICATE_SOURCE`, `CERTIFICATE_SERIAL_ORDER`, `CERTIFICATE_SHA1_PUKEY` and
/// `CERTIFICATE_ISSUER_CERTIFICATES`; `None` when one of them has a problem (already recorded).
fn read_certificate_settings(r: &mut Reader<'_>) -> Option<(SourceChoice, CertificateSettings)> {
    let value = r.optional(CERTIFICATE_SOURCE).unwrap_or_default();
    let choice = r.parsed(CERTIFICATE_SOURCE, Some(value), |v| {
        if !v.contains('=') {
            return CertificateSource::parse(v).map(SourceChoice::Every);
        }
        v.split(';')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (pair, source) = entry.split_once('=').ok_or_else(|| {
                    format!("{entry:?} must look like pair-1=cloud-pki (or one source for every pair)")
                })?;
                Ok((pair.trim().to_owned(), CertificateSource::parse(source)?))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(SourceChoice::PerPair)
    });
    let order_value = r.optional(CERTIFICATE_SERIAL_ORDER);
    let serial_order = r
        .parsed(CERTIFICATE_SERIAL_ORDER, order_value, |v| {
            SerialOrder::parse(v).ok_or_else(|| format!("must be {}, not {v:?}", SerialOrder::CHOICES))
        })
        .unwrap_or_default();
    let sha1_value = r.optional(CERTIFICATE_SHA1_PUKEY);
    let sha1_reading = r
        .parsed(CERTIFICATE_SHA1_PUKEY, sha1_value, |v| match Sha1Reading::parse(v) {
            Some(Sha1Reading::PublicKey) => {
                Err("public-key cannot be used: Intune's certificate records (Cloud PKI leaf certificates, connector \
                 certificate states) carry the thumbprint but not the public key. Use thumbprint, or compute a \
                 public-key value for one certificate with `certsync certificate-ids <file>`"
                    .to_owned())
            }
            Some(reading) => Ok(reading),
            None => Err(format!("must be {}, not {v:?}", Sha1Reading::CHOICES)),
        })
        .unwrap_or_default();
    let issuers_path = r.optional(CERTIFICATE_ISSUER_CERTIFICATES);
    let connector_issuers = r
        .parsed(CERTIFICATE_ISSUER_CERTIFICATES, issuers_path, |path| {
            let text = read_small_file(path, MAX_CA_PEM_BYTES).map_err(|e| format!("cannot read {path:?}: {e}"))?;
            let blocks = pem::parse_many(text.as_bytes()).map_err(|e| format!("{path:?} is not PEM: {e}"))?;
            let issuers = blocks
                .iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| subject_dn(b.contents()).map(KnownIssuer::from_dn).map_err(|e| format!("{path:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if issuers.is_empty() {
                return Err(format!("{path:?} holds no PEM certificate"));
            }
            Ok(issuers)
        })
        .unwrap_or_default();
    Some((choice?, CertificateSettings { serial_order, sha1_reading, connector_issuers }))
}

/// Gives each pair its certificate source; an entry naming no pair is an error (a typo would silently bind nothing).
fn assign_sources(pairs: &mut [PairSettings], choice: &SourceChoice) -> Result<(), String> {
    match choice {
        SourceChoice::Every(source) => pairs.iter_mut().for_each(|p| p.certificate_source = *source),
        SourceChoice::PerPair(entries) => {
            for (name, source) in entries {
                let count = pairs.len();
                let pair = pairs
                    .iter_mut()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| format!("names {name:?}, but SYNC_PAIRS has pair-1 to pair-{count}"))?;
                pair.certificate_source = *source;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::config::tests::minimal;
    use crate::domain::{CertificateSource, SerialOrder};

    #[test]
    fn certificate_sources_are_checked_against_pairs_templates_and_readings() {
        let two_pairs = "aaaaaaaa-0000-0000-0000-000000000001->bbbbbbbb-0000-0000-0000-000000000001;\
                         aaaaaaaa-0000-0000-0000-000000000002->bbbbbbbb-0000-0000-0000-000000000002";
        let mut env = minimal();
        env.insert("SYNC_PAIRS".into(), two_pairs.into());
        env.insert("CERTIFICATE_USER_ID_TEMPLATES".into(), "subject-cn;issuer-serial".into());
        env.insert("CERTIFICATE_SOURCE".into(), "pair-2=cloud-pki".into());
        env.insert("CERTIFICATE_SERIAL_ORDER".into(), "as-issued".into());
        let s = Settings::load(&env).unwrap();
        let sources: Vec<_> = s.sync.pairs.iter().map(|p| p.certificate_source).collect();
        assert_eq!(sources, [None, Some(CertificateSource::CloudPki)]);
        assert_eq!(s.sync.certificates.serial_order, SerialOrder::AsIssued);

        let problem = |edits: &[(&str, &str)]| {
            let mut env = env.clone();
            for (name, value) in edits {
                env.insert(name.to_string(), value.to_string());
            }
            let err = Settings::load(&env).unwrap_err();
            (err.problems[0].name.clone(), err.to_string())
        };
        let (name, text) = problem(&[("CERTIFICATE_SOURCE", "pair-3=cloud-pki")]);
        assert_eq!(name, "CERTIFICATE_SOURCE");
        assert!(text.contains("pair-1 to pair-2"), "{text}");
        let (name, text) = problem(&[("CERTIFICATE_SOURCE", "none")]);
        assert_eq!(name, "CERTIFICATE_USER_ID_TEMPLATES");
        assert!(text.contains("no pair has a CERTIFICATE_SOURCE"), "{text}");
        let (name, _) = problem(&[("CERTIFICATE_USER_ID_TEMPLATES", "subject-cn")]);
        assert_eq!(name, "CERTIFICATE_SOURCE");
        let (name, text) = problem(&[("CERTIFICATE_SHA1_PUKEY", "public-key")]);
        assert_eq!(name, "CERTIFICATE_SHA1_PUKEY");
        assert!(text.contains("carry the thumbprint but not the public key"), "{text}");
        let (name, _) = problem(&[("CERTIFICATE_SOURCE", "intune-connector")]);
        assert_eq!(name, "CERTIFICATE_ISSUER_CERTIFICATES");
        let (name, text) = problem(&[("CERTIFICATE_SOURCE", "adcs")]);
        assert_eq!(name, "CERTIFICATE_SOURCE");
        assert!(text.contains("none, cloud-pki or intune-connector"), "{text}");
    }
}
