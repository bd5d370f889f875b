//! Intune Cloud PKI: certification authorities that issue real X.509 certificates (rcgen), and the records Graph
//! beta lists about them [intune-cloudpkigraphservice-cloudcertificationauthority,
//! intune-cloudpkigraphservice-cloudcertificationauthorityleafcertificate].
//!
//! Certificates are real so a test can hand one to `openssl` or to the product's calculator and compare. A leaf's
//! `certificateStatus` is not stored but derived at read time from the emulator clock: `revoked` once revoked,
//! `expired` once the clock passes `validityEndDateTime`, else `active`. Advancing the clock
//! ([`Directory::advance_clock`]) therefore expires certificates, as time does in Intune.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, DnValue, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use sha1::{Digest, Sha1};
use time::OffsetDateTime;

use crate::directory::Directory;

/// The domainComponent attribute (0.9.2342.19200300.100.1.25): Cloud PKI CAs of a domain often carry it.
const DOMAIN_COMPONENT: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 25];

/// A Cloud PKI CA: its certificate and the key that signs what it issues.
pub(crate) struct Authority {
    pub id: String,
    pub display_name: String,
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    /// The SHA-1 of its certificate's DER, upper-case hex, as the CA record gives it.
    pub(crate) fn thumbprint(&self) -> String {
        hex_upper(&Sha1::digest(self.issuer.der()))
    }
}

/// A leaf certificate a CA issued.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub id: String,
    pub authority_id: String,
    pub der: Vec<u8>,
    /// Upper-case hex of the serial's magnitude (as `openssl x509 -serial` prints it).
    pub serial_number: String,
    /// Upper-case hex SHA-1 of the DER.
    pub thumbprint: String,
    pub subject_name: String,
    pub user_id: String,
    pub user_principal_name: String,
    pub device_name: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Leaf {
    /// `unknown | active | revoked | expired` at `now`.
    pub(crate) fn status(&self, now: OffsetDateTime) -> &'static str {
        match self.revoked_at {
            Some(at) if at <= now => "revoked",
            _ if now >= self.not_after => "expired",
            _ => "active",
        }
    }
}

/// A tenant's Cloud PKI.
#[derive(Default)]
pub(crate) struct PkiData {
    pub authorities: BTreeMap<String, Authority>,
    pub leaves: BTreeMap<String, Leaf>,
}

impl std::fmt::Debug for PkiData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiData")
            .field("authorities", &self.authorities.keys().collect::<Vec<_>>())
            .field("leaves", &self.leaves.len())
            .finish()
    }
}

/// What a test needs to know about a certificate the emulator issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLeaf {
    pub id: String,
    pub der: Vec<u8>,
    pub serial_number: String,
    pub thumbprint: String,
}

/// What [`Directory::issue_leaf_certificate`] needs.
#[derive(Debug, Clone)]
pub struct LeafRequest<'a> {
    pub authority_id: &'a str,
    pub user_id: &'a str,
    pub device_name: &'a str,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Directory {
    /// Creates an issuing CA whose subject has several RDNs, a DC component and spaces in a value
    /// (`DC=contoso`, `O=Contoso`, `CN={display_name}`; rcgen keeps one value per attribute type and chooses the
    /// encoded order) and returns its id.
    pub fn add_cloud_ca(&self, tenant_id: &str, display_name: &str) -> anyhow::Result<String> {
        let tenant = self.try_tenant(tenant_id)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let dc = DnType::CustomDnType(DOMAIN_COMPONENT.to_vec());
        params.distinguished_name.push(dc, DnValue::Ia5String("contoso".try_into()?));
        params.distinguished_name.push(DnType::OrganizationName, "Contoso");
        params.distinguished_name.push(DnType::CommonName, display_name);
        params.not_before = self.now() - time::Duration::days(365);
        params.not_after = self.now() + time::Duration::days(3650);
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        let id = uuid::Uuid::new_v4().to_string();
        tenant
            .write()
            .pki
            .authorities
            .insert(id.clone(), Authority { id: id.clone(), display_name: display_name.to_owned(), issuer });
        Ok(id)
    }

    /// Issues a certificate to a user of the tenant, as Intune does for a device's SCEP request.
    pub fn issue_leaf_certificate(&self, tenant_id: &str, request: LeafRequest<'_>) -> anyhow::Result<IssuedLeaf> {
        let tenant = self.try_tenant(tenant_id)?;
        let upn = {
            let data = tenant.read();
            let user = data.users.get(request.user_id).ok_or_else(|| anyhow::anyhow!("no user {}", request.user_id))?;
            user.user_principal_name.clone()
        };
        let local_part = upn.split('@').next().unwrap_or(&upn).to_owned();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, local_part.clone());
        let mut serial: [u8; 16] = rand::random();
        serial[0] |= 0x01; // never a leading zero byte: the magnitude has exactly 16 bytes
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = request.not_before;
        params.not_after = request.not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let mut data = tenant.write();
        let authority = data
            .pki
            .authorities
            .get(request.authority_id)
            .ok_or_else(|| anyhow::anyhow!("no CA {}", request.authority_id))?;
        let certificate = params.signed_by(&key, &authority.issuer)?;
        let der = certificate.der().to_vec();
        let leaf = Leaf {
            id: uuid::Uuid::new_v4().to_string(),
            authority_id: request.authority_id.to_owned(),
            serial_number: hex_upper(&serial),
            thumbprint: hex_upper(&Sha1::digest(&der)),
            der,
            subject_name: format!("CN={local_part}"),
            user_id: request.user_id.to_owned(),
            user_principal_name: upn,
            device_name: request.device_name.to_owned(),
            not_before: request.not_before,
            not_after: request.not_after,
            revoked_at: None,
        };
        let issued = IssuedLeaf {
            id: leaf.id.clone(),
            der: leaf.der.clone(),
            serial_number: leaf.serial_number.clone(),
            thumbprint: leaf.thumbprint.clone(),
        };
        data.pki.leaves.insert(leaf.id.clone(), leaf);
        Ok(issued)
    }

    /// Revokes a certificate now (an administrator's action in Intune). Returns whether it existed.
    pub fn revoke_leaf_certificate(&self, tenant_id: &str, leaf_id: &str) -> bool {
        let now = self.now();
        self.tenant(tenant_id).is_some_and(|tenant| {
            tenant.write().pki.leaves.get_mut(leaf_id).map(|leaf| leaf.revoked_at = Some(now)).is_some()
        })
    }

    /// The CA's certificate (DER), as published at its `certificateDownloadUrl`.
    pub fn cloud_ca_certificate(&self, tenant_id: &str, authority_id: &str) -> Option<Vec<u8>> {
        let tenant = self.tenant(tenant_id)?;
        let data = tenant.read();
        data.pki.authorities.get(authority_id).map(|a| a.issuer.der().to_vec())
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
