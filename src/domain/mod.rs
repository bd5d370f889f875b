//! Domain types parsed once at the edge, so the rest of the code never re-checks them ("parse, don't validate"):
//! directory object ids and certificateUserIds values, and the value types settings and the sync core share (which
//! tenant, the attribute users are matched on, templates, where certificates come from, the removal guard).
//! Nothing here imports from the rest of the crate: configuration and the core both import downward, into this module.

mod attribute;
mod certificate_source;
mod certificate_user_id;
mod dn;
mod ids;
mod match_key;
mod removal_threshold;
mod side;
mod template;

pub use attribute::{Attribute, AttributeSource};
pub use certificate_source::{CertificateSource, KnownIssuer, SerialOrder, Sha1Reading};
pub use certificate_user_id::{
    Binding, CertificateUserId, CertificateUserIdError, MAX_VALUE_CHARS, MAX_VALUES_PER_USER,
};
pub use dn::{escape_dn_value, escape_dn_value_part};
pub use ids::{GroupId, IdError, ObjectId, TenantId, UserId};
pub use match_key::MatchKey;
pub use removal_threshold::RemovalThreshold;
pub use side::Side;
pub use template::{CertificateField, CertificateFields, PRESETS, Preset, RenderError, Template, TemplateError};
