//! The user attributes a match key (`MATCH_ON`) or a template placeholder reads, and the one way they are read from
//! a user: through [`AttributeSource`], which the Graph user type implements.
//!
//! Everything about one attribute is on [`Attribute`], one `match` per fact: its `MATCH_ON` name, its template
//! placeholders, the Graph property to `$select`, how the value comes from that property, a sample value for checking
//! templates at start-up, and how messages name it. Adding an attribute is a variant, an arm in each of those (the
//! compiler lists them) and an entry in [`Attribute::NAMED`]. The Graph user keeps every selected property it does not
//! hold by name, so reading a new one needs no change there.

use std::fmt;

/// A user whose Graph properties an [`Attribute`] can be read from.
pub trait AttributeSource {
    /// The value of a selected string property by its Graph name (`userPrincipalName`, `mail`, `department`, an
    /// extension attribute…); `None` when it was not selected or has no value.
    fn property(&self, name: &str) -> Option<&str>;

    /// A selected property that is none of those the user type holds by name: what `{ext:…}` and
    /// `MATCH_ON=extension:…` read. `extension:mail` finds nothing here, as it never has.
    fn extension(&self, name: &str) -> Option<&str>;
}

impl<T: AttributeSource + ?Sized> AttributeSource for &T {
    fn property(&self, name: &str) -> Option<&str> {
        (**self).property(name)
    }

    fn extension(&self, name: &str) -> Option<&str> {
        (**self).extension(name)
    }
}

/// A source-user attribute a template (or the matching key) can read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    Upn,
    LocalPart,
    Mail,
    EmployeeId,
    SamAccountName,
    Extension(String),
}

impl Attribute {
    /// Every attribute with a name of its own (all but [`Attribute::Extension`]), in the order `MATCH_ON`'s choices
    /// list them.
    pub const NAMED: [Attribute; 5] = [Self::LocalPart, Self::Upn, Self::Mail, Self::EmployeeId, Self::SamAccountName];

    /// The attribute `MATCH_ON` names: `upn-local-part`, … or `extension:<property>`.
    pub fn from_match_on(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Some(named) = Self::NAMED.into_iter().find(|a| a.match_on_name() == Some(text)) {
            return Some(named);
        }
        match text.strip_prefix("extension:") {
            Some(name) if !name.trim().is_empty() => Some(Self::Extension(name.trim().to_owned())),
            _ => None,
        }
    }

    /// The attribute a template placeholder names (the text between `{` and `}`): `upn`, … or `ext:<property>`.
    pub fn from_placeholder(name: &str) -> Option<Self> {
        if let Some(named) = Self::NAMED.into_iter().find(|a| a.placeholders().contains(&name)) {
            return Some(named);
        }
        match name.strip_prefix("ext:") {
            Some(property) if !property.is_empty() => Some(Self::Extension(property.to_owned())),
            _ => None,
        }
    }

    /// Its spelling in `MATCH_ON` (README "Settings"); an extension is `extension:<property>`.
    pub fn match_on_name(&self) -> Option<&'static str> {
        match self {
            Self::LocalPart => Some("upn-local-part"),
            Self::Upn => Some("upn"),
            Self::Mail => Some("mail"),
            Self::EmployeeId => Some("employee-id"),
            Self::SamAccountName => Some("sam-account-name"),
            Self::Extension(_) => None,
        }
    }

    /// Its template placeholders, the documented one first (README "Choosing the mapping"); an extension is
    /// `{ext:<property>}`.
    pub fn placeholders(&self) -> &'static [&'static str] {
        match self {
            Self::Upn => &["upn"],
            // `{username}`: the name Intune's `{{UserName}}` gives the same text.
            Self::LocalPart => &["localpart", "username"],
            Self::Mail => &["mail"],
            Self::EmployeeId => &["employeeId"],
            Self::SamAccountName => &["samAccountName"],
            Self::Extension(_) => &[],
        }
    }

    /// The Graph property to `$select` to be able to read this attribute.
    pub fn graph_property(&self) -> &str {
        match self {
            Self::Upn | Self::LocalPart => "userPrincipalName",
            Self::Mail => "mail",
            Self::EmployeeId => "employeeId",
            Self::SamAccountName => "onPremisesSamAccountName",
            Self::Extension(name) => name,
        }
    }

    /// The attribute's value for `user`, trimmed; `None` when the user has none (or only blanks).
    pub fn read<'a, U: AttributeSource + ?Sized>(&self, user: &'a U) -> Option<&'a str> {
        let value = match self {
            Self::LocalPart => user.property(self.graph_property()).and_then(|upn| upn.split('@').next()),
            Self::Upn | Self::Mail | Self::EmployeeId | Self::SamAccountName => user.property(self.graph_property()),
            Self::Extension(name) => user.extension(name),
        };
        value.map(str::trim).filter(|v| !v.is_empty())
    }

    /// A plausible value, to check at start-up that a template using the attribute gives a valid value.
    pub fn sample(&self) -> &'static str {
        match self {
            Self::Upn | Self::Mail => "sample@contoso.com",
            Self::LocalPart | Self::EmployeeId | Self::SamAccountName | Self::Extension(_) => "sample",
        }
    }
}

/// How messages name the attribute ("the Tenant A user has no mail").
impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Upn => f.write_str("userPrincipalName"),
            Self::LocalPart => f.write_str("userPrincipalName (part before @)"),
            Self::Mail => f.write_str("mail"),
            Self::EmployeeId => f.write_str("employeeId"),
            Self::SamAccountName => f.write_str("onPremisesSamAccountName"),
            Self::Extension(name) => f.write_str(name),
        }
    }
}

/// A user as a list of Graph properties, for the tests of this module and of the types that read attributes.
#[cfg(test)]
pub(crate) struct TestUser<'a>(pub &'a [(&'a str, &'a str)]);

#[cfg(test)]
impl AttributeSource for TestUser<'_> {
    fn property(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn extension(&self, name: &str) -> Option<&str> {
        self.property(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_attribute_is_found_by_each_of_its_names() {
        for attribute in Attribute::NAMED {
            let name = attribute.match_on_name().expect("a named attribute has a MATCH_ON name");
            assert_eq!(Attribute::from_match_on(&format!(" {name} ")), Some(attribute.clone()), "{name}");
            assert!(!attribute.placeholders().is_empty(), "{attribute:?} has no placeholder");
            for placeholder in attribute.placeholders() {
                assert_eq!(Attribute::from_placeholder(placeholder), Some(attribute.clone()), "{placeholder}");
            }
        }
        // NAMED is every variant but Extension: a new variant fails to compile here until it is placed.
        let named = |attribute: &Attribute| match attribute {
            Attribute::Upn
            | Attribute::LocalPart
            | Attribute::Mail
            | Attribute::EmployeeId
            | Attribute::SamAccountName => true,
            Attribute::Extension(_) => false,
        };
        assert!(Attribute::NAMED.iter().all(named));
        assert_eq!(Attribute::NAMED.len(), 5, "NAMED lists each named variant once");
    }

    #[test]
    fn an_extension_is_named_with_its_prefix_and_a_property() {
        let badge = Some(Attribute::Extension("extension_abc_badge".into()));
        assert_eq!(Attribute::from_match_on("extension: extension_abc_badge "), badge);
        assert_eq!(Attribute::from_placeholder("ext:extension_abc_badge"), badge);
        for empty in ["extension:", "extension:  "] {
            assert_eq!(Attribute::from_match_on(empty), None, "{empty:?}");
        }
        assert_eq!(Attribute::from_placeholder("ext:"), None);
        assert_eq!(Attribute::from_match_on("displayName"), None);
        assert_eq!(Attribute::from_placeholder("nickname"), None);
    }

    #[test]
    fn values_are_read_from_the_graph_property_and_trimmed() {
        let ada = TestUser(&[
            ("userPrincipalName", "Ada.L@tenant-a.example"),
            ("mail", "  "),
            ("employeeId", " 42 "),
            ("extension_abc_badge", "B-1"),
        ]);
        assert_eq!(Attribute::Upn.read(&ada), Some("Ada.L@tenant-a.example"));
        assert_eq!(Attribute::LocalPart.read(&ada), Some("Ada.L"));
        assert_eq!(Attribute::Mail.read(&ada), None, "a blank value is no value");
        assert_eq!(Attribute::EmployeeId.read(&ada), Some("42"));
        assert_eq!(Attribute::SamAccountName.read(&ada), None);
        assert_eq!(Attribute::Extension("extension_abc_badge".into()).read(&ada), Some("B-1"));
    }
}
