//! Directory object ids. Entra object ids (users, groups) are GUIDs; a tenant may also be named by one of its
//! domains (`contoso.onmicrosoft.com`), as the token endpoint accepts both.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is not valid: expected {expected}")]
pub struct IdError {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

/// A GUID as its 36 lower-case characters, kept inline. Ids are copied into every map of a run (members, ledger, plan,
/// report); a heap string per copy was about a fifth of a 100,000-user run's peak memory (BENCHMARKS.md).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Guid([u8; 36]);

impl Guid {
    fn as_str(&self) -> &str {
        // Always ASCII: only `parse_guid` writes it, through the uuid crate's hex encoder.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Parses a GUID in its canonical 8-4-4-4-12 form and lower-cases it, because Graph compares ids
/// case-insensitively but echoes them in lower case: keeping one form makes ids usable as map keys. Byte order of the
/// lower-case text is the order of the strings, so ids sort as Graph's text does.
fn parse_guid(kind: &'static str, value: &str) -> Result<Guid, IdError> {
    let trimmed = value.trim();
    uuid::Uuid::try_parse(trimmed)
        .ok()
        .filter(|_| trimmed.len() == 36)
        .map(|guid| {
            let mut text = [0u8; 36];
            guid.hyphenated().encode_lower(&mut text);
            Guid(text)
        })
        .ok_or_else(|| IdError {
            kind,
            value: value.to_owned(),
            expected: "a GUID such as 00000000-0000-0000-0000-000000000000",
        })
}

macro_rules! guid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Guid);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                parse_guid($kind, value).map(Self)
            }

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.as_str()).finish()
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }
    };
}

guid_id!(
    /// The object id of a group.
    GroupId,
    "group id"
);
guid_id!(
    /// The object id of a user.
    UserId,
    "user id"
);
guid_id!(
    /// The object id of any directory object (a group member may be a user, device, group or service principal).
    ObjectId,
    "object id"
);

/// A tenant: its GUID, or one of its DNS domain names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if let Ok(guid) = parse_guid("tenant id", value) {
            return Ok(Self(guid.as_str().to_owned()));
        }
        let domain = value.trim().to_ascii_lowercase();
        let is_domain = domain.contains('.')
            && domain.len() <= 253
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if is_domain {
            Ok(Self(domain))
        } else {
            Err(IdError {
                kind: "tenant id",
                value: value.to_owned(),
                expected: "a tenant GUID or a domain such as contoso.onmicrosoft.com",
            })
        }
    }

    /// Whether this is the tenant's GUID rather than one of its domain names.
    pub fn is_guid(&self) -> bool {
        parse_guid("tenant id", &self.0).is_ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(&value)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_normalised_to_lower_case() {
        let id = UserId::parse(" 6E7B768E-07E2-4810-8459-485F84F8F204 ").unwrap();
        assert_eq!(id.as_str(), "6e7b768e-07e2-4810-8459-485f84f8f204");
    }

    #[test]
    fn ids_sort_compare_and_serialize_as_their_text() {
        let ids = [
            "f0000000-0000-0000-0000-000000000000",
            "0a000000-0000-0000-0000-000000000000",
            "a0000000-0000-0000-0000-000000000000",
        ];
        let mut parsed: Vec<UserId> = ids.iter().map(|id| UserId::parse(id).unwrap()).collect();
        parsed.sort();
        let mut text = ids.to_vec();
        text.sort();
        assert_eq!(parsed.iter().map(UserId::as_str).collect::<Vec<_>>(), text);
        assert_eq!(serde_json::to_string(&parsed[0]).unwrap(), format!("\"{}\"", text[0]));
        assert_eq!(format!("{:?}", parsed[0]), format!("UserId({:?})", text[0]));
        assert_eq!(serde_json::from_str::<UserId>("\"A0000000-0000-0000-0000-000000000000\"").unwrap(), parsed[1]);
    }

    #[test]
    fn non_guids_are_rejected_with_the_kind_of_id_named() {
        for bad in ["", "not-a-guid", "6e7b768e07e248108459485f84f8f204", "{6e7b768e-07e2-4810-8459-485f84f8f204}"] {
            let err = GroupId::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("group id"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn tenants_accept_guids_and_domains_only() {
        assert!(TenantId::parse("contoso.onmicrosoft.com").is_ok());
        assert!(TenantId::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").is_ok());
        for bad in ["contoso", "-bad.com", "a..b", "x y.com", ""] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
