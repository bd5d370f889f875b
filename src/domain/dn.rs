//! How an attribute value is spelled inside a distinguished name of a certificateUserIds value (`X509:<S>…`,
//! `X509:<I>…`): RFC 4514 §2.4 escaping, the one rule both the issuer DNs read from CA certificates
//! (`certificates/dn.rs`) and the Tenant A attributes a template puts into a DN follow.
//!
//! Microsoft documents the DN form of these values (RDNs root-most first, `,` between them, no space) but not how
//! special characters are escaped (concept-certificate-based-authentication-certificateuserids; see
//! ../shared/docs/certificate-user-ids.md). RFC 4514 is the rule for string DNs that Microsoft's own LDAP and
//! CryptoAPI code reads, so it is chosen and written down in docs/decisions.md. `\` goes before `,` `+` `"` `\` `<`
//! `>` `;`, before a `#` or space that starts a value and before a space that ends one.
//!
//! TODO-correctness: confirm against a tenant (sign-in with a certificate whose subject holds a comma).

/// Escapes `value`, a whole attribute value of a DN.
pub fn escape_dn_value(value: &str) -> String {
    escape_dn_value_part(value, true, true)
}

/// Escapes `value`, which is part of an attribute value: `starts` / `ends` say whether it begins or ends that
/// attribute value (only there do a leading `#` or space, and a trailing space, need a `\`).
pub fn escape_dn_value_part(value: &str, starts: bool, ends: bool) -> String {
    let count = value.chars().count();
    let mut out = String::with_capacity(value.len());
    for (index, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (starts && index == 0 && (c == ' ' || c == '#'))
            || (ends && index + 1 == count && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_rfc_4514() {
        let cases = [
            ("plain value", "plain value"),
            ("Doe, John", "Doe\\, John"),
            ("a+b", "a\\+b"),
            ("say \"hi\"", "say \\\"hi\\\""),
            ("back\\slash", "back\\\\slash"),
            ("<S>", "\\<S\\>"),
            ("a;b", "a\\;b"),
            ("#1", "\\#1"),
            ("a#1", "a#1"),
            (" lead", "\\ lead"),
            ("trail ", "trail\\ "),
            (" ", "\\ "),
            ("in side", "in side"),
            ("", ""),
        ];
        for (raw, expected) in cases {
            assert_eq!(escape_dn_value(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn a_part_inside_a_value_escapes_only_what_is_special_there() {
        assert_eq!(escape_dn_value_part("#1 ", false, false), "#1 ");
        assert_eq!(escape_dn_value_part("#1 ", true, false), "\\#1 ");
        assert_eq!(escape_dn_value_part("a,b ", false, true), "a\\,b\\ ");
    }
}
