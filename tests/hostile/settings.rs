//! The settings parser (`certsync::config::Settings::load`): app settings arrive as environment variables
//! (functions.md), typed by an administrator or a pipeline, so they hold stray newlines, pasted NULs, BOMs,
//! whole files, GUIDs with a typo. Every problem must come back as a `ConfigError` naming the setting (the process
//! then exits 2 before serving), never a panic, a hang or a silent default.

use std::collections::{BTreeSet, HashMap};

use certsync::config::{ConfigError, Settings};
use proptest::prelude::*;

use crate::harness::{Corpus, Tally, base_settings, bounded_sync, runner};
use crate::strategies::hostile_string;

/// Loads `settings` on a thread with a deadline.
fn load(what: &str, settings: HashMap<String, String>) -> Result<Settings, ConfigError> {
    bounded_sync(what, move || Settings::load(&settings))
}

/// Every problem names a setting, says something, and the message an administrator reads names it too.
fn assert_clear(what: &str, error: &ConfigError) -> BTreeSet<String> {
    assert!(!error.problems.is_empty(), "{what}: a ConfigError without problems");
    let message = error.to_string();
    for problem in &error.problems {
        assert!(!problem.name.trim().is_empty(), "{what}: a problem without a setting name: {problem:?}");
        assert!(!problem.problem.trim().is_empty(), "{what}: {} has an empty reason", problem.name);
        assert!(message.contains(&problem.name), "{what}: the message does not name {}", problem.name);
    }
    error.problems.iter().map(|p| p.name.clone()).collect()
}

/// A corpus file: `KEY=VALUE` lines applied over the valid base settings, `-KEY` to remove one, `#` comments, and
/// a first line `# expect: accept` or `# expect: reject NAME[,NAME…]`. Values take `\n`, `\r`, `\t`, `\0`, `\\` and
/// `\xHH` escapes, so a value can hold what a line cannot.
struct SettingsFile {
    expect: Result<(), BTreeSet<String>>,
    settings: HashMap<String, String>,
}

fn unescape(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let hex = std::str::from_utf8(&hex).expect("\\x takes two hex digits");
                out.push(u8::from_str_radix(hex, 16).expect("\\x takes two hex digits"));
            }
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    out
}

impl SettingsFile {
    fn parse(name: &str, bytes: &[u8]) -> Self {
        let mut lines = bytes.split(|b| *b == b'\n');
        let header = std::str::from_utf8(lines.next().unwrap_or_default()).expect("a UTF-8 header line");
        let expect = match header.trim().strip_prefix("# expect:").map(str::trim) {
            Some("accept") => Ok(()),
            Some(rejected) if rejected.starts_with("reject ") => {
                Err(rejected["reject ".len()..].split(',').map(|n| n.trim().to_owned()).collect())
            }
            _ => panic!("settings/{name}: the first line must be `# expect: accept` or `# expect: reject NAME,…`"),
        };
        let mut settings = base_settings();
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            if let Some(key) = line.strip_prefix(b"-") {
                settings.remove(std::str::from_utf8(key).expect("a UTF-8 setting name"));
                continue;
            }
            let at =
                line.iter().position(|b| *b == b'=').unwrap_or_else(|| panic!("settings/{name}: {line:?} has no ="));
            let key = std::str::from_utf8(&line[..at]).expect("a UTF-8 setting name").to_owned();
            // `std::env::var` (the `Environment` source) reads a value that is not UTF-8 as unset (`NotUnicode`):
            // the map source models that by leaving it out.
            match String::from_utf8(unescape(&line[at + 1..])) {
                Ok(value) => settings.insert(key, value),
                Err(_) => settings.remove(&key),
            };
        }
        Self { expect, settings }
    }
}

#[test]
fn every_settings_corpus_file_loads_or_fails_naming_exactly_its_settings() {
    let corpus = Corpus::load("settings", false);
    for (name, bytes) in &corpus.files {
        let what = format!("settings/{name}");
        let file = SettingsFile::parse(name, bytes);
        match (load(&what, file.settings), file.expect) {
            (Ok(_), Ok(())) => assert!(name.starts_with("accept-"), "{what}: the prefix must say accept"),
            (Err(error), Err(names)) => {
                assert!(name.starts_with("reject-"), "{what}: the prefix must say reject");
                assert_eq!(assert_clear(&what, &error), names, "{what}: {error}");
            }
            (Ok(_), Err(names)) => panic!("{what}: loaded, but {names:?} should have been refused"),
            (Err(error), Ok(())) => panic!("{what}: should load, but: {error}"),
        }
    }
}

/// The settings a hostile value can be put into, each with values that are valid for it (so the property also
/// proves that good values still load).
fn settings_under_test() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "TENANT_A_ID",
            vec![
                "11111111-1111-1111-1111-111111111111",
                " 11111111-1111-1111-1111-11111111111a ",
                "AAAAAAAA-1111-1111-1111-111111111111",
            ],
        ),
        ("TENANT_B_ID", vec!["22222222-2222-2222-2222-222222222222", "22222222-2222-2222-2222-22222222222B"]),
        ("TENANT_A_CREDENTIAL", vec!["client-secret", "managed-identity", "developer-tools"]),
        ("TENANT_B_CREDENTIAL", vec!["client-secret", "managed-identity", "federated-managed-identity"]),
        ("TENANT_B_CLIENT_SECRET", vec!["s3cr3t", "~!@#$%^&*()_+"]),
        ("MANAGED_IDENTITY_CLIENT_ID", vec!["44444444-4444-4444-4444-444444444444"]),
        ("SYNC_PAIRS", vec!["aaaaaaaa-0000-0000-0000-000000000001->bbbbbbbb-0000-0000-0000-000000000001;"]),
        (
            "MATCH_ON",
            vec!["upn", "mail", "employee-id", "sam-account-name", "extension:extension_abc_id", "upn-local-part"],
        ),
        ("CERTIFICATE_USER_ID_TEMPLATES", vec!["subject-cn", "runbook;principal-name", "X509:<PN>{upn}"]),
        ("TRANSITIVE_MEMBERSHIP", vec!["true", "FALSE", "1", "no"]),
        ("DRY_RUN", vec!["yes", "0", " true "]),
        ("ALLOW_MASS_REMOVAL", vec!["false"]),
        ("REMOVAL_THRESHOLD_USERS", vec!["0", "500", "18446744073709551615"]),
        ("REMOVAL_THRESHOLD_PERCENT", vec!["0", "100", "12.5"]),
        ("AZURE_CLOUD", vec!["public", "us-government", "china"]),
        ("GRAPH_ENDPOINT", vec!["https://graph.microsoft.com", "http://127.0.0.1:1"]),
        ("AUTHORITY_HOST", vec!["https://login.microsoftonline.com/"]),
        ("EXTRA_CA_CERTIFICATE_PATH", vec![]),
        ("STORAGE_CONNECTION", vec!["AzureWebJobsStorage"]),
        ("AzureWebJobsStorage", vec!["UseDevelopmentStorage=true"]),
        ("LOG_CONTAINER", vec!["cert-auth", "a-1"]),
        ("STATE_CONTAINER", vec!["abc"]),
        ("SYNC_SCHEDULE", vec!["0 0 */4 * * *", "0 */5 * * * *"]),
        ("WEBHOOK_CLIENT_STATE", vec!["state", "ünïcödé-state"]),
        ("WEBHOOK_PREVIOUS_CLIENT_STATE", vec!["old"]),
        ("WEBHOOK_NOTIFICATION_URL", vec!["https://app.azurewebsites.net/api/function-webhook?code=k"]),
    ]
}

/// Values that are wrong for nearly every setting.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => hostile_string(),
        2 => prop::sample::select(vec![
            "11111111-1111-1111-1111-11111111111g", "{11111111-1111-1111-1111-111111111111}", "11111111111111111111111111111111",
            "urn:uuid:11111111-1111-1111-1111-111111111111", "11111111-1111-1111-1111-111111111111\0", "http://", "https://",
            "javascript:alert(1)", "ftp://example.com", "https://exa mple.com", "https://[::1", "-1", "1e309", "NaN", "inf",
            "18446744073709551616", "100.0000001", "->", ";;;", "a->b", "X509:<PN>{", "X509:<XX>{upn}", "{upn}", "extension:",
            "0 0 */4 * *", "* * * * * * *", "0 0 25 * * *", "0 */0 * * * *", "0 0 0 * Foo-Bar/x *", "0 0 9-,-5 * * *",
            "UseDevelopmentStorage=false", "AccountName=x", "AccountKey=;", "--", "A",
            "/nonexistent/ca.pem", "/", "/dev/null",
        ])
        .prop_map(str::to_owned),
        1 => "[0-9a-fA-F-]{30,40}",
    ]
}

/// One change to the base settings: a hostile value, a valid value, or removal.
fn changes() -> impl Strategy<Value = Vec<(&'static str, Option<String>)>> {
    let table = settings_under_test();
    let change = (0..table.len(), 0usize..10, hostile_value(), any::<prop::sample::Index>()).prop_map(
        move |(i, kind, hostile, pick)| {
            let (name, valid) = &table[i];
            let value = match kind {
                0 => None,
                1..=3 if !valid.is_empty() => Some(valid[pick.index(valid.len())].to_owned()),
                _ => Some(hostile),
            };
            (*name, value)
        },
    );
    prop::collection::vec(change, 1..4)
}

/// Settings a problem may be blamed on when `changed` were changed: the changed ones, and those they make
/// required (a credential kind needs its client id and secret; a notification URL needs the clientState; a
/// storage connection name points at other settings).
fn may_blame(changed: &HashMap<&str, Option<String>>, problem: &str) -> bool {
    if changed.contains_key(problem) {
        return true;
    }
    let credential_needs = |side: &str| {
        changed.contains_key(format!("TENANT_{side}_CREDENTIAL").as_str())
            && problem.starts_with(&format!("TENANT_{side}_"))
    };
    let connection = changed.get("STORAGE_CONNECTION").map(|v| v.as_deref().unwrap_or("").trim());
    credential_needs("A")
        || credential_needs("B")
        || (problem == "WEBHOOK_CLIENT_STATE" && changed.contains_key("WEBHOOK_NOTIFICATION_URL"))
        || connection.is_some_and(|name| !name.is_empty() && problem.starts_with(name))
        || (problem.starts_with("AzureWebJobsStorage") && changed.contains_key("AzureWebJobsStorage"))
}

#[test]
fn hostile_values_in_any_setting_fail_naming_that_setting_and_valid_ones_still_load() {
    let tally = Tally::default();
    runner()
        .run(&changes(), |changes| {
            let mut settings = base_settings();
            for (name, value) in &changes {
                match value {
                    Some(value) => settings.insert((*name).to_owned(), value.clone()),
                    None => settings.remove(*name),
                };
            }
            let what = format!("settings changed: {:.600?}", changes);
            let changed: HashMap<&str, Option<String>> = changes.into_iter().collect();
            match load(&what, settings) {
                Ok(_) => tally.hit("loaded"),
                Err(error) => {
                    tally.hit("refused");
                    for name in assert_clear(&what, &error) {
                        prop_assert!(
                            may_blame(&changed, &name),
                            "{}: blames {} which was not changed: {}",
                            what,
                            name,
                            error
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    tally.assert_reached(&["loaded", "refused"]);
}

const GUID: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/// One GUID with a typo an administrator could make: a character replaced, dropped or doubled, a hyphen moved.
fn damaged_guid() -> impl Strategy<Value = String> {
    (GUID, 0usize..36, 0usize..4, prop::sample::select(vec!['g', 'z', ' ', '{', '\0', 'é', '.', '-', '_']))
        .prop_map(|(guid, at, how, with)| {
            let mut chars: Vec<char> = guid.chars().collect();
            match how {
                0 => chars[at] = if chars[at] == '-' { 'a' } else { with },
                1 => {
                    chars.remove(at);
                }
                2 => chars.insert(at, chars[at]),
                _ => chars.insert(at, with),
            }
            chars.into_iter().collect()
        })
        .prop_filter("still a GUID", |g: &String| g.trim().len() != 36 || uuid::Uuid::try_parse(g.trim()).is_err())
}

#[test]
fn sync_pairs_of_valid_guids_load_in_any_spacing_and_one_typo_fails_naming_sync_pairs() {
    let pair = (prop::collection::vec(GUID, 1..3), prop::collection::vec(GUID, 1..3));
    let spacing = prop::sample::select(vec!["", " ", "  ", "\t"]);
    let strategy = (prop::collection::vec(pair, 1..4), spacing, prop::option::of((0usize..6, damaged_guid())));
    let tally = Tally::default();
    runner()
        .run(&strategy, |(pairs, space, typo)| {
            let mut guids_seen = 0usize;
            let mut typo_placed = false;
            let mut side = |groups: &Vec<String>| {
                groups
                    .iter()
                    .map(|g| {
                        guids_seen += 1;
                        match &typo {
                            Some((at, bad)) if *at == guids_seen - 1 => {
                                typo_placed = true;
                                bad.clone()
                            }
                            // Upper case is valid: ids are compared and stored lower-cased.
                            _ if guids_seen.is_multiple_of(2) => g.to_uppercase(),
                            _ => g.clone(),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(&format!("{space},{space}"))
            };
            let text = pairs
                .iter()
                .map(|(a, b)| format!("{space}{}{space}->{space}{}{space}", side(a), side(b)))
                .collect::<Vec<_>>()
                .join(";");
            let mut settings = base_settings();
            settings.insert("SYNC_PAIRS".to_owned(), text.clone());
            let what = format!("SYNC_PAIRS={text:?}");
            match (load(&what, settings), typo_placed) {
                (Ok(loaded), false) => {
                    tally.hit("loaded");
                    prop_assert_eq!(loaded.sync.pairs.len(), pairs.len(), "{}", what);
                    for (parsed, (a, b)) in loaded.sync.pairs.iter().zip(&pairs) {
                        let ids = |groups: &Vec<certsync::domain::GroupId>| {
                            groups.iter().map(|g| g.as_str().to_owned()).collect::<Vec<_>>()
                        };
                        prop_assert_eq!(&ids(&parsed.source_groups), a, "{}", what);
                        prop_assert_eq!(&ids(&parsed.target_groups), b, "{}", what);
                    }
                }
                (Err(error), true) => {
                    tally.hit("refused");
                    prop_assert_eq!(
                        assert_clear(&what, &error),
                        BTreeSet::from(["SYNC_PAIRS".to_owned()]),
                        "{}",
                        error
                    );
                }
                (Ok(_), true) => prop_assert!(false, "{}: a damaged GUID was accepted", what),
                (Err(error), false) => prop_assert!(false, "{}: valid pairs refused: {}", what, error),
            }
            Ok(())
        })
        .unwrap();
    tally.assert_reached(&["loaded", "refused"]);
}

#[test]
fn up_to_ten_templates_load_and_more_or_a_garbled_one_fail_naming_the_setting() {
    let template = prop::sample::select(vec![
        "runbook",
        "principal-name",
        "subject-cn",
        "rfc822",
        "X509:<PN>{upn}",
        "X509:<RFC822>{mail}",
        "X509:<PN>CN={localpart}",
    ]);
    let garbled = prop::sample::select(vec![
        "X509:<PN>{",
        "X509:<ZZ>{upn}",
        "x509",
        "X509:<PN>{nosuchattribute}",
        "preset-that-is-not",
    ]);
    let strategy = (
        prop::collection::vec(template, 1..14),
        prop::option::of(garbled),
        prop::sample::select(vec![";", " ; ", ";;"]),
    );
    let tally = Tally::default();
    runner()
        .run(&strategy, |(mut templates, garbled, separator)| {
            if let Some(garbled) = garbled {
                templates.insert(templates.len() / 2, garbled);
            }
            let text = templates.join(separator);
            let mut settings = base_settings();
            settings.insert("CERTIFICATE_USER_ID_TEMPLATES".to_owned(), text.clone());
            let what = format!("CERTIFICATE_USER_ID_TEMPLATES={text:?}");
            // A user holds at most 10 certificateUserIds (Entra's limit), so more templates cannot all be written.
            let should_load = garbled.is_none() && templates.len() <= 10;
            match load(&what, settings) {
                Ok(loaded) => {
                    tally.hit("loaded");
                    prop_assert!(should_load, "{}: accepted", what);
                    prop_assert_eq!(loaded.sync.templates.len(), templates.len(), "{}", what);
                }
                Err(error) => {
                    tally.hit("refused");
                    prop_assert!(!should_load, "{}: refused: {}", what, error);
                    let names = assert_clear(&what, &error);
                    prop_assert_eq!(names, BTreeSet::from(["CERTIFICATE_USER_ID_TEMPLATES".to_owned()]), "{}", error);
                }
            }
            Ok(())
        })
        .unwrap();
    tally.assert_reached(&["loaded", "refused"]);
}

#[test]
fn a_ca_path_naming_a_fifo_fails_at_once_instead_of_blocking_start_up() {
    // Opening a FIFO for reading blocks until a writer comes; start-up must refuse it instead.
    let folder = crate::harness::TempDir::new();
    let fifo = folder.0.join("ca.pem");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo is not available here; the /dev/zero corpus file covers the non-regular-file case");
        return;
    }
    let mut settings = base_settings();
    settings.insert("EXTRA_CA_CERTIFICATE_PATH".to_owned(), fifo.display().to_string());
    let error = load("a FIFO as the CA path", settings).expect_err("a FIFO is not a CA file");
    assert_eq!(assert_clear("a FIFO as the CA path", &error), BTreeSet::from(["EXTRA_CA_CERTIFICATE_PATH".to_owned()]));
    assert!(error.to_string().contains("not a regular file"), "{error}");
}
