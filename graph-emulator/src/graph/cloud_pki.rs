//! Intune Cloud PKI under `/beta/deviceManagement/` [intune-cloudpkigraphservice-cloudcertificationauthority-list,
//! intune-cloudpkigraphservice-cloudcertificationauthorityleafcertificate-list]. Beta only: v1.0 has no such segment.
//!
//! - `GET cloudCertificationAuthority`: the CAs, each with a `certificateDownloadUrl` (served by the emulator outside
//!   Graph, without authentication, like Microsoft's public PKI endpoints).
//! - `GET cloudCertificationAuthority/{id}/cloudCertificationAuthorityLeafCertificate` and the flat
//!   `GET cloudCertificationAuthorityLeafCertificate`: leaf records, paged with `$top`/`$skiptoken`, `$filter` on
//!   `certificateStatus eq '…'` (the only filterable property here; `userPrincipalName` is not filterable
//!   [certificate-user-ids.md]). Status is derived from the emulator clock ([`crate::pki::Leaf::status`]).

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::error::GraphError;
use super::query::{encode_skiptoken, skiptoken_position};
use super::{Ctx, Success};
use crate::pki::Leaf;

/// Application permissions of List cloudCertificationAuthorities: the page documents only ReadWrite.All (Get by id
/// documents DeviceManagementCloudCA.Read.All). [intune-cloudpkigraphservice-cloudcertificationauthority-list]
pub(crate) const CLOUD_CA_LIST: &[&str] = &["DeviceManagementCloudCA.ReadWrite.All"];
/// [intune-cloudpkigraphservice-cloudcertificationauthorityleafcertificate-list]
pub(crate) const LEAF_READ: &[&str] =
    &["DeviceManagementConfiguration.Read.All", "DeviceManagementConfiguration.ReadWrite.All"];

fn beta_only(ctx: &Ctx<'_>, segment: &str) -> Result<(), GraphError> {
    if ctx.req.version == "beta" {
        Ok(())
    } else {
        Err(GraphError::bad_request("BadRequest", format!("Resource not found for the segment '{segment}'.")))
    }
}

fn time_text(t: time::OffsetDateTime) -> Value {
    t.format(&Rfc3339).map(Value::String).unwrap_or(Value::Null)
}

pub(crate) fn list_authorities(ctx: &Ctx<'_>) -> Result<Success, GraphError> {
    beta_only(ctx, "cloudCertificationAuthority")?;
    let tenant_id = &ctx.claims.tid;
    let data = ctx.tenant.read();
    let items: Vec<Value> = data
        .pki
        .authorities
        .values()
        .map(|authority| {
            json!({
                "@odata.type": "#microsoft.graph.cloudCertificationAuthority",
                "id": authority.id,
                "displayName": authority.display_name,
                "certificationAuthorityStatus": "active",
                "cloudCertificationAuthorityType": "issuingCertificationAuthority",
                // Only the CN, one plausible reading of an undocumented format (the product accepts it or the
                // whole DN); the thumbprint is the SHA-1 of the certificate published at certificateDownloadUrl.
                "subjectName": format!("CN={}", authority.display_name),
                "thumbprint": authority.thumbprint(),
                "certificateDownloadUrl": format!("{}_pki/{tenant_id}/{}.cer", ctx.req.base, authority.id),
            })
        })
        .collect();
    Ok(Success::json(&json!({
        "@odata.context": ctx.req.context("deviceManagement/cloudCertificationAuthority"),
        "value": items,
    })))
}

pub(crate) fn list_leaves(ctx: &Ctx<'_>, authority: Option<&str>) -> Result<Success, GraphError> {
    beta_only(ctx, "cloudCertificationAuthorityLeafCertificate")?;
    let wanted_status = match ctx.query.filter.as_deref() {
        None => None,
        Some(filter) => Some(parse_status_filter(filter)?),
    };
    let now = ctx.state.directory.now();
    let page_size = ctx.query.page_size()?;
    let data = ctx.tenant.read();
    if let Some(id) = authority
        && !data.pki.authorities.contains_key(id)
    {
        return Err(GraphError::not_found(id));
    }
    let matching: Vec<&Leaf> = data
        .pki
        .leaves
        .values()
        .filter(|leaf| authority.is_none_or(|id| leaf.authority_id == id))
        .filter(|leaf| wanted_status.as_deref().is_none_or(|status| leaf.status(now) == status))
        .collect();
    let scope = ctx.req.path.as_str();
    let start = skiptoken_position(ctx.query, scope)?;
    let end = (start + page_size).min(matching.len());
    let page = &matching[start.min(end)..end];
    let items: Vec<Value> = page.iter().map(|leaf| leaf_json(leaf, now)).collect();
    let mut body = json!({
        "@odata.context": ctx.req.context("deviceManagement/cloudCertificationAuthorityLeafCertificate"),
        "value": items,
    });
    if end < matching.len() {
        body["@odata.nextLink"] =
            Value::String(ctx.req.link(&ctx.query.with_skiptoken(&encode_skiptoken(scope, &end.to_string()))));
    }
    Ok(Success::json(&body))
}

fn leaf_json(leaf: &Leaf, now: time::OffsetDateTime) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.cloudCertificationAuthorityLeafCertificate",
        "id": leaf.id,
        "subjectName": leaf.subject_name,
        "issuerId": leaf.authority_id,
        "serialNumber": leaf.serial_number,
        "thumbprint": leaf.thumbprint,
        "userId": leaf.user_id,
        "userPrincipalName": leaf.user_principal_name,
        "deviceName": leaf.device_name,
        "certificateStatus": leaf.status(now),
        "revocationDateTime": leaf.revoked_at.map_or(Value::Null, time_text),
        "validityStartDateTime": time_text(leaf.not_before),
        "validityEndDateTime": time_text(leaf.not_after),
        "keyUsages": ["digitalSignature", "keyEncipherment"],
        "extendedKeyUsages": ["1.3.6.1.5.5.7.3.2"],
    })
}

/// `certificateStatus eq 'active'` → `active`; anything else is refused as Graph refuses an unsupported filter.
fn parse_status_filter(filter: &str) -> Result<String, GraphError> {
    let refuse = || GraphError::bad_request("BadRequest", format!("Invalid filter clause: {filter}"));
    let rest = filter.trim().strip_prefix("certificateStatus").ok_or_else(refuse)?.trim_start();
    let rest = rest.strip_prefix("eq").ok_or_else(refuse)?.trim();
    let value = rest.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).ok_or_else(refuse)?;
    match value {
        "unknown" | "active" | "revoked" | "expired" | "unknownFutureValue" => Ok(value.to_owned()),
        _ => Err(refuse()),
    }
}
