//! The certificateUserIds calculator against certificates made with rcgen and read back by `openssl x509`.

mod fixtures;

use std::path::Path;
use std::sync::OnceLock;

use certsync::certificates::{CertificateError, CertificateFileError, CertificateIds, LabelledValue, compute};
use certsync::domain::{Binding, CertificateUserId};
use proptest::prelude::*;
use rcgen::DnType;

use fixtures::*;

// --- helpers -----------------------------------------------------------------------------------------------------

/// The values of `path`, each checked to pass `CertificateUserId::parse` with the binding of its row.
fn ids_of(path: &Path) -> CertificateIds {
    let ids = CertificateIds::from_file(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    for row in &ids.values {
        if let Some(value) = &row.value {
            let reparsed = CertificateUserId::parse(value.as_str()).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(reparsed.binding(), row.binding, "{value}");
        }
    }
    ids
}

fn rows(ids: &CertificateIds, binding: Binding) -> Vec<&LabelledValue> {
    ids.values.iter().filter(|row| row.binding == binding).collect()
}

/// The value of the only (or the default) row of `binding`.
fn default_value(ids: &CertificateIds, binding: Binding) -> String {
    let row = rows(ids, binding).into_iter().find(|row| row.default).expect("a default row");
    row.value.as_ref().unwrap_or_else(|| panic!("{binding:?} not applicable: {:?}", row.note)).to_string()
}

/// The value of the alternative (non-default) row of `binding`.
fn alternative_value(ids: &CertificateIds, binding: Binding) -> String {
    let row = rows(ids, binding).into_iter().find(|row| !row.default).expect("an alternative row");
    row.value.as_ref().expect("applicable").to_string()
}

fn after<'a>(value: &'a str, marker: &str) -> &'a str {
    value.split_once(marker).map(|(_, rest)| rest).unwrap_or_else(|| panic!("{marker} in {value}"))
}

/// A leaf issued by a fresh CA, written to `dir` as leaf.pem/leaf.der (and the CA as ca.pem).
fn issued(dir: &Workdir, leaf: Leaf) -> (Ca, std::path::PathBuf) {
    let ca = Ca::new();
    dir.certificate("ca", &ca.der);
    let der = ca.issue(&leaf);
    (ca, dir.certificate("leaf", &der))
}

fn encoded_order_dn(path: &Path, which: &str) -> String {
    microsoft_names(&x509(path, &[which, "-nameopt", NAMEOPT_ENCODED_ORDER]))
}

// --- serial number -----------------------------------------------------------------------------------------------

#[test]
fn the_default_serial_is_openssls_serial_byte_reversed_and_the_alternative_is_it_unreversed() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().serial(&[0x48, 0xef, 0xa0, 0x6b, 0x41, 0xb2]));

    let ids = ids_of(&leaf);

    let openssl_serial = x509(&leaf, &["-serial"]).trim_start_matches("serial=").to_lowercase();
    assert_eq!(openssl_serial, "48efa06b41b2");
    let reversed = default_value(&ids, Binding::IssuerAndSerialNumber);
    let unreversed = alternative_value(&ids, Binding::IssuerAndSerialNumber);
    assert_eq!(after(&reversed, "<SR>"), "b2416ba0ef48");
    assert_eq!(after(&unreversed, "<SR>"), openssl_serial);
    let issuer = reverse_rfc2253(&x509(&leaf, &["-issuer", "-nameopt", "RFC2253"])["issuer=".len()..]);
    assert_eq!(reversed, format!("X509:<I>{issuer}<SR>b2416ba0ef48"));
}

#[test]
fn a_serial_with_the_high_bit_set_keeps_the_der_sign_octet_that_openssl_omits() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().serial(&[0x80, 0x11, 0x22, 0x33]));

    let ids = ids_of(&leaf);

    let openssl_serial = x509(&leaf, &["-serial"]).trim_start_matches("serial=").to_lowercase();
    assert_eq!(openssl_serial, "80112233", "openssl prints the magnitude");
    assert_eq!(after(&alternative_value(&ids, Binding::IssuerAndSerialNumber), "<SR>"), "0080112233");
    assert_eq!(after(&default_value(&ids, Binding::IssuerAndSerialNumber), "<SR>"), "3322118000");
    let note = rows(&ids, Binding::IssuerAndSerialNumber)[0].note.clone().unwrap_or_default();
    assert!(note.contains("00 sign octet"), "{note}");
}

// --- SHA1-PUKEY --------------------------------------------------------------------------------------------------

#[test]
fn the_default_sha1_pukey_is_the_thumbprint_openssl_computes_for_pem_and_der_alike() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new());

    let from_pem = ids_of(&leaf);
    let from_der = ids_of(&dir.path.join("leaf.der"));

    let fingerprint = openssl_hex(&x509(&leaf, &["-fingerprint", "-sha1"]));
    assert_eq!(fingerprint.len(), 40);
    assert_eq!(default_value(&from_pem, Binding::Sha1PublicKey), format!("X509:<SHA1-PUKEY>{fingerprint}"));
    assert_eq!(from_pem.values, from_der.values, "PEM and DER give the same rows");
}

#[test]
fn the_public_key_reading_hashes_the_subject_public_key_bit_string_contents() {
    for algorithm in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519, &rcgen::PKCS_RSA_SHA256] {
        let dir = Workdir::new();
        let (_, leaf) = issued(&dir, Leaf::with_algorithm(algorithm));

        let ids = ids_of(&leaf);

        // openssl: the SubjectPublicKeyInfo DER, the BIT STRING's position in it, SHA-1 of its contents after the
        // unused-bits octet.
        let public_key_pem = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-pubkey", "-noout"], None);
        let spki = openssl(&["pkey", "-pubin", "-outform", "DER"], Some(&public_key_pem));
        let structure = String::from_utf8(openssl(&["asn1parse", "-inform", "DER"], Some(&spki))).unwrap();
        let line = structure.lines().find(|l| l.contains("d=1") && l.contains("BIT STRING")).expect("BIT STRING");
        let number = |key: &str| -> usize {
            let rest = line.split(key).nth(1).expect(key).trim_start();
            rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
        };
        let offset: usize = line.split(':').next().unwrap().trim().parse().unwrap();
        let (hl, l) = (number("hl="), number(" l="));
        let key_bits = &spki[offset + hl + 1..offset + hl + l];
        let digest = String::from_utf8(openssl(&["dgst", "-sha1", "-r"], Some(key_bits))).unwrap();
        let expected = digest.split_whitespace().next().unwrap().to_uppercase();

        assert_eq!(
            alternative_value(&ids, Binding::Sha1PublicKey),
            format!("X509:<SHA1-PUKEY>{expected}"),
            "{algorithm:?}"
        );
        assert_ne!(alternative_value(&ids, Binding::Sha1PublicKey), default_value(&ids, Binding::Sha1PublicKey));
    }
}

// --- SKI ---------------------------------------------------------------------------------------------------------

#[test]
fn ski_is_the_uppercase_hex_of_the_extension_openssl_shows() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().with_ski());

    let ids = ids_of(&leaf);

    let ski = openssl_hex(&x509(&leaf, &["-ext", "subjectKeyIdentifier"]));
    assert!(!ski.is_empty());
    assert_eq!(default_value(&ids, Binding::SubjectKeyIdentifier), format!("X509:<SKI>{ski}"));
}

#[test]
fn a_certificate_without_ski_says_the_ski_binding_is_not_applicable_and_why() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new());
    assert!(!x509(&leaf, &["-text"]).contains("Subject Key Identifier"), "rcgen wrote no SKI");

    let ids = ids_of(&leaf);

    let row = rows(&ids, Binding::SubjectKeyIdentifier)[0];
    assert_eq!(row.value, None);
    assert!(row.note.as_deref().unwrap_or_default().contains("no Subject Key Identifier extension"), "{row:?}");
}

// --- distinguished names -----------------------------------------------------------------------------------------

#[test]
fn dns_list_rdns_in_encoded_order_joined_by_commas_without_spaces_keeping_spaces_in_values() {
    let dir = Workdir::new();
    let leaf = Leaf::new().subject(&[
        (DnType::CountryName, "US"),
        (DnType::StateOrProvinceName, "Washington"),
        (DnType::LocalityName, "Zoë Ångström Town"),
        (DnType::OrganizationName, "Contoso Ltd"),
        (DnType::OrganizationalUnitName, "User Accounts"),
        (DnType::CommonName, "Bob Smith"),
    ]);
    let (_, leaf) = issued(&dir, leaf);

    let ids = ids_of(&leaf);

    let subject = default_value(&ids, Binding::Subject);
    assert_eq!(
        subject, "X509:<S>C=US,S=Washington,L=Zoë Ångström Town,O=Contoso Ltd,OU=User Accounts,CN=Bob Smith",
        "Microsoft's S for the state"
    );
    assert_eq!(after(&subject, "X509:<S>"), encoded_order_dn(&leaf, "-subject"));
    // RFC 2253 lists the RDNs the other way round.
    let rfc2253 = x509(&leaf, &["-subject", "-nameopt", "RFC2253"]);
    assert!(rfc2253.starts_with("subject=CN=Bob Smith,"), "{rfc2253}");
    let issuer = encoded_order_dn(&leaf, "-issuer");
    assert_eq!(issuer, "C=US,O=Contoso Ltd,CN=Contoso Issuing CA 1");
    assert_eq!(
        default_value(&ids, Binding::IssuerAndSubject),
        format!("X509:<I>{issuer}<S>{}", after(&subject, "<S>"))
    );
}

#[test]
fn domain_components_come_root_most_first_as_in_microsofts_example() {
    let dir = Workdir::new();
    let ca = Ca::new();
    let ca_name = name(&[
        &[(OID_DC, Str::Ia5, "com")],
        &[(OID_DC, Str::Ia5, "contoso")],
        &[(OID_CN, Str::Utf8, "CONTOSO-DC-CA")],
    ]);
    let subject = name(&[
        &[(OID_DC, Str::Ia5, "com")],
        &[(OID_DC, Str::Ia5, "contoso")],
        &[(OID_OU, Str::Utf8, "UserAccounts")],
        &[(OID_CN, Str::Utf8, "mfatest")],
    ]);
    let der = with_names(&ca.issue(&Leaf::new()), Some(&ca_name), Some(&subject), &ca.key);
    let leaf = dir.certificate("leaf", &der);

    let ids = ids_of(&leaf);

    // The example of concept-certificate-based-authentication-certificateuserids, character for character.
    assert_eq!(default_value(&ids, Binding::Subject), "X509:<S>DC=com,DC=contoso,OU=UserAccounts,CN=mfatest");
    assert_eq!(
        default_value(&ids, Binding::IssuerAndSubject),
        "X509:<I>DC=com,DC=contoso,CN=CONTOSO-DC-CA<S>DC=com,DC=contoso,OU=UserAccounts,CN=mfatest"
    );
    assert_eq!(encoded_order_dn(&leaf, "-subject"), "DC=com,DC=contoso,OU=UserAccounts,CN=mfatest");
    assert_eq!(
        reverse_rfc2253(&x509(&leaf, &["-issuer", "-nameopt", "RFC2253"])["issuer=".len()..]),
        "DC=com,DC=contoso,CN=CONTOSO-DC-CA"
    );
}

#[test]
fn special_characters_are_escaped_as_openssl_escapes_rfc_2253_and_the_row_says_so() {
    let dir = Workdir::new();
    let leaf = Leaf::new().subject(&[
        (DnType::OrganizationName, "#1 \"Best\" Widgets; Inc"),
        (DnType::OrganizationalUnitName, " padded "),
        (DnType::CommonName, "Doe, John + <Jr> back\\slash"),
    ]);
    let (_, leaf) = issued(&dir, leaf);

    let ids = ids_of(&leaf);

    let subject = default_value(&ids, Binding::Subject);
    assert_eq!(subject, r#"X509:<S>O=\#1 \"Best\" Widgets\; Inc,OU=\ padded\ ,CN=Doe\, John \+ \<Jr\> back\\slash"#);
    assert_eq!(after(&subject, "X509:<S>"), encoded_order_dn(&leaf, "-subject"));
    let note = rows(&ids, Binding::Subject)[0].note.clone().unwrap_or_default();
    assert!(note.contains("RFC 4514"), "{note}");
    assert!(ids.notes.iter().any(|n| n.contains("escaping")), "the output states the escaping choice");
}

#[test]
fn escaped_angle_brackets_cannot_forge_the_issuer_and_subject_markers() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().subject(&[(DnType::CommonName, "x<SR>00<S>y")]));

    let ids = ids_of(&leaf);

    let value = default_value(&ids, Binding::IssuerAndSubject);
    assert_eq!(CertificateUserId::parse(&value).unwrap().binding(), Binding::IssuerAndSubject);
    assert!(value.ends_with(r"<S>CN=x\<SR\>00\<S\>y"), "{value}");
}

#[test]
fn a_multi_valued_rdn_joins_its_values_with_plus_in_encoded_order() {
    let dir = Workdir::new();
    let ca = Ca::new();
    let subject = name(&[
        &[(OID_C, Str::Printable, "US")],
        &[(OID_O, Str::Utf8, "Contoso Ltd")],
        // DER sorts the SET: the OU AttributeTypeAndValue encodes first (shorter).
        &[(OID_CN, Str::Bmp, "Jürgen Müller"), (OID_OU, Str::Utf8, "R&D")],
    ]);
    let der = with_names(&ca.issue(&Leaf::new()), None, Some(&subject), &ca.key);
    let leaf = dir.certificate("leaf", &der);

    let ids = ids_of(&leaf);

    let subject = default_value(&ids, Binding::Subject);
    assert_eq!(subject, "X509:<S>C=US,O=Contoso Ltd,OU=R&D+CN=Jürgen Müller");
    assert_eq!(after(&subject, "X509:<S>"), encoded_order_dn(&leaf, "-subject"));
}

#[test]
fn an_email_address_in_the_dn_is_named_e_as_microsoft_names_it() {
    let dir = Workdir::new();
    let mut subject = dn(&[(DnType::OrganizationName, "Contoso Ltd"), (DnType::CommonName, "Bob Smith")]);
    subject.push(
        DnType::CustomDnType(EMAIL_ADDRESS.to_vec()),
        rcgen::DnValue::Ia5String("bob@contoso.com".try_into().unwrap()),
    );
    let (_, leaf) = issued(&dir, Leaf::new().subject_dn(subject));

    let ids = ids_of(&leaf);

    let subject = default_value(&ids, Binding::Subject);
    assert_eq!(subject, "X509:<S>O=Contoso Ltd,CN=Bob Smith,E=bob@contoso.com");
    assert_eq!(after(&subject, "X509:<S>"), encoded_order_dn(&leaf, "-subject"), "openssl's emailAddress");
    let rfc822 = rows(&ids, Binding::Rfc822Name);
    assert_eq!(rfc822[0].value, None, "E= in the DN is not an RFC822 SAN");
}

#[test]
fn an_empty_subject_makes_both_subject_bindings_not_applicable() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().subject(&[]).upn("bob@contoso.com"));

    let ids = ids_of(&leaf);

    for binding in [Binding::Subject, Binding::IssuerAndSubject] {
        let row = rows(&ids, binding)[0];
        assert_eq!(row.value, None, "{binding:?}");
        assert!(row.note.as_deref().unwrap_or_default().contains("subject DN is empty"), "{row:?}");
    }
    assert!(rows(&ids, Binding::PrincipalName)[0].value.is_some());
}

// --- SAN -----------------------------------------------------------------------------------------------------------

#[test]
fn each_upn_san_becomes_a_principal_name_value_as_openssl_lists_it() {
    let dir = Workdir::new();
    let leaf = Leaf::new().upn("bob@contoso.com").dns("bob.contoso.com").upn("bob@fabrikam.onmicrosoft.com");
    let (_, leaf) = issued(&dir, leaf);

    let ids = ids_of(&leaf);

    let san = x509(&leaf, &["-ext", "subjectAltName"]);
    let openssl_upns: Vec<String> = san
        .lines()
        .last()
        .unwrap()
        .split(", ")
        .filter_map(|item| item.trim().strip_prefix("othername: UPN::").map(|upn| format!("X509:<PN>{upn}")))
        .collect();
    let ours: Vec<String> =
        rows(&ids, Binding::PrincipalName).iter().map(|row| row.value.as_ref().unwrap().to_string()).collect();
    assert_eq!(ours, ["X509:<PN>bob@contoso.com", "X509:<PN>bob@fabrikam.onmicrosoft.com"]);
    assert_eq!(ours, openssl_upns, "{san}");
}

#[test]
fn an_rfc822_san_becomes_an_rfc822_value_as_openssl_lists_it() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().rfc822("bob.smith@contoso.com"));

    let ids = ids_of(&leaf);

    let san = x509(&leaf, &["-ext", "subjectAltName"]);
    assert!(san.contains("email:bob.smith@contoso.com"), "{san}");
    assert_eq!(default_value(&ids, Binding::Rfc822Name), "X509:<RFC822>bob.smith@contoso.com");
}

#[test]
fn without_upn_or_rfc822_sans_those_bindings_are_not_applicable_with_the_reason() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().dns("bob.contoso.com"));

    let ids = ids_of(&leaf);

    let principal = rows(&ids, Binding::PrincipalName);
    assert_eq!(principal.len(), 1);
    assert_eq!(principal[0].value, None);
    assert!(principal[0].note.as_deref().unwrap().contains("1.3.6.1.4.1.311.20.2.3"), "{principal:?}");
    let rfc822 = rows(&ids, Binding::Rfc822Name);
    assert_eq!(rfc822[0].value, None);
    assert!(rfc822[0].note.as_deref().unwrap().contains("rfc822Name"), "{rfc822:?}");
}

// --- input -------------------------------------------------------------------------------------------------------

#[test]
fn a_pem_file_with_several_blocks_uses_the_first_certificate_and_says_so() {
    let dir = Workdir::new();
    let leaf = Leaf::new().upn("bob@contoso.com");
    let key_pem = leaf.key.serialize_pem();
    let ca = Ca::new();
    let leaf_der = ca.issue(&leaf);
    let bundle = format!("{key_pem}{}{}", pem_of(&leaf_der), pem_of(&ca.der));
    let path = dir.write("bundle.pem", bundle.as_bytes());

    let ids = ids_of(&path);

    assert_eq!(default_value(&ids, Binding::PrincipalName), "X509:<PN>bob@contoso.com", "the leaf, not the CA");
    let note = ids.notes.iter().find(|n| n.contains("blocks")).expect("a note about the blocks");
    assert!(note.contains("3 blocks") && note.contains("block 2"), "{note}");
    assert_eq!(ids.values, compute(&leaf_der).unwrap().values);
}

#[test]
fn garbage_is_a_clear_error_naming_the_file_never_a_panic() {
    let dir = Workdir::new();
    let ca = Ca::new();
    let truncated = &ca.der[..ca.der.len() / 2];
    let cases: [(&str, &[u8], &str); 7] = [
        ("empty.pem", b"", "empty"),
        ("text.txt", b"hello, I am not a certificate\n", "neither PEM"),
        ("bad-base64.pem", b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "PEM"),
        ("key.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no CERTIFICATE block"),
        ("truncated.der", truncated, "DER"),
        ("sequence.der", &[0x30, 0x03, 0x02, 0x01, 0x05], "DER"),
        ("binary.bin", &[0x00, 0xff, 0x13, 0x37], "neither PEM"),
    ];
    for (file, bytes, expected) in cases {
        let path = dir.write(file, bytes);
        let error = CertificateIds::from_file(&path).expect_err(file);
        let message =
            format!("{error}: {}", std::error::Error::source(&error).map(|s| s.to_string()).unwrap_or_default());
        assert!(matches!(error, CertificateFileError::Invalid { .. }), "{file}: {error:?}");
        assert!(message.contains(file), "{file}: {message}");
        assert!(message.contains(expected), "{file}: {message}");
    }
    let missing = dir.path.join("missing.pem");
    let error = CertificateIds::from_file(&missing).expect_err("missing file");
    assert!(matches!(error, CertificateFileError::Read { .. }) && error.to_string().contains("missing.pem"), "{error}");
}

#[test]
fn bytes_after_a_der_certificate_are_ignored_with_a_note() {
    let ca = Ca::new();
    let mut bytes = ca.der.clone();
    bytes.extend_from_slice(&[0, 0, 0]);

    let ids = compute(&bytes).unwrap();

    assert!(ids.notes.iter().any(|n| n.contains("3 byte(s) after the certificate")), "{:?}", ids.notes);
    assert_eq!(ids.values, compute(&ca.der).unwrap().values);
}

// --- CLI ---------------------------------------------------------------------------------------------------------

fn certsync(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_certsync")).args(args).output().expect("run certsync")
}

#[test]
fn the_cli_prints_a_table_with_the_default_readings_marked() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().upn("bob@contoso.com").with_ski());

    let output = certsync(&["certificate-ids", leaf.to_str().unwrap()]);

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let line = |needle: &str| text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{text}"));
    assert!(line("X509:<PN>bob@contoso.com").starts_with('*'), "{text}");
    assert!(line("(thumbprint)").starts_with('*'), "{text}");
    assert!(line("(Samba/AD)").starts_with(' '), "{text}");
    assert!(line("(documented)").starts_with('*'), "{text}");
    assert!(line("(Entra PowerShell)").starts_with(' '), "{text}");
    assert!(text.contains("* = the reading certsync writes by default"), "{text}");
}

#[test]
fn the_cli_json_lists_every_row_and_every_value_parses() {
    let dir = Workdir::new();
    let (_, leaf) = issued(&dir, Leaf::new().upn("bob@contoso.com").rfc822("bob@contoso.com"));

    let output = certsync(&["certificate-ids", "--json", dir.path.join("leaf.der").to_str().unwrap()]);

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Deserializing runs CertificateUserId::parse on every value.
    let ids: CertificateIds = serde_json::from_slice(&output.stdout).expect("JSON of CertificateIds");
    assert_eq!(ids, ids_of(&leaf));
    assert_eq!(ids.values.len(), 9);
}

#[test]
fn the_cli_exits_2_and_names_the_file_when_it_is_missing_or_not_a_certificate() {
    let dir = Workdir::new();
    let garbage = dir.write("garbage.pem", b"not a certificate");
    let missing = dir.path.join("missing.pem");

    for path in [garbage, missing] {
        let output = certsync(&["certificate-ids", path.to_str().unwrap()]);

        assert_eq!(output.status.code(), Some(2), "{}", path.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// --- robustness --------------------------------------------------------------------------------------------------

fn sample_der() -> &'static [u8] {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| {
        let ca = Ca::new();
        ca.issue(&Leaf::new().upn("bob@contoso.com").rfc822("bob@contoso.com").with_ski())
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = compute(&bytes);
        let mut sequence = vec![0x30];
        sequence.extend(&bytes);
        let _ = compute(&sequence);
    }

    #[test]
    fn random_pem_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = compute(pem_of(&bytes).as_bytes());
    }

    #[test]
    fn corrupted_certificates_never_panic_and_what_they_yield_parses(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut der = sample_der().to_vec();
        for (index, byte) in flips {
            let at = index.index(der.len());
            der[at] ^= byte;
        }
        match compute(&der) {
            Ok(ids) => {
                for value in ids.applicable() {
                    prop_assert!(CertificateUserId::parse(value.as_str()).is_ok());
                }
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

#[test]
fn the_certificate_the_corruption_property_starts_from_is_valid() {
    assert!(compute(sample_der()).is_ok());
    assert!(matches!(compute(b""), Err(CertificateError::Empty)));
}
