//! A value of `user.authorizationInfo.certificateUserIds`: one of the seven documented binding patterns.
//!
//! Source: Microsoft Entra, "Certificate user IDs" (concept-certificate-based-authentication-certificateuserids):
//! at most 10 values per user, each at most 1,024 characters, unique in the tenant; the `X509:<…>` prefixes are
//! case-sensitive. Values the tool *reads* from a user stay plain strings (an administrator may have written anything);
//! only values the tool *writes* must be a `CertificateUserId`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Graph rejects an 11th value (older pages said 5; the current limit is 10).
pub const MAX_VALUES_PER_USER: usize = 10;
/// Graph rejects a value longer than this.
pub const MAX_VALUE_CHARS: usize = 1024;

/// The username-binding field a value maps to. The first four are low-affinity (any certificate from a trusted CA carrying
/// that name signs in); the last three are high-affinity (they pin one certificate or key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Binding {
    PrincipalName,
    Rfc822Name,
    Subject,
    IssuerAndSubject,
    SubjectKeyIdentifier,
    Sha1PublicKey,
    IssuerAndSerialNumber,
}

impl Binding {
    pub fn is_high_affinity(self) -> bool {
        matches!(self, Self::SubjectKeyIdentifier | Self::Sha1PublicKey | Self::IssuerAndSerialNumber)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateUserIdError {
    #[error(
        "certificateUserIds value {value:?} does not start with one of the documented prefixes \
         X509:<PN>, X509:<RFC822>, X509:<S>, X509:<I>…<S>, X509:<I>…<SR>, X509:<SKI>, X509:<SHA1-PUKEY> (they are case-sensitive)"
    )]
    UnknownPattern { value: String },
    #[error("certificateUserIds value {value:?} has nothing after its {prefix} prefix")]
    Empty { value: String, prefix: &'static str },
    #[error(
        "certificateUserIds value is {chars} characters long; Microsoft Entra accepts at most {MAX_VALUE_CHARS}: {prefix}…"
    )]
    TooLong { chars: usize, prefix: String },
    #[error("certificateUserIds value {value:?} must be hexadecimal after {prefix}")]
    NotHex { value: String, prefix: &'static str },
    #[error("certificateUserIds value {value:?} contains a control character")]
    ControlCharacter { value: String },
}

/// A validated certificateUserIds value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CertificateUserId(String);

impl CertificateUserId {
    pub fn parse(value: &str) -> Result<Self, CertificateUserIdError> {
        Self::binding_of(value).map(|_| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn binding(&self) -> Binding {
        Self::binding_of(&self.0).expect("validated at construction")
    }

    /// Classifies `value`, or says what is wrong with it.
    pub fn binding_of(value: &str) -> Result<Binding, CertificateUserIdError> {
        let chars = value.chars().count();
        if chars > MAX_VALUE_CHARS {
            return Err(CertificateUserIdError::TooLong { chars, prefix: value.chars().take(40).collect() });
        }
        if value.chars().any(char::is_control) {
            return Err(CertificateUserIdError::ControlCharacter { value: value.to_owned() });
        }
        let non_empty = |rest: &str, prefix: &'static str| {
            if rest.trim().is_empty() {
                Err(CertificateUserIdError::Empty { value: value.to_owned(), prefix })
            } else {
                Ok(())
            }
        };
        let hex = |rest: &str, prefix: &'static str| {
            non_empty(rest, prefix)?;
            if rest.chars().all(|c| c.is_ascii_hexdigit()) {
                Ok(())
            } else {
                Err(CertificateUserIdError::NotHex { value: value.to_owned(), prefix })
            }
        };
        if let Some(rest) = value.strip_prefix("X509:<PN>") {
            non_empty(rest, "X509:<PN>").map(|_| Binding::PrincipalName)
        } else if let Some(rest) = value.strip_prefix("X509:<RFC822>") {
            non_empty(rest, "X509:<RFC822>").map(|_| Binding::Rfc822Name)
        } else if let Some(rest) = value.strip_prefix("X509:<SKI>") {
            hex(rest, "X509:<SKI>").map(|_| Binding::SubjectKeyIdentifier)
        } else if let Some(rest) = value.strip_prefix("X509:<SHA1-PUKEY>") {
            hex(rest, "X509:<SHA1-PUKEY>").map(|_| Binding::Sha1PublicKey)
        } else if let Some(rest) = value.strip_prefix("X509:<S>") {
            non_empty(rest, "X509:<S>").map(|_| Binding::Subject)
        } else if let Some(rest) = value.strip_prefix("X509:<I>") {
            // The issuer DN itself may not contain "<SR>" or "<S>", so the first marker splits it.
            if let Some((issuer, serial)) = rest.split_once("<SR>") {
                non_empty(issuer, "X509:<I>")?;
                hex(serial, "<SR>").map(|_| Binding::IssuerAndSerialNumber)
            } else if let Some((issuer, subject)) = rest.split_once("<S>") {
                non_empty(issuer, "X509:<I>")?;
                non_empty(subject, "<S>").map(|_| Binding::IssuerAndSubject)
            } else {
                Err(CertificateUserIdError::UnknownPattern { value: value.to_owned() })
            }
        } else {
            Err(CertificateUserIdError::UnknownPattern { value: value.to_owned() })
        }
    }
}

impl TryFrom<String> for CertificateUserId {
    type Error = CertificateUserIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::binding_of(&value).map(|_| Self(value))
    }
}

impl From<CertificateUserId> for String {
    fn from(value: CertificateUserId) -> String {
        value.0
    }
}

impl fmt::Display for CertificateUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seven_documented_examples_parse_to_their_binding() {
        // Examples from concept-certificate-based-authentication-certificateuserids.
        let cases = [
            ("X509:<PN>bob@woodgrove.com", Binding::PrincipalName),
            ("X509:<RFC822>user@woodgrove.com", Binding::Rfc822Name),
            ("X509:<S>DC=com,DC=contoso,OU=UserAccounts,CN=mfatest", Binding::Subject),
            (
                "X509:<I>DC=com,DC=contoso,CN=CONTOSO-DC-CA<S>DC=com,DC=contoso,OU=UserAccounts,CN=mfatest",
                Binding::IssuerAndSubject,
            ),
            ("X509:<SKI>123456789abcdef", Binding::SubjectKeyIdentifier),
            ("X509:<SHA1-PUKEY>123456789abcdef", Binding::Sha1PublicKey),
            (
                "X509:<I>C=US,O=U.S. Government,OU=DoD,OU=PKI,CN=DOD ID CA-59<SR>b24134139f069b49997212a86ba0ef48",
                Binding::IssuerAndSerialNumber,
            ),
        ];
        for (value, binding) in cases {
            let parsed = CertificateUserId::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(parsed.binding(), binding, "{value}");
        }
    }

    #[test]
    fn prefixes_are_case_sensitive() {
        for value in ["x509:<PN>bob@woodgrove.com", "X509:<pn>bob@woodgrove.com", "X509:<Pn>bob"] {
            assert!(
                matches!(CertificateUserId::parse(value), Err(CertificateUserIdError::UnknownPattern { .. })),
                "{value}"
            );
        }
    }

    #[test]
    fn a_value_over_1024_characters_is_rejected_and_the_error_names_the_limit() {
        let value = format!("X509:<PN>{}", "a".repeat(1016));
        assert_eq!(value.chars().count(), 1025);
        let err = CertificateUserId::parse(&value).unwrap_err();
        assert!(err.to_string().contains("at most 1024"), "{err}");
        assert!(CertificateUserId::parse(&value[..1024]).is_ok());
    }

    #[test]
    fn empty_and_non_hex_payloads_are_rejected() {
        assert!(matches!(CertificateUserId::parse("X509:<PN>"), Err(CertificateUserIdError::Empty { .. })));
        assert!(matches!(CertificateUserId::parse("X509:<SKI>xyz"), Err(CertificateUserIdError::NotHex { .. })));
        assert!(matches!(
            CertificateUserId::parse("X509:<I>CN=CA<SR>12 34"),
            Err(CertificateUserIdError::NotHex { .. })
        ));
        assert!(matches!(
            CertificateUserId::parse("X509:<I>CN=CA"),
            Err(CertificateUserIdError::UnknownPattern { .. })
        ));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(value in "\\PC{0,64}|X509:<(PN|S|RFC822|SKI|SHA1-PUKEY|I)>\\PC{0,40}") {
            if let Ok(parsed) = CertificateUserId::parse(&value) {
                prop_assert_eq!(parsed.as_str(), value.as_str());
            }
        }
    }
}
