//! The administrator's certificateUserIds calculator: every value of the seven documented patterns that a certificate
//! yields, with the disputed readings side by side (`certsync certificate-ids <file> [--json]`).
//!
//! Source: Microsoft Entra, "Certificate user IDs" (concept-certificate-based-authentication-certificateuserids) and
//! /work/shared/docs/certificate-user-ids.md. Every value is built through [`CertificateUserId::parse`]; a value that
//! does not pass it (too long, a control character) is reported as not applicable, with the reason.
//!
//! Input ([`input`]): PEM or DER, detected; from PEM the first `CERTIFICATE` block, with a note when there were more.
//!
//! What each binding is computed from:
//! - PrincipalName: each SAN `otherName` of type UPN (1.3.6.1.4.1.311.20.2.3), its string as is;
//! - RFC822Name: each SAN `rfc822Name`, as is;
//! - Subject / IssuerAndSubject: the DNs, rendered by [`dn`] (encoded order, `,` without space, `+` in multi-valued RDNs,
//!   Microsoft attribute names `S` and `E`, RFC 4514 escaping — all choices documented there);
//! - SKI: uppercase hex of the keyIdentifier of extension 2.5.29.14 as written (Entra does not compute one);
//! - SHA1PublicKey, two readings. Default: SHA-1 over the **whole certificate DER** (the thumbprint; the Entra
//!   PowerShell cmdlet and the CBA deep dive). Alternative: SHA-1 over the **contents of the subjectPublicKey BIT
//!   STRING**, i.e. the key bytes after the BIT STRING's unused-bits octet (for RSA the DER `RSAPublicKey`, for EC the
//!   point `04‖X‖Y`) — not the whole SubjectPublicKeyInfo (the Samba/AD reading). Both uppercase hex;
//! - IssuerAndSerialNumber, two byte orders, see [`serial`] (DER sign octet kept; default byte-reversed).

mod dn;
mod error;
mod input;
mod render;
pub(crate) mod serial;

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use x509_parser::asn1_rs::{Any, Class, FromDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER;

pub use error::{CertificateError, CertificateFileError};

use crate::domain::{Binding, CertificateUserId};

/// The UPN `otherName` of a subject alternative name (szOID_NT_PRINCIPAL_NAME).
pub const UPN_OID: &str = "1.3.6.1.4.1.311.20.2.3";

/// A certificate file larger than this is refused before it is read (a whole CA bundle is a few hundred KB).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Every certificateUserIds value a certificate yields, one row per binding and reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateIds {
    /// In a fixed order: PrincipalName, RFC822Name, Subject, IssuerAndSubject, SKI, SHA1PublicKey, IssuerAndSerialNumber.
    pub values: Vec<LabelledValue>,
    /// About the input and the conventions used (which PEM block, how DNs are spelled).
    pub notes: Vec<String>,
}

/// One reading of one binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelledValue {
    pub binding: Binding,
    /// What the value is computed from, e.g. "SHA-1 of the certificate (thumbprint)".
    pub label: String,
    /// The reading certsync writes by default (false only for the alternative reading of a disputed binding).
    pub default: bool,
    /// `None`: the binding does not apply to this certificate; `note` says why.
    pub value: Option<CertificateUserId>,
    pub note: Option<String>,
}

impl CertificateIds {
    /// Reads a PEM or DER certificate file.
    pub fn from_file(path: &Path) -> Result<Self, CertificateFileError> {
        let read_error = |source| CertificateFileError::Read { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(CertificateFileError::TooLarge { path: path.to_owned(), limit: MAX_FILE_BYTES });
        }
        compute(&bytes).map_err(|source| CertificateFileError::Invalid { path: path.to_owned(), source })
    }

    /// The values that apply, in order.
    pub fn applicable(&self) -> impl Iterator<Item = &CertificateUserId> {
        self.values.iter().filter_map(|v| v.value.as_ref())
    }

    /// The human rendering: a table (default readings marked `*`), then the notes.
    pub fn to_text(&self) -> String {
        render::text(self)
    }
}

/// `certsync certificate-ids <path> [--json]`: prints the values; exit code 2 (and a message naming the file) when the
/// file cannot be read or holds no usable certificate.
pub fn run_cli(path: &Path, json: bool) -> ExitCode {
    let ids = match CertificateIds::from_file(path) {
        Ok(ids) => ids,
        Err(error) => {
            eprintln!("certsync certificate-ids: {}", crate::error_chain(&error));
            return ExitCode::from(2);
        }
    };
    if json {
        match serde_json::to_string_pretty(&ids) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("certsync certificate-ids: cannot write JSON: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("certificateUserIds for {}\n", path.display());
        print!("{}", ids.to_text());
    }
    ExitCode::SUCCESS
}

/// The subject DN of a certificate (PEM or DER) as certificateUserIds spell an issuer: what a CA certificate gives
/// the `X509:<I>…` part of the values of the certificates it issued.
pub(crate) fn subject_dn(bytes: &[u8]) -> Result<String, CertificateError> {
    let decoded = input::decode(bytes)?;
    let (_, cert) = parse_der(&decoded.der)?;
    Ok(dn::render(cert.subject()).text)
}

/// The SHA-1 thumbprint of a certificate (PEM or DER): the hash of its DER, as Windows and Graph show it.
pub(crate) fn thumbprint(bytes: &[u8]) -> Result<[u8; 20], CertificateError> {
    let decoded = input::decode(bytes)?;
    let (_, cert) = parse_der(&decoded.der)?;
    Ok(Sha1::digest(cert.as_raw()).into())
}

fn parse_der(der: &[u8]) -> Result<(&[u8], X509Certificate<'_>), CertificateError> {
    match X509Certificate::from_der(der) {
        Ok(parsed) => Ok(parsed),
        Err(x509_parser::nom::Err::Incomplete(_)) => Err(CertificateError::TruncatedDer),
        Err(x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e)) => {
            Err(CertificateError::CorruptDer(e))
        }
    }
}

/// Computes every value from PEM or DER bytes.
pub fn compute(bytes: &[u8]) -> Result<CertificateIds, CertificateError> {
    let decoded = input::decode(bytes)?;
    let mut notes = decoded.notes;
    let (rest, cert) = parse_der(&decoded.der)?;
    if !rest.is_empty() {
        notes.push(format!("{} byte(s) after the certificate were ignored.", rest.len()));
    }
    notes.push(
        "DNs: RDNs in encoded order (root-most first), joined by ',' without a space, '+' inside a multi-valued RDN, \
         Microsoft attribute names (S for state, E for email), RFC 4514 escaping of , + \" \\ < > ; and of a leading \
         # or space and a trailing space. Microsoft documents the order but not the escaping."
            .to_owned(),
    );

    let mut values = Vec::new();
    principal_names(&cert, &mut values);
    rfc822_names(&cert, &mut values);
    let subject = dn::render(cert.subject());
    let issuer = dn::render(cert.issuer());
    subject_values(&issuer, &subject, &mut values);
    values.push(subject_key_identifier(&cert));
    sha1_values(&cert, &mut values);
    serial_values(&cert, &issuer, &mut values);
    Ok(CertificateIds { values, notes })
}

// --- one function per binding -------------------------------------------------------------------------------------

fn principal_names(cert: &X509Certificate<'_>, values: &mut Vec<LabelledValue>) {
    const LABEL: &str = "SAN otherName UPN";
    let names = match san_names(cert) {
        Ok(names) => names,
        Err(reason) => return values.push(not_applicable(Binding::PrincipalName, LABEL, reason)),
    };
    let before = values.len();
    for name in &names {
        if let GeneralName::OtherName(oid, value) = name
            && oid.to_id_string() == UPN_OID
        {
            values.push(match upn_string(value) {
                Some(upn) => candidate(Binding::PrincipalName, LABEL, true, format!("X509:<PN>{upn}"), None),
                None => not_applicable(
                    Binding::PrincipalName,
                    LABEL,
                    "a UPN otherName in the subject alternative name is not a character string".to_owned(),
                ),
            });
        }
    }
    if values.len() == before {
        values.push(not_applicable(
            Binding::PrincipalName,
            LABEL,
            format!(
                "the certificate has no subject alternative name of type otherName UPN ({UPN_OID}); <PN> binds to \
                 that SAN, not to the subject CN (use Subject for a CN)"
            ),
        ));
    }
}

fn rfc822_names(cert: &X509Certificate<'_>, values: &mut Vec<LabelledValue>) {
    const LABEL: &str = "SAN rfc822Name";
    let names = match san_names(cert) {
        Ok(names) => names,
        Err(reason) => return values.push(not_applicable(Binding::Rfc822Name, LABEL, reason)),
    };
    let before = values.len();
    for name in &names {
        if let GeneralName::RFC822Name(email) = name {
            values.push(candidate(Binding::Rfc822Name, LABEL, true, format!("X509:<RFC822>{email}"), None));
        }
    }
    if values.len() == before {
        values.push(not_applicable(
            Binding::Rfc822Name,
            LABEL,
            "the certificate has no subject alternative name of type rfc822Name (an E= in the subject DN does not \
             count)"
                .to_owned(),
        ));
    }
}

fn subject_values(issuer: &dn::RenderedDn, subject: &dn::RenderedDn, values: &mut Vec<LabelledValue>) {
    const SUBJECT: &str = "subject DN";
    const BOTH: &str = "issuer DN + subject DN";
    if subject.text.is_empty() {
        let reason = "the subject DN is empty".to_owned();
        values.push(not_applicable(Binding::Subject, SUBJECT, reason.clone()));
        values.push(not_applicable(Binding::IssuerAndSubject, BOTH, reason));
        return;
    }
    let subject_note = dn_note(&[subject]);
    values.push(candidate(Binding::Subject, SUBJECT, true, format!("X509:<S>{}", subject.text), subject_note));
    if issuer.text.is_empty() {
        values.push(not_applicable(Binding::IssuerAndSubject, BOTH, "the issuer DN is empty".to_owned()));
        return;
    }
    let note = dn_note(&[issuer, subject]);
    let value = format!("X509:<I>{}<S>{}", issuer.text, subject.text);
    values.push(candidate(Binding::IssuerAndSubject, BOTH, true, value, note));
}

fn subject_key_identifier(cert: &X509Certificate<'_>) -> LabelledValue {
    const LABEL: &str = "Subject Key Identifier extension";
    let extension = match cert.get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER) {
        Ok(Some(extension)) => extension,
        Ok(None) => {
            return not_applicable(
                Binding::SubjectKeyIdentifier,
                LABEL,
                "the certificate has no Subject Key Identifier extension (2.5.29.14); Entra reads the extension and \
                 does not compute one from the key"
                    .to_owned(),
            );
        }
        Err(error) => {
            return not_applicable(
                Binding::SubjectKeyIdentifier,
                LABEL,
                format!("the SKI extension is unusable: {error}"),
            );
        }
    };
    match extension.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(key_id) => {
            candidate(Binding::SubjectKeyIdentifier, LABEL, true, format!("X509:<SKI>{}", hex_upper(key_id.0)), None)
        }
        _ => not_applicable(Binding::SubjectKeyIdentifier, LABEL, "the SKI extension is malformed".to_owned()),
    }
}

fn sha1_values(cert: &X509Certificate<'_>, values: &mut Vec<LabelledValue>) {
    let thumbprint = Sha1::digest(cert.as_raw());
    values.push(candidate(
        Binding::Sha1PublicKey,
        "SHA-1 of the certificate (thumbprint)",
        true,
        format!("X509:<SHA1-PUKEY>{}", hex_upper(&thumbprint)),
        Some(
            "SHA-1 over the whole certificate DER: the reading of the Entra PowerShell cmdlet and the CBA \
             technical deep dive."
                .to_owned(),
        ),
    ));
    let key = &cert.public_key().subject_public_key;
    let mut note = "SHA-1 over the contents of the subjectPublicKey BIT STRING (the key bytes after its unused-bits \
                    octet, not the whole SubjectPublicKeyInfo): the Samba/AD altSecurityIdentities reading."
        .to_owned();
    if key.unused_bits != 0 {
        note.push_str(&format!(
            " The BIT STRING declares {} unused bit(s); they were hashed as stored.",
            key.unused_bits
        ));
    }
    values.push(candidate(
        Binding::Sha1PublicKey,
        "SHA-1 of the public key (Samba/AD)",
        false,
        format!("X509:<SHA1-PUKEY>{}", hex_upper(&Sha1::digest(&key.data))),
        Some(note),
    ));
}

fn serial_values(cert: &X509Certificate<'_>, issuer: &dn::RenderedDn, values: &mut Vec<LabelledValue>) {
    const REVERSED: &str = "issuer DN + serial, byte-reversed (documented)";
    const ENCODED: &str = "issuer DN + serial, as encoded (Entra PowerShell)";
    if issuer.text.is_empty() {
        let reason = "the issuer DN is empty".to_owned();
        values.push(not_applicable(Binding::IssuerAndSerialNumber, REVERSED, reason.clone()));
        values.push(not_applicable(Binding::IssuerAndSerialNumber, ENCODED, reason));
        return;
    }
    let raw = cert.raw_serial();
    let sign_note = serial::has_sign_octet(raw).then(|| {
        "The DER serial starts with a 00 sign octet (its next byte has the high bit set); it is kept, as Windows and \
         .NET keep it; openssl prints the serial without it."
            .to_owned()
    });
    let issuer_note = dn_note(&[issuer]);
    let reversed_note = join_notes([
        Some("The documented form: the Entra how-to stores certutil's serial byte-reversed.".to_owned()),
        sign_note.clone(),
        issuer_note.clone(),
    ]);
    let encoded_note = join_notes([
        Some(
            "What Get-EntraUserCertificateUserIdsFromCertificate writes; microsoftgraph/entra-powershell PR #1511 \
             calls it a bug."
                .to_owned(),
        ),
        sign_note,
        issuer_note,
    ]);
    let reversed = format!("X509:<I>{}<SR>{}", issuer.text, serial::byte_reversed(raw));
    let encoded = format!("X509:<I>{}<SR>{}", issuer.text, serial::as_encoded(raw));
    values.push(candidate(Binding::IssuerAndSerialNumber, REVERSED, true, reversed, reversed_note));
    values.push(candidate(Binding::IssuerAndSerialNumber, ENCODED, false, encoded, encoded_note));
}

// --- helpers ------------------------------------------------------------------------------------------------------

/// The SAN's general names (empty without a SAN), or why they cannot be read.
fn san_names<'a>(cert: &'a X509Certificate<'a>) -> Result<Vec<GeneralName<'a>>, String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => Ok(san.value.general_names.clone()),
        Ok(None) => Ok(Vec::new()),
        Err(error) => Err(format!("the subject alternative name extension is unusable: {error}")),
    }
}

/// The string inside an otherName's `[0] EXPLICIT` value (a UTF8String for a UPN).
fn upn_string(value: &[u8]) -> Option<String> {
    let (_, outer) = Any::from_der(value).ok()?;
    if outer.class() != Class::ContextSpecific || outer.tag().0 != 0 {
        return None;
    }
    let (_, inner) = Any::from_der(outer.data).ok()?;
    dn::decode_string(&inner)
}

/// A value that passes [`CertificateUserId::parse`] and has the expected binding, or a not-applicable row saying why.
fn candidate(binding: Binding, label: &str, default: bool, value: String, note: Option<String>) -> LabelledValue {
    match CertificateUserId::parse(&value) {
        Ok(id) if id.binding() == binding => {
            LabelledValue { binding, label: label.to_owned(), default, value: Some(id), note }
        }
        Ok(id) => LabelledValue {
            binding,
            label: label.to_owned(),
            default,
            value: None,
            note: Some(format!("Not applicable: the computed value would be read as a {:?} value.", id.binding())),
        },
        Err(error) => LabelledValue {
            binding,
            label: label.to_owned(),
            default,
            value: None,
            note: Some(format!("Not applicable: {error}.")),
        },
    }
}

fn not_applicable(binding: Binding, label: &str, reason: String) -> LabelledValue {
    LabelledValue { binding, label: label.to_owned(), default: true, value: None, note: Some(sentence(&reason)) }
}

/// `reason` with a capital first letter and a final full stop.
fn sentence(reason: &str) -> String {
    let mut chars = reason.chars();
    let mut text: String = chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// What was unusual about the DNs in a value, in one note.
fn dn_note(dns: &[&dn::RenderedDn]) -> Option<String> {
    let mut parts = Vec::new();
    if dns.iter().any(|dn| dn.escaped) {
        parts.push(
            "Contains RFC 4514 escapes (Entra's escaping is undocumented: confirm this value with a test sign-in)."
                .to_owned(),
        );
    }
    let mut oid_types: Vec<&str> = dns.iter().flat_map(|dn| dn.oid_types.iter().map(String::as_str)).collect();
    oid_types.sort_unstable();
    oid_types.dedup();
    if !oid_types.is_empty() {
        parts.push(format!(
            "Attribute types without a Microsoft name are written OID.<dotted>: {}.",
            oid_types.join(", ")
        ));
    }
    if dns.iter().any(|dn| dn.hex_values) {
        parts.push("A DN value that is not a character string is written #<DER hex>.".to_owned());
    }
    join_notes(parts.into_iter().map(Some))
}

fn join_notes(notes: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    let notes: Vec<String> = notes.into_iter().flatten().collect();
    (!notes.is_empty()).then(|| notes.join(" "))
}

pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
