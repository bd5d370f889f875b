//! Settings: a wrong or missing setting stops the process before it serves, naming every problem at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::helpers::spawn_binary;

fn wait_for_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("poll the process") {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_empty_environment_names_every_required_setting_and_exits_before_serving() {
    let (mut child, output) = spawn_binary(&["serve"], &HashMap::new());
    let status = wait_for_exit(&mut child);
    assert_eq!(status.code(), Some(2), "exit code");
    let stderr = output.stderr();
    for setting in [
        "FUNCTIONS_CUSTOMHANDLER_PORT",
        "TENANT_A_ID",
        "TENANT_B_ID",
        "TENANT_B_CLIENT_ID",
        "TENANT_B_CLIENT_SECRET",
        "SYNC_PAIRS",
        "CERTIFICATE_USER_ID_TEMPLATES",
        "AzureWebJobsStorage",
    ] {
        assert!(stderr.contains(&format!("  - {setting}: ")), "{setting} is not named:\n{stderr}");
    }
    assert!(stderr.contains("8 setting(s) need attention"), "{stderr}");
}

#[test]
fn invalid_values_are_explained_and_secrets_are_not_echoed() {
    let env: HashMap<String, String> = [
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "70000"),
        ("TENANT_A_ID", "contoso"),
        ("TENANT_B_ID", "22222222-2222-2222-2222-222222222222"),
        ("TENANT_B_CLIENT_ID", "33333333-3333-3333-3333-333333333333"),
        ("TENANT_B_CLIENT_SECRET", "very-secret-value"),
        ("SYNC_PAIRS", "not-a-group->also-not"),
        ("CERTIFICATE_USER_ID_TEMPLATES", "X509:<PN>{nickname}"),
        ("AzureWebJobsStorage", "AccountName=acct;AccountKey=c2VjcmV0a2V5c2VjcmV0a2V5;NotAKey"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let (mut child, output) = spawn_binary(&["serve"], &env);
    assert_eq!(wait_for_exit(&mut child).code(), Some(2));
    let stderr = output.stderr();
    for expected in [
        "FUNCTIONS_CUSTOMHANDLER_PORT: must be a port number",
        "TENANT_A_ID: tenant id \"contoso\" is not valid",
        "SYNC_PAIRS: pair-1, Tenant A: group id \"not-a-group\" is not valid",
        "CERTIFICATE_USER_ID_TEMPLATES: template \"X509:<PN>{nickname}\" uses unknown placeholder {nickname}",
        "AzureWebJobsStorage:",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    // The settings with the secrets were read and named (the positive twin of the check below).
    assert!(stderr.contains("AzureWebJobsStorage:"), "{stderr}");
    for secret in ["very-secret-value", "c2VjcmV0a2V5c2VjcmV0a2V5"] {
        assert!(!stderr.contains(secret) && !output.stdout().contains(secret), "{secret} was printed");
    }
}

#[test]
fn check_config_accepts_the_sample_settings_file() {
    // local.settings.sample.json must stay loadable (placeholders aside): fill its placeholders the way an
    // administrator would and check the binary accepts it.
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../../local.settings.sample.json")).expect("the sample is JSON");
    let mut env: HashMap<String, String> = sample["Values"]
        .as_object()
        .expect("Values")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    env.insert(
        "SYNC_PAIRS".into(),
        "aaaaaaaa-0000-4000-8000-000000000001->bbbbbbbb-0000-4000-8000-000000000001".into(),
    );
    let (mut child, output) = spawn_binary(&["check-config"], &env);
    assert_eq!(wait_for_exit(&mut child).code(), Some(0), "{}", output.stderr());
    assert!(output.stdout().contains("Settings are valid: 1 pair(s)"), "{}", output.stdout());
}
