//! The certificates Tenant A's Intune issued, turned into what high-affinity certificateUserIds are built from.
//!
//! Microsoft recommends high-affinity bindings (IssuerAndSerialNumber, SHA1PublicKey) over names a certificate
//! carries [concept-certificate-based-authentication-certificateuserids]. Intune knows every certificate it issued and
//! whether it is still valid, so a pair with a certificate source binds exactly those certificates, and the next sync
//! unbinds one that was revoked or expired: nothing asks for its value any more, so the ledger-owned value is removed.
//!
//! Sources (chosen per pair, `CERTIFICATE_SOURCE`; the Graph calls are in [`crate::graph`]'s beta module):
//! - `cloud-pki`: Intune Cloud PKI. The issuer DN is taken from each CA's own certificate (its
//!   `certificateDownloadUrl`), rendered like the calculator renders it (encoded order, `,` without spaces): the
//!   leaf records' `issuerName` format is not documented.
//! - `intune-connector`: connector-based SCEP/PKCS certificate states. Their `certificateIssuerName` is a display
//!   string of undocumented order, so it is matched (as a set of RDNs, ignoring order, spaces and case) against the CA
//!   certificates the administrator lists in `CERTIFICATE_ISSUER_CERTIFICATES`, whose encoded DN is then used.
//!
//! Hex strings from Graph (serial numbers, thumbprints) are read tolerantly (spaces and colons ignored, either case)
//! and turned into bytes, so the values are spelled by one rule whatever Graph's spelling: the serial as the DER
//! INTEGER's content octets (a `00` sign octet added when the first byte has its high bit set, as Windows and .NET
//! keep it — see `certificates::serial`), the thumbprint as 20 bytes.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use crate::certificates::{hex_upper, serial};
use crate::domain::{CertificateSource, KnownIssuer, SerialOrder, UserId};
use crate::graph::{
    CertificateStateRecord, CloudCertificationAuthority, DirectoryUser, GraphClient, GraphError, LeafCertificateRecord,
};

/// One certificate Intune issued to a Tenant A user, ready to become values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The issuing CA's subject DN, as certificateUserIds spell it.
    pub issuer_dn: String,
    /// The serial's DER INTEGER content octets, as issued.
    pub serial: Vec<u8>,
    /// SHA-1 of the certificate.
    pub thumbprint: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The device it was issued for, for the report.
    pub device: Option<String>,
}

impl IssuedCertificate {
    pub fn serial_text(&self, order: SerialOrder) -> String {
        match order {
            SerialOrder::Reversed => serial::byte_reversed(&self.serial),
            SerialOrder::AsIssued => serial::as_encoded(&self.serial),
        }
    }

    pub fn thumbprint_text(&self) -> String {
        hex_upper(&self.thumbprint)
    }

    /// Usable for sign-in at `now`: started and not expired.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The certificates of one source, by the Tenant A user they were issued to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuedCertificates {
    by_user_id: HashMap<UserId, Vec<IssuedCertificate>>,
    /// For records without a user id: lower-cased UPN.
    by_upn: HashMap<String, Vec<IssuedCertificate>>,
    /// What was read and what could not be used, for the run report.
    pub notes: Vec<String>,
}

impl IssuedCertificates {
    /// Every certificate issued to `user` (by object id, or by UPN for records without one).
    pub fn of<'a>(&'a self, user: &DirectoryUser) -> impl Iterator<Item = &'a IssuedCertificate> {
        let by_id = self.by_user_id.get(&user.id).into_iter().flatten();
        let by_upn = self.by_upn.get(&user.user_principal_name.to_lowercase()).into_iter().flatten();
        by_id.chain(by_upn)
    }

    fn add(&mut self, user_id: Option<&str>, upn: Option<&str>, certificate: IssuedCertificate) -> Result<(), String> {
        if let Some(id) = user_id.filter(|id| !id.trim().is_empty()) {
            let id = UserId::parse(id.trim()).map_err(|error| format!("its userId: {error}"))?;
            self.by_user_id.entry(id).or_default().push(certificate);
        } else if let Some(upn) = upn.map(str::trim).filter(|upn| !upn.is_empty()) {
            self.by_upn.entry(upn.to_lowercase()).or_default().push(certificate);
        } else {
            return Err("it names no user (no userId, no userPrincipalName)".to_owned());
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_user_id.values().chain(self.by_upn.values()).map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records that could not be used: counted, the first few named.
#[derive(Default)]
struct Unusable {
    count: usize,
    examples: Vec<String>,
}

impl Unusable {
    const EXAMPLES: usize = 5;

    fn push(&mut self, what: String) {
        self.count += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(what);
        }
    }

    fn note(&self, source: CertificateSource) -> Option<String> {
        (self.count > 0).then(|| {
            format!(
                "{source}: {} certificate record(s) could not be used and bind nothing, e.g. {}",
                self.count,
                self.examples.join("; ")
            )
        })
    }
}

/// Hex as Graph may spell it (`0A 1B`, `0a:1b`, `0A1B`) to bytes.
fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.chars().filter(|c| !matches!(c, ' ' | ':' | '-')).collect();
    if digits.is_empty() {
        return Err("is empty".to_owned());
    }
    if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not hexadecimal"));
    }
    let digits = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits };
    Ok((0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digits")).collect())
}

/// A serial as DER INTEGER content octets: a positive serial whose first byte has its high bit set gets the `00`
/// sign octet DER requires (Graph may omit it).
fn serial_octets(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = hex_bytes(text).map_err(|reason| format!("its serial number {reason}"))?;
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    Ok(bytes)
}

fn thumbprint_octets(text: &str) -> Result<Vec<u8>, String> {
    let bytes = hex_bytes(text).map_err(|reason| format!("its thumbprint {reason}"))?;
    if bytes.len() != 20 {
        return Err(format!("its thumbprint {text:?} is not a SHA-1 hash (20 bytes)"));
    }
    Ok(bytes)
}

/// Builds the Cloud PKI certificates from what Graph listed: each CA with its issuer DN (or why it has none) and its
/// active leaf records. Pure: [`read`] does the I/O.
pub fn from_cloud_pki(
    authorities: &[(CloudCertificationAuthority, Option<String>)],
    leaves: &BTreeMap<String, Vec<LeafCertificateRecord>>,
) -> IssuedCertificates {
    let mut issued = IssuedCertificates::default();
    let mut unusable = Unusable::default();
    let mut records = 0;
    for (authority, issuer_dn) in authorities {
        let Some(records_of_ca) = leaves.get(&authority.id) else { continue };
        for leaf in records_of_ca {
            records += 1;
            let name = format!("leaf {} of CA {}", leaf.id, authority.display_name.as_deref().unwrap_or(&authority.id));
            let status = leaf.certificate_status.as_deref().unwrap_or("unknown");
            if !status.eq_ignore_ascii_case("active") {
                // The request filtered on active; a record saying otherwise is not bound.
                continue;
            }
            let built = (|| {
                let issuer_dn = issuer_dn.clone().ok_or("its CA's certificate gives no issuer DN")?;
                let serial = serial_octets(leaf.serial_number.as_deref().unwrap_or_default())?;
                let thumbprint = thumbprint_octets(leaf.thumbprint.as_deref().unwrap_or_default())?;
                let not_before = leaf.validity_start_date_time.ok_or("it has no validityStartDateTime")?;
                let not_after = leaf.validity_end_date_time.ok_or("it has no validityEndDateTime")?;
                Ok::<_, String>(IssuedCertificate {
                    issuer_dn,
                    serial,
                    thumbprint,
                    not_before,
                    not_after,
                    device: leaf.device_name.clone(),
                })
            })();
            let added = built.and_then(|certificate| {
                issued.add(leaf.user_id.as_deref(), leaf.user_principal_name.as_deref(), certificate)
            });
            if let Err(reason) = added {
                unusable.push(format!("{name}: {reason}"));
            }
        }
    }
    issued.notes.push(format!(
        "cloud-pki: {} CA(s), {records} active certificate record(s), {} usable",
        authorities.len(),
        issued.len()
    ));
    issued.notes.extend(unusable.note(CertificateSource::CloudPki));
    issued
}

/// Builds the connector certificates from the certificate states, naming issuers through `issuers`. Pure.
pub fn from_connector(states: &[CertificateStateRecord], issuers: &[KnownIssuer]) -> IssuedCertificates {
    let mut issued = IssuedCertificates::default();
    let mut unusable = Unusable::default();
    let mut skipped_revoked = 0;
    let mut without_status = 0;
    for (index, state) in states.iter().enumerate() {
        // certificateRevocationStatus: none ("Not revoked"), pending, issued, failed, revoked
        // [intune-deviceconfig-certificaterevocationstatus]: only a certificate nobody asked to revoke is bound.
        // (This read `notRevoked` before, a value the enum does not have: every real state would have been skipped.)
        match state.certificate_revoke_status.as_deref().map(str::trim) {
            Some(status) if status.eq_ignore_ascii_case("none") => {}
            // Nothing said is not "not revoked": such a certificate is not bound.
            None | Some("") => {
                without_status += 1;
                continue;
            }
            Some(_) => {
                skipped_revoked += 1;
                continue;
            }
        }
        let name = format!(
            "certificate state {index} ({})",
            state.device_display_name.as_deref().or(state.user_principal_name.as_deref()).unwrap_or("no device")
        );
        let built = (|| {
            let display = state.certificate_issuer_name.as_deref().unwrap_or_default();
            let issuer = KnownIssuer::named(issuers, display).ok_or_else(|| {
                format!("its issuer {display:?} is none of the CA certificates in CERTIFICATE_ISSUER_CERTIFICATES")
            })?;
            let serial = serial_octets(state.certificate_serial_number.as_deref().unwrap_or_default())?;
            let thumbprint = thumbprint_octets(state.certificate_thumbprint.as_deref().unwrap_or_default())?;
            let not_after = state.certificate_expiration_date_time.ok_or("it has no certificateExpirationDateTime")?;
            // Without an issuance time the certificate counts as issued at the epoch: oldest when choosing the newest.
            let not_before = state.certificate_issuance_date_time.unwrap_or(OffsetDateTime::UNIX_EPOCH);
            Ok::<_, String>(IssuedCertificate {
                issuer_dn: issuer.dn.clone(),
                serial,
                thumbprint,
                not_before,
                not_after,
                device: state.device_display_name.clone(),
            })
        })();
        if let Err(reason) = built.and_then(|c| issued.add(None, state.user_principal_name.as_deref(), c)) {
            unusable.push(format!("{name}: {reason}"));
        }
    }
    issued.notes.push(format!(
        "intune-connector: {} certificate state(s), {skipped_revoked} revoked or being revoked, {without_status} \
         without a revocation status (not bound), {} usable",
        states.len(),
        issued.len()
    ));
    issued.notes.extend(unusable.note(CertificateSource::IntuneConnector));
    issued
}

#[derive(Debug, thiserror::Error)]
pub enum IssuedError {
    #[error("reading the certificates of {source_kind} in Tenant A failed, so nothing was written: {error}")]
    Graph {
        source_kind: CertificateSource,
        #[source]
        error: GraphError,
    },
    #[error(
        "Cloud PKI CA {authority} issued active certificates but its own certificate cannot be read ({reason}), so \
         their issuer DN is unknown and nothing was written"
    )]
    Authority { authority: String, reason: String },
}

/// Reads one source from Tenant A. Any failure fails the run: binding from a partial list would look like
/// certificates being revoked, and remove their values.
pub async fn read(
    client: &GraphClient,
    source: CertificateSource,
    issuers: &[KnownIssuer],
) -> Result<IssuedCertificates, IssuedError> {
    let graph = |error| IssuedError::Graph { source_kind: source, error };
    match source {
        CertificateSource::CloudPki => {
            let authorities = client.cloud_certification_authorities().await.map_err(graph)?;
            let mut leaves = BTreeMap::new();
            let mut with_dn = Vec::with_capacity(authorities.len());
            for authority in authorities {
                let records = client.active_leaf_certificates(&authority.id).await.map_err(graph)?;
                // A root CA issues no leaf certificates: its certificate is only fetched when something needs it.
                let issuer_dn = if records.is_empty() { None } else { Some(authority_dn(client, &authority).await?) };
                leaves.insert(authority.id.clone(), records);
                with_dn.push((authority, issuer_dn));
            }
            Ok(from_cloud_pki(&with_dn, &leaves))
        }
        CertificateSource::IntuneConnector => {
            let states = client.managed_device_certificate_states().await.map_err(graph)?;
            Ok(from_connector(&states, issuers))
        }
    }
}

async fn authority_dn(client: &GraphClient, authority: &CloudCertificationAuthority) -> Result<String, IssuedError> {
    let fail = |reason: String| IssuedError::Authority {
        authority: authority.display_name.clone().unwrap_or_else(|| authority.id.clone()),
        reason,
    };
    let url =
        authority.certificate_download_url.as_deref().ok_or_else(|| fail("it has no certificateDownloadUrl".into()))?;
    let bytes = client.download_ca_certificate(url).await.map_err(|error| fail(error.to_string()))?;
    let dn = crate::certificates::subject_dn(&bytes).map_err(|error| fail(format!("{url}: {error}")))?;
    if dn.is_empty() {
        return Err(fail("its subject DN is empty".to_owned()));
    }
    let thumbprint = crate::certificates::thumbprint(&bytes).map_err(|error| fail(format!("{url}: {error}")))?;
    check_against_record(authority, &dn, &thumbprint).map_err(fail)?;
    Ok(dn)
}

/// The downloaded CA certificate must be the one the CA record describes: its thumbprint equal to the record's, and
/// every part of the record's `subjectName` in its subject (the record may give only the CN; undocumented). A record
/// giving neither cannot vouch for what was downloaded, so its certificates are not bound. Pure.
fn check_against_record(
    authority: &CloudCertificationAuthority,
    subject_dn: &str,
    thumbprint: &[u8; 20],
) -> Result<(), String> {
    let mut checked = false;
    if let Some(recorded) = authority.thumbprint.as_deref().filter(|t| !t.trim().is_empty()) {
        let recorded = thumbprint_octets(recorded).map_err(|reason| format!("its record's thumbprint: {reason}"))?;
        if recorded != thumbprint {
            return Err(format!(
                "the certificate at its certificateDownloadUrl has thumbprint {}, not the {} of its record",
                hex_upper(thumbprint),
                hex_upper(&recorded)
            ));
        }
        checked = true;
    }
    if let Some(recorded) = authority.subject_name.as_deref().filter(|n| !n.trim().is_empty()) {
        if !KnownIssuer::from_dn(subject_dn.to_owned()).has_every_part_of(recorded) {
            return Err(format!(
                "the certificate at its certificateDownloadUrl has subject {subject_dn:?}, which is not the record's \
                 subjectName {recorded:?}"
            ));
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err("its record has neither a thumbprint nor a subjectName to check the downloaded certificate against".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn leaf(id: &str, user: &str, serial: &str, status: &str) -> LeafCertificateRecord {
        LeafCertificateRecord {
            id: id.into(),
            serial_number: Some(serial.into()),
            thumbprint: Some("0102030405060708090a0b0c0d0e0f1011121314".into()),
            user_id: Some(user.into()),
            user_principal_name: None,
            device_name: Some("laptop".into()),
            certificate_status: Some(status.into()),
            validity_start_date_time: Some(datetime!(2026-01-01 0:00 UTC)),
            validity_end_date_time: Some(datetime!(2027-01-01 0:00 UTC)),
        }
    }

    fn authority(id: &str) -> CloudCertificationAuthority {
        CloudCertificationAuthority {
            id: id.into(),
            display_name: Some("Issuing".into()),
            subject_name: None,
            thumbprint: None,
            certificate_download_url: None,
        }
    }

    const ALICE: &str = "11111111-1111-1111-1111-111111111111";

    #[test]
    fn graph_hex_spellings_give_one_value() {
        assert_eq!(serial_octets("0a 1b").unwrap(), vec![0x0a, 0x1b]);
        assert_eq!(serial_octets("A1B").unwrap(), vec![0x0a, 0x1b]);
        // A high first byte gets DER's sign octet, so Graph's spelling with or without it is the same value.
        assert_eq!(serial_octets("80:01").unwrap(), serial_octets("008001").unwrap());
        assert!(serial_octets("zz").unwrap_err().contains("not hexadecimal"));
        assert!(thumbprint_octets("0102").unwrap_err().contains("20 bytes"));
    }

    #[test]
    fn cloud_pki_records_are_grouped_by_user_and_unusable_ones_named() {
        let authorities = vec![(authority("ca1"), Some("CN=Issuing".to_owned()))];
        let mut bad = leaf("bad", ALICE, "xyz", "active");
        bad.thumbprint = None;
        let leaves = BTreeMap::from([(
            "ca1".to_owned(),
            vec![leaf("l1", ALICE, "0A", "active"), leaf("l2", ALICE, "0B", "revoked"), bad],
        )]);
        let issued = from_cloud_pki(&authorities, &leaves);
        let alice = crate::sync::testing::user("alice@a.example").id(&UserId::parse(ALICE).unwrap()).build();
        let mine: Vec<_> = issued.of(&alice).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].serial_text(SerialOrder::AsIssued), "0a");
        assert_eq!(mine[0].issuer_dn, "CN=Issuing");
        assert!(
            issued.notes.iter().any(|n| n.contains("1 certificate record(s) could not be used") && n.contains("bad"))
        );
    }

    #[test]
    fn connector_issuer_names_match_whatever_their_order_and_spacing() {
        let issuer = KnownIssuer::from_dn("DC=com,DC=contoso,CN=Contoso Issuing CA".into());
        let state = |name: &str, revoke: &str| CertificateStateRecord {
            certificate_serial_number: Some("0a".into()),
            certificate_thumbprint: Some("0102030405060708090a0b0c0d0e0f1011121314".into()),
            certificate_issuer_name: Some(name.into()),
            certificate_issuance_date_time: None,
            certificate_expiration_date_time: Some(datetime!(2027-01-01 0:00 UTC)),
            certificate_revoke_status: Some(revoke.into()),
            user_principal_name: Some("Alice@A.example".into()),
            device_display_name: None,
        };
        let issued = from_connector(
            &[
                state("CN=Contoso Issuing CA, DC=contoso, DC=com", "none"),
                state("CN=Contoso Issuing CA, DC=contoso, DC=com", "revoked"),
                state("CN=Other CA", "none"),
                CertificateStateRecord {
                    certificate_revoke_status: None,
                    ..state("CN=Contoso Issuing CA, DC=contoso, DC=com", "")
                },
                state("CN=Contoso Issuing CA, DC=contoso, DC=com", "notRevoked"),
            ],
            &[issuer],
        );
        let alice = crate::sync::testing::user("alice@a.example").build();
        let mine: Vec<_> = issued.of(&alice).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].issuer_dn, "DC=com,DC=contoso,CN=Contoso Issuing CA");
        assert!(issued.notes[0].contains("2 revoked"), "an undocumented status counts as revoked: {:?}", issued.notes);
        assert!(issued.notes[0].contains("1 without a revocation status"), "{:?}", issued.notes);
        assert!(issued.notes[1].contains("\"CN=Other CA\" is none of the CA certificates"), "{:?}", issued.notes);
    }

    #[test]
    fn a_downloaded_ca_certificate_must_be_the_one_its_record_describes() {
        let dn = "DC=com,DC=contoso,O=Contoso,CN=Contoso Issuing CA";
        let thumbprint = [0xAB; 20];
        let record = |thumbprint: Option<&str>, subject: Option<&str>| CloudCertificationAuthority {
            thumbprint: thumbprint.map(str::to_owned),
            subject_name: subject.map(str::to_owned),
            ..authority("ca1")
        };
        let hex = "ab".repeat(20);
        assert_eq!(check_against_record(&record(Some(&hex), None), dn, &thumbprint), Ok(()));
        assert_eq!(check_against_record(&record(None, Some("CN=Contoso Issuing CA")), dn, &thumbprint), Ok(()));
        assert_eq!(
            check_against_record(&record(Some(&hex), Some("cn=contoso issuing ca, o=Contoso")), dn, &thumbprint),
            Ok(())
        );
        let wrong_thumbprint = check_against_record(&record(Some(&"cd".repeat(20)), None), dn, &thumbprint);
        assert!(wrong_thumbprint.unwrap_err().contains("has thumbprint ABAB"));
        let other_subject = check_against_record(&record(None, Some("CN=Attacker CA")), dn, &thumbprint);
        assert!(other_subject.unwrap_err().contains("not the record's subjectName"));
        let unverifiable = check_against_record(&record(None, None), dn, &thumbprint);
        assert!(unverifiable.unwrap_err().contains("neither a thumbprint nor a subjectName"));
    }

    #[test]
    fn validity_is_a_half_open_interval() {
        let authorities = vec![(authority("ca1"), Some("CN=I".to_owned()))];
        let leaves = BTreeMap::from([("ca1".to_owned(), vec![leaf("l1", ALICE, "0A", "active")])]);
        let issued = from_cloud_pki(&authorities, &leaves);
        let alice = crate::sync::testing::user("a@a.example").id(&UserId::parse(ALICE).unwrap()).build();
        let certificate = issued.of(&alice).next().unwrap();
        assert!(!certificate.is_valid_at(datetime!(2025-12-31 23:59 UTC)));
        assert!(certificate.is_valid_at(datetime!(2026-06-01 0:00 UTC)));
        assert!(!certificate.is_valid_at(datetime!(2027-01-01 0:00 UTC)));
    }
}
