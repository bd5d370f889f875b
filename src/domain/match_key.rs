//! The key Tenant A and Tenant B users are matched on (`MATCH_ON`): one [`Attribute`], read from both sides and
//! compared case-insensitively after trimming, as Entra compares UPNs and mail addresses.

use std::borrow::Cow;
use std::fmt;

use super::{Attribute, AttributeSource};

/// The attribute both sides are matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchKey(Attribute);

impl MatchKey {
    pub const CHOICES: &'static str =
        "upn-local-part, upn, mail, employee-id, sam-account-name, or extension:<property name>";

    pub fn parse(text: &str) -> Option<Self> {
        Attribute::from_match_on(text).map(Self)
    }

    pub fn attribute(&self) -> &Attribute {
        &self.0
    }

    /// The normalised key of a user, or `None` when the user lacks the attribute.
    pub fn key_of<U: AttributeSource + ?Sized>(&self, user: &U) -> Option<String> {
        self.borrowed_key_of(user).map(Cow::into_owned)
    }

    /// [`Self::key_of`], borrowed from the user when it is already in lower case (most UPNs): matching keys every
    /// member of both tenants at once.
    pub fn borrowed_key_of<'a, U: AttributeSource + ?Sized>(&self, user: &'a U) -> Option<Cow<'a, str>> {
        self.0.read(user).map(|value| {
            if value.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) {
                Cow::Owned(value.to_lowercase())
            } else {
                Cow::Borrowed(value)
            }
        })
    }
}

impl fmt::Display for MatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::attribute::TestUser;

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(MatchKey::parse("displayName").is_none());
        assert!(MatchKey::parse("extension:").is_none());
        assert!(MatchKey::parse("extension:extension_abc_badge").is_some());
    }

    #[test]
    fn the_choices_named_in_errors_are_every_match_on_name() {
        let named: Vec<&str> = Attribute::NAMED.iter().filter_map(Attribute::match_on_name).collect();
        assert_eq!(MatchKey::CHOICES, format!("{}, or extension:<property name>", named.join(", ")));
    }

    #[test]
    fn a_key_is_the_attribute_in_lower_case_borrowed_when_it_already_is() {
        let key = MatchKey::parse("upn-local-part").unwrap();
        let lower = TestUser(&[("userPrincipalName", "ada@a.example")]);
        let mixed = TestUser(&[("userPrincipalName", " ÄDA@a.example")]);
        assert!(matches!(key.borrowed_key_of(&lower), Some(Cow::Borrowed("ada"))));
        assert_eq!(key.key_of(&mixed).as_deref(), Some("äda"));
        assert_eq!(MatchKey::parse("mail").unwrap().key_of(&lower), None);
    }
}
