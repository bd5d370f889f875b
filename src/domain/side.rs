//! Which tenant: the one spelling of "Tenant A or Tenant B" that settings, the core, the subscriptions and the
//! notification path share.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Tenant A is the device tenant (its Intune issues the certificates, its users are the source); Tenant B is the
/// resource tenant whose users' certificateUserIds are written.
///
/// `Display` is how messages name a side ("Tenant A"). `Debug` (`TenantA`) is part of the run report's text
/// ("Ambiguous key … in TenantB", "TenantA group …") and the JSON spells it `tenantA`: renaming a variant changes
/// both (docs/run-report.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    #[serde(rename = "tenantA")]
    TenantA,
    #[serde(rename = "tenantB")]
    TenantB,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: tables align it (`{:<10}`, `certsync subscriptions`).
        f.pad(match self {
            Self::TenantA => "Tenant A",
            Self::TenantB => "Tenant B",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_reads_as_the_tenant_in_messages_and_in_the_report() {
        assert_eq!(Side::TenantA.to_string(), "Tenant A");
        assert_eq!(format!("[{:<10}]", Side::TenantB), "[Tenant B  ]");
        assert_eq!(format!("{:?}", Side::TenantB), "TenantB");
        assert_eq!(serde_json::to_string(&[Side::TenantA, Side::TenantB]).unwrap(), r#"["tenantA","tenantB"]"#);
        assert!(Side::TenantA < Side::TenantB, "the changed groups of a run are listed Tenant A first");
    }
}
