//! The only module that calls Microsoft Graph **beta**: Intune's record of the certificates it issued.
//!
//! Microsoft supports the Intune `/beta` APIs but warns they change more often than v1.0 [intune-cloudpkigraphservice-*
//! pages]; keeping every beta URL and field name here means a change there is one file to follow. Permission in
//! Tenant A: `DeviceManagementConfiguration.Read.All` (application) for leaf certificates and certificate states,
//! plus `DeviceManagementCloudCA.Read.All` to read the Cloud PKI CAs themselves
//! [intune-cloudpkigraphservice-cloudcertificationauthority-get].
//!
//! - Intune Cloud PKI: `GET /beta/deviceManagement/cloudCertificationAuthority` (the CAs, each with a
//!   `certificateDownloadUrl`), then per CA
//!   `GET …/cloudCertificationAuthority/{id}/cloudCertificationAuthorityLeafCertificate?$filter=certificateStatus eq 'active'`
//!   — `certificateStatus` supports `$filter`, so revoked and expired certificates are never transferred; a value of
//!   one that is no longer listed is removed by the next sync because nothing asks for it any more.
//! - Connector-based SCEP/PKCS: `GET /beta/deviceManagement/deviceConfigurationsAllManagedDeviceCertificateStates`.
//!   Revocation done at the CA itself does not show there [certificate-user-ids.md].
//!
//! This module returns the records as Graph spells them; turning them into bindings is [`crate::sync::issued`]'s job.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use url::Url;

use super::client::GraphRequest;
use super::{GraphClient, GraphError, operation};

/// A CA certificate is a few KB; anything far larger is not one.
const MAX_CA_CERTIFICATE_BYTES: usize = 64 * 1024;

/// A Cloud PKI certification authority [intune-cloudpkigraphservice-cloudcertificationauthority].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudCertificationAuthority {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub subject_name: Option<String>,
    /// SHA-1 of the CA's certificate, hex: what the downloaded certificate must hash to.
    #[serde(default)]
    pub thumbprint: Option<String>,
    /// Where the CA's own certificate is published (a public URL, not Graph: fetched without a token).
    #[serde(default)]
    pub certificate_download_url: Option<String>,
}

/// A certificate a Cloud PKI CA issued [intune-cloudpkigraphservice-cloudcertificationauthorityleafcertificate].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeafCertificateRecord {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub thumbprint: Option<String>,
    /// The Tenant A user the certificate was issued to.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub device_name: Option<String>,
    /// `unknown | active | revoked | expired | unknownFutureValue`.
    #[serde(default)]
    pub certificate_status: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub validity_start_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub validity_end_date_time: Option<OffsetDateTime>,
}

/// A certificate a connector-based SCEP/PKCS profile put on a device
/// [intune-deviceconfig-manageddevicecertificatestate].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStateRecord {
    #[serde(default)]
    pub certificate_serial_number: Option<String>,
    #[serde(default)]
    pub certificate_thumbprint: Option<String>,
    #[serde(default)]
    pub certificate_issuer_name: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub certificate_issuance_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub certificate_expiration_date_time: Option<OffsetDateTime>,
    /// `none | pending | issued | revoked | failed` (only `none` is a certificate nobody revoked).
    #[serde(default)]
    pub certificate_revoke_status: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub device_display_name: Option<String>,
}

impl GraphClient {
    /// Every Cloud PKI CA of the tenant.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant))]
    pub async fn cloud_certification_authorities(&self) -> Result<Vec<CloudCertificationAuthority>, GraphError> {
        let op = operation::LIST_CLOUD_CAS;
        let url = self.beta_url("deviceManagement/cloudCertificationAuthority", &[])?;
        decode_all(op, self.get_all_pages(op, url).await?)
    }

    /// The active certificates `authority` issued (`$filter=certificateStatus eq 'active'`).
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, authority = %authority))]
    pub async fn active_leaf_certificates(&self, authority: &str) -> Result<Vec<LeafCertificateRecord>, GraphError> {
        let op = operation::LIST_LEAF_CERTIFICATES;
        if authority.is_empty() || authority.contains(['/', '?', '#']) {
            return Err(GraphError::Decode { operation: op, detail: format!("the CA id {authority:?} is not an id") });
        }
        let url = self.beta_url(
            &format!(
                "deviceManagement/cloudCertificationAuthority/{authority}/cloudCertificationAuthorityLeafCertificate"
            ),
            &[("$filter", "certificateStatus eq 'active'")],
        )?;
        decode_all(op, self.get_all_pages(op, url).await?)
    }

    /// Every certificate state of the connector-based (SCEP/PKCS) profiles.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant))]
    pub async fn managed_device_certificate_states(&self) -> Result<Vec<CertificateStateRecord>, GraphError> {
        let op = operation::LIST_CERTIFICATE_STATES;
        let url = self.beta_url("deviceManagement/deviceConfigurationsAllManagedDeviceCertificateStates", &[])?;
        decode_all(op, self.get_all_pages(op, url).await?)
    }

    /// The DER (or PEM) bytes published at a CA's `certificateDownloadUrl`. The URL is public and not Graph, so no
    /// token is sent (the client sends its token to its Graph host only); http(s) only, at most 64 KiB.
    #[tracing::instrument(skip_all, fields(url = %url))]
    pub async fn download_ca_certificate(&self, url: &str) -> Result<Vec<u8>, GraphError> {
        let op = operation::DOWNLOAD_CA_CERTIFICATE;
        // Whoever answers this URL chooses the issuer in every `X509:<I>…<SR>…` value: https only (http to this
        // machine, for the emulator), and the caller checks the certificate against its CA record.
        let parsed = Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "https" || (u.scheme() == "http" && super::is_loopback(u)))
            .ok_or_else(|| GraphError::Decode { operation: op, detail: format!("{url:?} is not an https URL") })?;
        let request = GraphRequest { method: Method::GET, url: parsed, body: None, eventual: false };
        let response = self.execute(op, &request).await?;
        if response.body.len() > MAX_CA_CERTIFICATE_BYTES {
            return Err(GraphError::Decode {
                operation: op,
                detail: format!(
                    "{url} returned {} bytes, more than a CA certificate ({MAX_CA_CERTIFICATE_BYTES})",
                    response.body.len()
                ),
            });
        }
        Ok(response.body)
    }
}

fn decode_all<T: for<'de> Deserialize<'de>>(operation: &'static str, items: Vec<Value>) -> Result<Vec<T>, GraphError> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value(item)
                .map_err(|error| GraphError::Decode { operation, detail: format!("item {index}: {error}") })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_tolerantly_as_graph_spells_them() {
        let leaf: LeafCertificateRecord = serde_json::from_value(serde_json::json!({
            "@odata.type": "#microsoft.graph.cloudCertificationAuthorityLeafCertificate",
            "id": "leaf-1",
            "serialNumber": "0A1B",
            "thumbprint": "AB:CD",
            "userId": "11111111-1111-1111-1111-111111111111",
            "certificateStatus": "active",
            "validityStartDateTime": "2026-01-01T00:00:00Z",
            "validityEndDateTime": "2027-01-01T00:00:00.1234567Z",
            "revocationDateTime": null
        }))
        .unwrap();
        assert_eq!(leaf.serial_number.as_deref(), Some("0A1B"));
        assert_eq!(leaf.validity_end_date_time.unwrap().year(), 2027);
        assert_eq!(leaf.device_name, None);
    }
}
