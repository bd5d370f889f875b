//! Templates that turn a matched Tenant A user into the certificateUserIds values Tenant B needs.
//!
//! A template is a documented value pattern with placeholders for the **source (Tenant A) user's** attributes, because
//! the certificate is issued by Tenant A's Intune to that user: `{upn}`, `{localpart}` (the UPN before `@`, what Intune's
//! `{{UserName}}` puts in a SCEP subject), `{mail}`, `{employeeId}`, `{samAccountName}`, `{ext:<property>}`.
//! A template may also use the certificates Intune issued to that user (a pair with a [`super::CertificateSource`],
//! read by the core's `sync/issued.rs`): `{issuer}` (the issuing CA's DN), `{serial}` (in the configured byte order) and
//! `{sha1PublicKey}` (the thumbprint). Such a template gives one value per usable certificate.
//! Templates are checked at start-up against the seven patterns of
//! concept-certificate-based-authentication-certificateuserids, so a typo fails the deployment, not a user.

use std::fmt;

use super::{Attribute, AttributeSource, Binding, CertificateUserId, CertificateUserIdError, escape_dn_value_part};

/// A named, documented choice of templates (see README "Choosing the certificateUserIds mapping").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub template: &'static str,
    pub when: &'static str,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "runbook",
        template: "X509:<PN>CN={localpart}",
        when: "exactly what the seed-000 runbook wrote; keep it only if Tenant B's username binding already relies on it",
    },
    Preset {
        name: "principal-name",
        template: "X509:<PN>{upn}",
        when: "certificates carry the Tenant A UPN in the SAN Principal Name (Intune SCEP/PKCS profiles with a UPN SAN)",
    },
    Preset {
        name: "subject-cn",
        template: "X509:<S>CN={localpart}",
        when: "certificates whose only user name is the subject CN={{UserName}} (the seed-000 SCEP profile)",
    },
    Preset {
        name: "rfc822",
        template: "X509:<RFC822>{mail}",
        when: "certificates carry the user's e-mail address in the SAN RFC822 name",
    },
    Preset {
        name: "issuer-serial",
        template: "X509:<I>{issuer}<SR>{serial}",
        when: "high affinity: each certificate Intune issued to the user (needs CERTIFICATE_SOURCE); Microsoft's recommendation",
    },
    Preset {
        name: "sha1-public-key",
        template: "X509:<SHA1-PUKEY>{sha1PublicKey}",
        when: "high affinity: each certificate Intune issued to the user, by thumbprint (needs CERTIFICATE_SOURCE)",
    },
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?} has an unclosed '{{'")]
    Unclosed { template: String },
    #[error(
        "template {template:?} uses unknown placeholder {{{name}}}; known: {{upn}}, {{localpart}}, {{mail}}, {{employeeId}}, {{samAccountName}}, {{ext:<property>}}, and from a certificate source {{issuer}}, {{serial}}, {{sha1PublicKey}}"
    )]
    UnknownPlaceholder { template: String, name: String },
    #[error("template {template:?} would not produce a valid value: {source}")]
    Pattern {
        template: String,
        #[source]
        source: CertificateUserIdError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Literal(String),
    Attribute(AttributePart),
    Certificate(CertificateField),
}

/// A Tenant A attribute in a template, and where it lands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AttributePart {
    attribute: Attribute,
    /// Inside a DN (after `<S>` or `<I>`, before `<SR>`): the value is escaped as DN values are ([`escape_dn_value_part`]).
    in_dn: bool,
    /// Right after `=`: the attribute starts a DN value (a leading `#` or space needs a `\`).
    starts_value: bool,
    /// Right before `,`, `+` or the end: the attribute ends a DN value (a trailing space needs a `\`).
    ends_value: bool,
}

/// The binding markers a template's literal text may hold, and whether what follows each is a DN.
const MARKERS: &[(&str, bool)] = &[
    ("<SR>", false),
    ("<S>", true),
    ("<I>", true),
    ("<PN>", false),
    ("<RFC822>", false),
    ("<SKI>", false),
    ("<SHA1-PUKEY>", false),
];

/// Whether text after `literal` is inside a DN, given whether the text before it was.
fn in_dn_after(literal: &str, before: bool) -> bool {
    let last =
        MARKERS.iter().filter_map(|(marker, dn)| literal.rfind(marker).map(|at| (at, *dn))).max_by_key(|(at, _)| *at);
    last.map_or(before, |(_, dn)| dn)
}

/// A part of an issued certificate a template can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateField {
    Issuer,
    Serial,
    Sha1PublicKey,
}

/// One certificate's fields, already spelled as the settings say.
#[derive(Debug, Clone, Copy)]
pub struct CertificateFields<'a> {
    pub issuer: &'a str,
    pub serial: &'a str,
    pub sha1_public_key: &'a str,
}

/// One parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Why a template produced no value for a user: reported as a skip reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the Tenant A user has no {attribute}, which template {template:?} needs")]
    MissingAttribute { template: String, attribute: String },
    #[error(
        "the Tenant A user's {attribute} holds '<' or '>', which would change what kind of value template {template:?} \
         writes: not written for this user"
    )]
    Marker { template: String, attribute: String },
    #[error("template {template:?} gives an invalid value for this user: {source}")]
    Invalid {
        template: String,
        #[source]
        source: CertificateUserIdError,
    },
}

impl Template {
    /// Parses a template or a preset name.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let text = text.trim();
        let text = PRESETS.iter().find(|p| p.name == text).map_or(text, |p| p.template);
        let mut parts = Vec::new();
        let mut rest = text;
        let mut in_dn = false;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                in_dn = in_dn_after(&rest[..open], in_dn);
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| TemplateError::Unclosed { template: text.to_owned() })?;
            let name = &after[..close];
            let part = match name {
                "issuer" => Part::Certificate(CertificateField::Issuer),
                "serial" => Part::Certificate(CertificateField::Serial),
                "sha1PublicKey" => Part::Certificate(CertificateField::Sha1PublicKey),
                other => {
                    let attribute = Attribute::from_placeholder(other).ok_or_else(|| {
                        TemplateError::UnknownPlaceholder { template: text.to_owned(), name: other.to_owned() }
                    })?;
                    let follows = &after[close + 1..];
                    Part::Attribute(AttributePart {
                        attribute,
                        in_dn,
                        starts_value: rest[..open].ends_with('='),
                        ends_value: follows.is_empty()
                            || follows.starts_with([',', '+'])
                            || follows.starts_with("<SR>"),
                    })
                }
            };
            parts.push(part);
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        let template = Self { source: text.to_owned(), parts };
        // Check the pattern with a plausible sample for every placeholder, so `X509:<SKI>{upn}` or a
        // lower-case prefix fails at start-up rather than on every user.
        let sample = template.render_with(
            |attribute| Some(attribute.sample()),
            Some(CertificateFields {
                issuer: "CN=Sample CA",
                serial: "0a1b",
                sha1_public_key: "0102030405060708090A0B0C0D0E0F1011121314",
            }),
        );
        match sample {
            Ok(_) => Ok(template),
            Err(RenderError::Invalid { source, .. }) => {
                Err(TemplateError::Pattern { template: text.to_owned(), source })
            }
            Err(RenderError::MissingAttribute { .. } | RenderError::Marker { .. }) => {
                unreachable!("the sample provides every attribute, without a marker")
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The binding this template produces (its prefix is fixed, so every value has the same binding).
    pub fn binding(&self) -> Option<Binding> {
        let zeros = "0000000000000000000000000000000000000000";
        let fields = CertificateFields { issuer: "CN=0", serial: "00", sha1_public_key: zeros };
        self.render_with(|_| Some("0"), Some(fields)).ok().map(|v| v.binding())
    }

    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.parts.iter().filter_map(|p| match p {
            Part::Attribute(a) => Some(&a.attribute),
            Part::Literal(_) | Part::Certificate(_) => None,
        })
    }

    /// Whether this template reads an issued certificate (and so gives one value per certificate).
    pub fn is_per_certificate(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Certificate(_)))
    }

    /// The value for `user`. A per-certificate template needs [`Self::render_for_certificate`].
    pub fn render<U: AttributeSource + ?Sized>(&self, user: &U) -> Result<CertificateUserId, RenderError> {
        self.render_with(|attribute| attribute.read(user), None)
    }

    /// The value for one certificate issued to `user`.
    pub fn render_for_certificate<U: AttributeSource + ?Sized>(
        &self,
        user: &U,
        certificate: CertificateFields<'_>,
    ) -> Result<CertificateUserId, RenderError> {
        self.render_with(|attribute| attribute.read(user), Some(certificate))
    }

    fn render_with<'a>(
        &self,
        read: impl Fn(&Attribute) -> Option<&'a str>,
        certificate: Option<CertificateFields<'_>>,
    ) -> Result<CertificateUserId, RenderError> {
        let mut value = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => value.push_str(text),
                Part::Attribute(part) => {
                    let attribute = &part.attribute;
                    let text = read(attribute).ok_or_else(|| RenderError::MissingAttribute {
                        template: self.source.clone(),
                        attribute: attribute.to_string(),
                    })?;
                    // The kind of value is read from its markers (`<S>`, `<SR>`, …): an attribute may not add one.
                    if text.contains(['<', '>']) {
                        return Err(RenderError::Marker {
                            template: self.source.clone(),
                            attribute: attribute.to_string(),
                        });
                    }
                    if part.in_dn {
                        value.push_str(&escape_dn_value_part(text, part.starts_value, part.ends_value));
                    } else {
                        value.push_str(text);
                    }
                }
                Part::Certificate(field) => {
                    let fields = certificate.ok_or_else(|| RenderError::MissingAttribute {
                        template: self.source.clone(),
                        attribute: "issued certificate".to_owned(),
                    })?;
                    value.push_str(match field {
                        CertificateField::Issuer => fields.issuer,
                        CertificateField::Serial => fields.serial,
                        CertificateField::Sha1PublicKey => fields.sha1_public_key,
                    });
                }
            }
        }
        CertificateUserId::parse(&value)
            .map_err(|source| RenderError::Invalid { template: self.source.clone(), source })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::attribute::TestUser;

    #[test]
    fn presets_expand_to_their_documented_templates() {
        assert_eq!(Template::parse("runbook").unwrap().as_str(), "X509:<PN>CN={localpart}");
        assert_eq!(Template::parse("subject-cn").unwrap().binding(), Some(Binding::Subject));
        for preset in PRESETS {
            assert!(Template::parse(preset.name).is_ok(), "{}", preset.name);
        }
    }

    #[test]
    fn renders_from_the_source_users_attributes() {
        let alice = TestUser(&[("userPrincipalName", "Alice.Smith@tenant-a.example"), ("mail", "alice@contoso.com")]);
        let render = |t: &str| Template::parse(t).unwrap().render(&alice).unwrap().to_string();
        assert_eq!(render("runbook"), "X509:<PN>CN=Alice.Smith");
        assert_eq!(render("principal-name"), "X509:<PN>Alice.Smith@tenant-a.example");
        assert_eq!(render("rfc822"), "X509:<RFC822>alice@contoso.com");
    }

    #[test]
    fn a_missing_attribute_is_a_reason_not_an_empty_value() {
        let no_mail = TestUser(&[("userPrincipalName", "bob@tenant-a.example")]);
        let err = Template::parse("rfc822").unwrap().render(&no_mail).unwrap_err();
        assert!(err.to_string().contains("has no mail"), "{err}");
    }

    #[test]
    fn an_unknown_placeholder_lists_every_documented_one() {
        let err = Template::parse("X509:<PN>{nickname}").unwrap_err().to_string();
        for attribute in Attribute::NAMED {
            assert!(err.contains(&format!("{{{}}}", attribute.placeholders()[0])), "{attribute:?}: {err}");
        }
        assert!(err.contains("{ext:<property>}"), "{err}");
    }

    #[test]
    fn an_attribute_holding_a_marker_is_refused_for_that_user() {
        for (template, attribute) in [("X509:<PN>{mail}", "x<SR>0a@contoso.com"), ("X509:<S>CN={ext:nick}", "a>b")] {
            let user = TestUser(&[("mail", attribute), ("nick", attribute)]);
            let template = Template::parse(template).unwrap();
            let error = template.render(&user).unwrap_err();
            assert!(matches!(error, RenderError::Marker { .. }), "{template}: {error}");
            assert!(error.to_string().contains("'<' or '>'"), "{error}");
        }
    }

    #[test]
    fn attributes_inside_a_dn_are_escaped_and_elsewhere_written_as_they_are() {
        let user = TestUser(&[("userPrincipalName", "#doe@a.example"), ("name", "Doe, John")]);
        let render = |t: &str| Template::parse(t).unwrap().render(&user).unwrap().to_string();
        assert_eq!(render("X509:<S>CN={ext:name}"), "X509:<S>CN=Doe\\, John");
        assert_eq!(render("X509:<S>OU=x,CN={localpart}"), "X509:<S>OU=x,CN=\\#doe");
        assert_eq!(render("X509:<S>CN=x{localpart}"), "X509:<S>CN=x#doe", "a # inside a value is plain");
        assert_eq!(render("X509:<PN>{ext:name}"), "X509:<PN>Doe, John", "a principal name is not a DN");
        assert_eq!(render("runbook"), "X509:<PN>CN=#doe", "the runbook's value is a principal name");
    }

    #[test]
    fn invalid_templates_fail_at_start_up_with_the_reason() {
        let cases = [
            ("x509:<PN>{upn}", "prefixes"),
            ("X509:<PN>{upn", "unclosed"),
            ("X509:<PN>{nickname}", "unknown placeholder"),
            ("X509:<SKI>{upn}", "hexadecimal"),
        ];
        for (template, expected) in cases {
            let err = Template::parse(template).unwrap_err().to_string();
            assert!(err.contains(expected), "{template}: {err}");
        }
    }
}
