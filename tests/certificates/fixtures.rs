//! Certificates for the tests: a CA and leaves issued by it (rcgen), names rcgen cannot build (several DCs, a
//! multi-valued RDN, a BMPString) patched into the DER and re-signed, files in a temporary directory, and `openssl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer, KeyPair, SanType,
    SerialNumber, SignatureAlgorithm, SigningKey,
};

pub const OID_C: &str = "2.5.4.6";
pub const OID_O: &str = "2.5.4.10";
pub const OID_OU: &str = "2.5.4.11";
pub const OID_CN: &str = "2.5.4.3";
pub const OID_DC: &str = "0.9.2342.19200300.100.1.25";
pub const UPN: [u64; 10] = [1, 3, 6, 1, 4, 1, 311, 20, 2, 3];
pub const EMAIL_ADDRESS: [u64; 7] = [1, 2, 840, 113549, 1, 9, 1];

// --- rcgen -------------------------------------------------------------------------------------------------------

/// A CA that issues leaves. Its subject is `C=US,O=Contoso Ltd,CN=Contoso Issuing CA 1`.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&[
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "Contoso Ltd"),
            (DnType::CommonName, "Contoso Issuing CA 1"),
        ]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.serial_number = Some(SerialNumber::from_slice(&[0x01]));
        let key = KeyPair::generate().expect("CA key");
        let der = params.self_signed(&key).expect("CA certificate").der().to_vec();
        Ca { params, key, der }
    }

    /// Issues `leaf`, signed by this CA.
    pub fn issue(&self, leaf: &Leaf) -> Vec<u8> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        leaf.params.signed_by(&leaf.key, &issuer).expect("leaf certificate").der().to_vec()
    }
}

/// A leaf certificate's parameters, built like a sentence: `Leaf::new().cn("Bob").upn("bob@contoso.com")`.
pub struct Leaf {
    pub params: CertificateParams,
    pub key: KeyPair,
}

impl Leaf {
    /// Subject `CN=Bob Smith`, serial 48efa06b41b2, no SAN, no SKI (rcgen writes one only with `with_ski`).
    pub fn new() -> Leaf {
        Leaf::with_key(KeyPair::generate().expect("leaf key"))
    }

    pub fn with_algorithm(algorithm: &'static SignatureAlgorithm) -> Leaf {
        let key = if algorithm == &rcgen::PKCS_RSA_SHA256 {
            KeyPair::generate_rsa_for(algorithm, rcgen::RsaKeySize::_2048).expect("RSA key")
        } else {
            KeyPair::generate_for(algorithm).expect("key")
        };
        Leaf::with_key(key)
    }

    fn with_key(key: KeyPair) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&[(DnType::CommonName, "Bob Smith")]);
        params.serial_number = Some(SerialNumber::from_slice(&[0x48, 0xef, 0xa0, 0x6b, 0x41, 0xb2]));
        Leaf { params, key }
    }

    pub fn subject(mut self, entries: &[(DnType, &str)]) -> Leaf {
        self.params.distinguished_name = dn(entries);
        self
    }

    pub fn subject_dn(mut self, name: DistinguishedName) -> Leaf {
        self.params.distinguished_name = name;
        self
    }

    pub fn serial(mut self, bytes: &[u8]) -> Leaf {
        self.params.serial_number = Some(SerialNumber::from_slice(bytes));
        self
    }

    pub fn upn(mut self, upn: &str) -> Leaf {
        self.params.subject_alt_names.push(SanType::OtherName((UPN.to_vec(), upn.into())));
        self
    }

    pub fn rfc822(mut self, email: &str) -> Leaf {
        self.params.subject_alt_names.push(SanType::Rfc822Name(email.try_into().expect("IA5 email")));
        self
    }

    pub fn dns(mut self, name: &str) -> Leaf {
        self.params.subject_alt_names.push(SanType::DnsName(name.try_into().expect("IA5 name")));
        self
    }

    /// rcgen writes a Subject Key Identifier for CA certificates and for explicit end entities.
    pub fn with_ski(mut self) -> Leaf {
        self.params.is_ca = IsCa::ExplicitNoCa;
        self
    }
}

pub fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (ty, value) in entries {
        name.push(ty.clone(), DnValue::Utf8String((*value).to_owned()));
    }
    name
}

// --- names rcgen cannot build, patched into the DER -------------------------------------------------------------

/// How an attribute value is encoded.
#[derive(Clone, Copy)]
pub enum Str {
    Utf8,
    Printable,
    Ia5,
    Bmp,
}

/// A DER `Name`: `rdns` in the given (encoded) order; each inner slice is one RDN, a SET OF sorted as DER requires.
pub fn name(rdns: &[&[(&str, Str, &str)]]) -> Vec<u8> {
    let mut content = Vec::new();
    for rdn in rdns {
        let mut avas: Vec<Vec<u8>> = rdn
            .iter()
            .map(|(oid, kind, value)| {
                let encoded = match kind {
                    Str::Utf8 => tlv(0x0C, value.as_bytes()),
                    Str::Printable => tlv(0x13, value.as_bytes()),
                    Str::Ia5 => tlv(0x16, value.as_bytes()),
                    Str::Bmp => tlv(0x1E, &value.encode_utf16().flat_map(u16::to_be_bytes).collect::<Vec<_>>()),
                };
                tlv(0x30, &[oid_der(oid), encoded].concat())
            })
            .collect();
        avas.sort();
        content.extend(tlv(0x31, &avas.concat()));
    }
    tlv(0x30, &content)
}

/// `der` with its issuer and/or subject Name replaced, re-signed by `signer` (the issuer's key).
pub fn with_names(der: &[u8], issuer: Option<&[u8]>, subject: Option<&[u8]>, signer: &KeyPair) -> Vec<u8> {
    let certificate = children(content(der));
    let tbs = certificate[0];
    let mut fields: Vec<Vec<u8>> = children(content(tbs)).into_iter().map(<[u8]>::to_vec).collect();
    // TBSCertificate: [0] version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, [3] extensions
    assert_eq!(fields[0][0], 0xA0, "a v3 certificate");
    if let Some(issuer) = issuer {
        fields[3] = issuer.to_vec();
    }
    if let Some(subject) = subject {
        fields[5] = subject.to_vec();
    }
    let tbs = tlv(0x30, &fields.concat());
    let signature = signer.sign(&tbs).expect("signature");
    let bit_string = tlv(0x03, &[&[0u8][..], &signature].concat());
    tlv(0x30, &[tbs.as_slice(), certificate[1], &bit_string].concat())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// (header length, content length) of the single-byte-tag TLV at the start of `der`.
fn header(der: &[u8]) -> (usize, usize) {
    let first = der[1] as usize;
    if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7F;
        (2 + n, der[2..2 + n].iter().fold(0, |acc, b| (acc << 8) | *b as usize))
    }
}

fn content(der: &[u8]) -> &[u8] {
    let (h, len) = header(der);
    &der[h..h + len]
}

fn children(mut der: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let (h, len) = header(der);
        out.push(&der[..h + len]);
        der = &der[h + len..];
    }
    out
}

fn oid_der(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|arc| arc.parse().expect("numeric arc")).collect();
    let mut body = Vec::new();
    for arc in std::iter::once(arcs[0] * 40 + arcs[1]).chain(arcs[2..].iter().copied()) {
        let mut groups = vec![(arc & 0x7F) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | (rest & 0x7F) as u8);
            rest >>= 7;
        }
        body.extend(groups.into_iter().rev());
    }
    tlv(0x06, &body)
}

// --- files and openssl -------------------------------------------------------------------------------------------

/// A fresh directory, removed on drop.
pub struct Workdir {
    pub path: PathBuf,
}

impl Workdir {
    pub fn new() -> Workdir {
        let path = std::env::temp_dir().join(format!("certsync-certificates-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Workdir { path }
    }

    pub fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path.join(file);
        std::fs::write(&path, bytes).expect("write fixture");
        path
    }

    /// Writes `der` as `<stem>.der` and `<stem>.pem`; returns the PEM path (openssl's default input form).
    pub fn certificate(&self, stem: &str, der: &[u8]) -> PathBuf {
        self.write(&format!("{stem}.der"), der);
        self.write(&format!("{stem}.pem"), pem_of(der).as_bytes())
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Runs `openssl args…` (with `stdin`), returns stdout; panics with stderr when it fails.
pub fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    {
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.unwrap_or_default()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("openssl output");
    assert!(output.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

pub fn openssl_text(args: &[&str]) -> String {
    String::from_utf8(openssl(args, None)).expect("UTF-8 output").trim().to_owned()
}

/// `openssl x509 -in <path> <args…>`.
pub fn x509(path: &Path, args: &[&str]) -> String {
    let path = path.to_str().expect("UTF-8 path");
    openssl_text(&[&["x509", "-in", path, "-noout"], args].concat())
}

/// RFC 2253 name options without `dn_rev`: RDNs in encoded order, `,`/`+` without spaces, RFC 2253 escaping,
/// short names, UTF-8 output (no `esc_msb`).
pub const NAMEOPT_ENCODED_ORDER: &str = "esc_2253,esc_ctrl,utf8,dump_nostr,dump_unknown,dump_der,sep_comma_plus,sname";

/// openssl's DN (without its `subject=`/`issuer=` label) with openssl's names replaced by Microsoft's (`ST`→`S`,
/// `emailAddress`→`E`, `UID`→`OID.0.9.2342.19200300.100.1.1`).
pub fn microsoft_names(openssl_dn: &str) -> String {
    let dn = openssl_dn
        .split_once('=')
        .map(|(label, rest)| if label == "subject" || label == "issuer" { rest } else { openssl_dn })
        .unwrap_or(openssl_dn);
    let mut out = String::new();
    let mut at_start = true;
    let mut name = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        if at_start {
            if c == '=' {
                out.push_str(match name.as_str() {
                    "ST" => "S",
                    "emailAddress" => "E",
                    "UID" => "OID.0.9.2342.19200300.100.1.1",
                    other => other,
                });
                out.push('=');
                name.clear();
                at_start = false;
            } else {
                name.push(c);
            }
            continue;
        }
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            ',' | '+' => at_start = true,
            _ => {}
        }
    }
    out
}

/// An RFC 2253 DN (which lists the last-encoded RDN first) in encoded order. Only for DNs of single-valued RDNs:
/// openssl's `dn_rev` also reverses the values inside a multi-valued RDN.
pub fn reverse_rfc2253(dn: &str) -> String {
    let mut rdns = Vec::new();
    let mut current = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                current.extend(chars.next());
            }
            ',' => rdns.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    rdns.push(current);
    rdns.reverse();
    rdns.join(",")
}

/// Colon-separated uppercase hex after the last `=` or on the last line (openssl's fingerprint/extension output).
pub fn openssl_hex(output: &str) -> String {
    let last = output.lines().last().unwrap_or_default();
    let hex = last.rsplit_once('=').map_or(last, |(_, hex)| hex);
    hex.trim().replace(':', "").to_uppercase()
}
