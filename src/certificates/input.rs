//! PEM or DER? Finds the certificate's DER bytes in what the administrator handed us.
//!
//! - Text containing `-----BEGIN ` is PEM (text before the first block, such as `openssl x509 -text` output, is skipped).
//!   The first `CERTIFICATE` block is used; when the text holds more than one block, a note says which one was taken.
//! - Otherwise bytes starting with `0x30` (an ASN.1 SEQUENCE) are taken as DER.
//! - Anything else is not a certificate.

use super::error::CertificateError;

/// The DER of one certificate, and what the caller should be told about how it was found.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub der: Vec<u8>,
    pub notes: Vec<String>,
}

const PEM_MARKER: &[u8] = b"-----BEGIN ";
const CERTIFICATE_TAG: &str = "CERTIFICATE";

pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, CertificateError> {
    let trimmed = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes); // a UTF-8 BOM some editors add
    if trimmed.iter().all(u8::is_ascii_whitespace) {
        return Err(CertificateError::Empty);
    }
    if contains(trimmed, PEM_MARKER) {
        return decode_pem(trimmed);
    }
    if trimmed.first() == Some(&0x30) {
        return Ok(Decoded { der: trimmed.to_vec(), notes: Vec::new() });
    }
    Err(CertificateError::NotACertificate)
}

fn decode_pem(text: &[u8]) -> Result<Decoded, CertificateError> {
    let blocks = pem::parse_many(text).map_err(CertificateError::MalformedPem)?;
    let Some(position) = blocks.iter().position(|block| block.tag() == CERTIFICATE_TAG) else {
        let found = if blocks.is_empty() {
            "no complete PEM block".to_owned()
        } else {
            blocks.iter().map(|block| block.tag().to_owned()).collect::<Vec<_>>().join(", ")
        };
        return Err(CertificateError::NoCertificateBlock { found });
    };
    let mut notes = Vec::new();
    if blocks.len() > 1 {
        let tags = blocks.iter().map(|block| block.tag()).collect::<Vec<_>>().join(", ");
        notes.push(format!(
            "The PEM text holds {} blocks ({tags}); used the first CERTIFICATE block (block {}) and ignored the rest.",
            blocks.len(),
            position + 1
        ));
    }
    let der = blocks.into_iter().nth(position).map(pem::Pem::into_contents).unwrap_or_default();
    Ok(Decoded { der, notes })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_only_input_is_empty() {
        assert!(matches!(decode(b" \n\t"), Err(CertificateError::Empty)));
        assert!(matches!(decode(b""), Err(CertificateError::Empty)));
    }

    #[test]
    fn text_without_a_pem_marker_is_not_a_certificate() {
        assert!(matches!(decode(b"hello"), Err(CertificateError::NotACertificate)));
    }

    #[test]
    fn a_pem_block_of_another_kind_is_named_in_the_error() {
        let text = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let error = decode(text.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("PRIVATE KEY"), "{error}");
    }

    #[test]
    fn bytes_starting_with_a_sequence_are_taken_as_der() {
        let decoded = decode(&[0x30, 0x00]).unwrap();
        assert_eq!(decoded.der, vec![0x30, 0x00]);
        assert!(decoded.notes.is_empty());
    }
}
