//! The serial number in the two byte orders of the IssuerAndSerialNumber dispute.
//!
//! Bytes: the content octets of the DER INTEGER exactly as encoded, **including** the `00` sign octet DER puts in front
//! of a positive serial whose first byte has its high bit set. That is what Windows exposes (CryptoAPI's serial blob,
//! certutil, .NET `X509Certificate2.GetSerialNumber()`/`SerialNumber`; dotnet/corefx#3893: "Windows includes a leading
//! 0x00"), and Entra and the Entra PowerShell cmdlet are Windows/.NET code. `openssl x509 -serial` prints the magnitude
//! without that octet: for such serials our unreversed hex is `00` + openssl's.
//!
//! - documented (default): the octets byte-reversed — the Entra how-to stores certutil's `48efa06b…41b2` as
//!   `b24134…ef48`, i.e. .NET's little-endian `GetSerialNumber()`; a sign octet therefore ends the string (`…00`);
//! - unreversed: what `Get-EntraUserCertificateUserIdsFromCertificate` writes (`$cert.SerialNumber`);
//!   microsoftgraph/entra-powershell PR #1511 calls that a bug.
//!
//! Both lowercase, as in the documented example.

/// Lowercase hex of `raw` (the INTEGER content octets), as encoded.
pub(crate) fn as_encoded(raw: &[u8]) -> String {
    super::hex_lower(raw)
}

/// Lowercase hex of `raw` with the byte order reversed (the documented certificateUserIds form).
pub(crate) fn byte_reversed(raw: &[u8]) -> String {
    let reversed: Vec<u8> = raw.iter().rev().copied().collect();
    super::hex_lower(&reversed)
}

/// DER prefixes a `00` octet to a positive INTEGER whose next octet has its high bit set.
pub(crate) fn has_sign_octet(raw: &[u8]) -> bool {
    raw.len() > 1 && raw[0] == 0 && raw[1] & 0x80 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_reverses_whole_bytes() {
        let raw = [0x48, 0xef, 0xa0, 0x6b, 0x41, 0xb2];
        assert_eq!(as_encoded(&raw), "48efa06b41b2");
        assert_eq!(byte_reversed(&raw), "b2416ba0ef48");
        assert!(!has_sign_octet(&raw));
    }

    #[test]
    fn a_sign_octet_is_kept_and_ends_the_reversed_form() {
        let raw = [0x00, 0x80, 0x01];
        assert_eq!(as_encoded(&raw), "008001");
        assert_eq!(byte_reversed(&raw), "018000");
        assert!(has_sign_octet(&raw));
        assert!(!has_sign_octet(&[0x00]));
    }
}
