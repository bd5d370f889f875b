//! Distinguished names as certificateUserIds spells them: `DC=com,DC=contoso,OU=UserAccounts,CN=mfatest`.
//!
//! Source: Microsoft Entra, "Certificate user IDs" (concept-certificate-based-authentication-certificateuserids) and the
//! CBA how-to examples. What is documented: RDNs in the order they are encoded (root-most first), `,` between RDNs with
//! no space, spaces inside a value kept. What is not documented, and chosen here:
//! - attribute names: Microsoft CryptoAPI's (`CertNameToStr`) names, because Entra and certutil are Microsoft code:
//!   `S` (not `ST`) for stateOrProvinceName, `E` (not `emailAddress`) for the PKCS #9 email attribute, `T`, `G`, `I`,
//!   `SN`, `STREET`, `SERIALNUMBER`; an attribute without such a name is written `OID.<dotted>` as CryptoAPI does;
//! - multi-valued RDNs: the values joined with `+`, in encoded order;
//! - escaping: RFC 4514 §2.4 ([`crate::domain::escape_dn_value`], shared with templates that put an attribute into a
//!   DN). Escaping `<` and `>` also keeps a DN from forging the `<S>`/`<SR>` markers of the
//!   IssuerAndSubject/IssuerAndSerialNumber patterns. Control characters are not escaped: such a value is refused by
//!   `CertificateUserId::parse` and reported as not applicable;
//! - a value that is not a character string (or does not decode) is written `#` + uppercase hex of its DER (RFC 4514).
//!
//! TODO-correctness: confirm escaping and the `S`/`E` names against a tenant (sign-in with such a certificate).

use x509_parser::asn1_rs::{Any, Class, Tag, ToDer};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::domain::escape_dn_value;

/// A rendered DN and what was unusual about it (each flag becomes a note in the output).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RenderedDn {
    pub text: String,
    /// At least one character was escaped.
    pub escaped: bool,
    /// Attribute types written as `OID.<dotted>`.
    pub oid_types: Vec<String>,
    /// At least one value was written as `#hex`.
    pub hex_values: bool,
}

pub(crate) fn render(name: &X509Name<'_>) -> RenderedDn {
    let mut out = RenderedDn::default();
    let mut rdns = Vec::new();
    for rdn in name.iter() {
        let avas: Vec<String> = rdn.iter().map(|ava| render_ava(ava, &mut out)).collect();
        rdns.push(avas.join("+"));
    }
    out.text = rdns.join(",");
    out
}

fn render_ava(ava: &AttributeTypeAndValue<'_>, out: &mut RenderedDn) -> String {
    let oid = ava.attr_type().to_id_string();
    let name = match short_name(&oid) {
        Some(name) => name.to_owned(),
        None => {
            out.oid_types.push(oid.clone());
            format!("OID.{oid}")
        }
    };
    let value = match decode_string(ava.attr_value()) {
        Some(text) => {
            let escaped = escape_dn_value(&text);
            out.escaped |= escaped != text;
            escaped
        }
        None => {
            out.hex_values = true;
            let der = ava.attr_value().to_der_vec().unwrap_or_default();
            format!("#{}", super::hex_upper(&der))
        }
    };
    format!("{name}={value}")
}

/// Microsoft CryptoAPI's X.500 key names (CertNameToStr, CERT_X500_NAME_STR).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "S",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "T",
        "2.5.4.13" => "Description",
        "2.5.4.17" => "PostalCode",
        "2.5.4.42" => "G",
        "2.5.4.43" => "I",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "E",
        _ => return None,
    })
}

/// The characters of a string-typed attribute value, or `None` for anything else (or an undecodable string).
pub(crate) fn decode_string(value: &Any<'_>) -> Option<String> {
    if value.class() != Class::Universal {
        return None;
    }
    let data = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            std::str::from_utf8(data).ok().map(str::to_owned)
        }
        // T.61 in practice carries Latin-1 (or UTF-8 from careless encoders).
        Tag::T61String => Some(
            std::str::from_utf8(data)
                .map(str::to_owned)
                .unwrap_or_else(|_| data.iter().map(|&b| char::from(b)).collect()),
        ),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|quad| char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]])))
                .collect::<Option<String>>()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_names_are_used_for_state_and_email() {
        assert_eq!(short_name("2.5.4.8"), Some("S"));
        assert_eq!(short_name("1.2.840.113549.1.9.1"), Some("E"));
        assert_eq!(short_name("0.9.2342.19200300.100.1.1"), None);
    }
}
