//! Domain types parsed once at the edge, so the rest of the code never re-checks them
//! ("parse, don't validate"): directory object ids and certificateUserIds values.

mod certificate_user_id;
mod ids;

pub use certificate_user_id::{
    Binding, CertificateUserId, CertificateUserIdError, MAX_VALUE_CHARS, MAX_VALUES_PER_USER,
};
pub use ids::{GroupId, IdError, ObjectId, TenantId, UserId};
