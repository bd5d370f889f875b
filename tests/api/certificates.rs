//! End to end, issue 7: high-affinity values from the certificates Intune Cloud PKI issued in Tenant A, through the
//! timer function, against the emulator's CA (real certificates) and Azurite.
//!
//! The expected value of a certificate is what the administrator's calculator (`certsync certificate-ids`, itself
//! tested against `openssl`) prints as the default IssuerAndSerialNumber value for the very certificate the emulator
//! issued: the Graph records (serial, thumbprint) and the CA certificate must lead to the same value.

use std::process::Command;
use std::time::Duration;

use certsync::certificates::compute;
use certsync::demo::{self, ADMIN_VALUE, TENANT_A};
use certsync::domain::Binding;
use graph_emulator::{IssuedLeaf, LeafRequest};
use serde_json::Value;

use super::helpers::{TestApp, World, timer_envelope};

/// The demo world, with Tenant A's app allowed to read Cloud PKI and the pair reading it.
struct Pki {
    world: World,
    authority: String,
    app: TestApp,
}

impl Pki {
    async fn start(templates: &str) -> Self {
        let mut world = World::start().await;
        let directory = world.emulator.directory();
        // README "Permissions": the two Intune permissions come on top of the member and user reads.
        demo::register_app(&directory, TENANT_A, &[demo::APP_A_ROLES, demo::CLOUD_PKI_ROLES].concat());
        let authority = directory.add_cloud_ca(TENANT_A, "Contoso Cloud PKI Issuing CA").expect("create the CA");
        world.env.insert("CERTIFICATE_SOURCE".into(), "cloud-pki".into());
        world.env.insert("CERTIFICATE_USER_ID_TEMPLATES".into(), templates.into());
        let app = TestApp::spawn(&world.env).await;
        Self { world, authority, app }
    }

    /// Issues a certificate to a Tenant A user of the demo, valid from `days_ago` days ago for `valid_for`.
    fn issue(&self, user: &str, device: &str, days_ago: i64, valid_for: Duration) -> IssuedLeaf {
        let now = self.world.emulator.directory().now();
        let not_before = now - time::Duration::days(days_ago);
        self.world
            .emulator
            .directory()
            .issue_leaf_certificate(
                TENANT_A,
                LeafRequest {
                    authority_id: &self.authority,
                    user_id: &self.world.world.a[user],
                    device_name: device,
                    not_before,
                    not_after: now + valid_for,
                },
            )
            .expect("issue a certificate")
    }

    async fn sync(&self) -> Value {
        let (status, _, reply) = self.app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["ReturnValue"]["outcome"], "succeeded", "{reply}");
        reply
    }
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The calculator's default value of `binding` for the certificate.
fn calculated(leaf: &IssuedLeaf, binding: Binding) -> String {
    let ids = compute(&leaf.der).expect("the emulator issues real certificates");
    let value = ids.values.iter().find(|v| v.binding == binding && v.default).expect("a default reading");
    value.value.as_ref().expect("applicable").to_string()
}

/// `openssl x509 -serial` of the certificate: the Graph record's serialNumber must be the certificate's own.
fn openssl_serial(leaf: &IssuedLeaf) -> String {
    let path = std::env::temp_dir().join(format!("leaf-{}.der", leaf.id));
    std::fs::write(&path, &leaf.der).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-serial", "-in"])
        .arg(&path)
        .output()
        .expect("openssl");
    let _ = std::fs::remove_file(&path);
    String::from_utf8(out.stdout).unwrap().trim().trim_start_matches("serial=").to_owned()
}

#[tokio::test]
async fn a_certificate_issued_in_tenant_a_is_bound_in_tenant_b_and_unbound_when_revoked() {
    let pki = Pki::start("issuer-serial").await;
    let leaf = pki.issue("alice", "LAPTOP-ALICE", 1, YEAR);
    assert_eq!(openssl_serial(&leaf), leaf.serial_number, "the emulator's record matches the certificate");
    let expected = calculated(&leaf, Binding::IssuerAndSerialNumber);
    assert!(expected.contains("CN=Contoso Cloud PKI Issuing CA") && expected.contains("DC=contoso"), "{expected}");

    let reply = pki.sync().await;
    assert_eq!(pki.world.values_of("alice"), [expected]);
    assert!(
        reply["Logs"].to_string().contains("cloud-pki: 1 CA(s), 1 active certificate record(s), 1 usable"),
        "{reply}"
    );

    assert!(pki.world.emulator.directory().revoke_leaf_certificate(TENANT_A, &leaf.id));
    pki.sync().await;
    assert!(pki.world.values_of("alice").is_empty(), "the revoked certificate's value is removed");
}

#[tokio::test]
async fn an_expired_certificate_is_unbound_at_the_next_sync() {
    let pki = Pki::start("issuer-serial;sha1-public-key").await;
    let leaf = pki.issue("alice", "LAPTOP-ALICE", 30, Duration::from_secs(20 * 60));
    pki.sync().await;
    let thumbprint = calculated(&leaf, Binding::Sha1PublicKey);
    assert_eq!(thumbprint, format!("X509:<SHA1-PUKEY>{}", leaf.thumbprint));
    assert_eq!(pki.world.values_of("alice"), [calculated(&leaf, Binding::IssuerAndSerialNumber), thumbprint]);

    // Time passes in Tenant A: the certificate expires (the emulator derives its status from its clock).
    pki.world.emulator.directory().advance_clock(Duration::from_secs(25 * 60));
    pki.sync().await;
    assert!(pki.world.values_of("alice").is_empty());
}

#[tokio::test]
async fn twelve_certificates_bind_the_ten_newest_and_report_the_two_oldest() {
    let pki = Pki::start("issuer-serial").await;
    // One certificate a day for twelve days, the oldest first.
    let leaves: Vec<IssuedLeaf> =
        (0..12).map(|n| pki.issue("alice", &format!("DEVICE-{n:02}"), 12 - n, YEAR)).collect();
    let reply = pki.sync().await;
    let bound = pki.world.values_of("alice");
    assert_eq!(bound.len(), 10);
    for (n, leaf) in leaves.iter().enumerate() {
        let value = calculated(leaf, Binding::IssuerAndSerialNumber);
        assert_eq!(bound.contains(&value), n >= 2, "certificate {n} (DEVICE-{n:02}) bound: {}", bound.contains(&value));
    }
    let report = run_report(&pki.world, &reply).await;
    let skipped = report["skipped"].to_string();
    assert!(skipped.contains("DEVICE-00") && skipped.contains("DEVICE-01"), "the two oldest are reported: {skipped}");
    assert!(!skipped.contains("DEVICE-02"), "{skipped}");
    for leaf in &leaves[..2] {
        assert!(skipped.contains(&calculated(leaf, Binding::IssuerAndSerialNumber)), "{skipped}");
    }
}

/// The JSON run report the run left in the log container.
async fn run_report(world: &World, reply: &Value) -> Value {
    use certsync::storage::BlobStore;
    let run_id = reply["ReturnValue"]["runId"].as_str().expect("a run id");
    let blob = world.log_blobs().await.into_iter().find(|b| b.contains(run_id) && b.ends_with(".json")).unwrap();
    let bytes = world.log_store().await.get(&blob).await.unwrap().unwrap().bytes;
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn an_administrators_own_high_affinity_value_on_the_same_user_is_untouched() {
    let pki = Pki::start("subject-cn;issuer-serial").await;
    let directory = pki.world.emulator.directory();
    let admins = "X509:<SHA1-PUKEY>0123456789ABCDEF0123456789ABCDEF01234567";
    directory.update_user(certsync::demo::TENANT_B, &pki.world.world.b["bob"], |user| {
        user.certificate_user_ids.push(admins.to_owned())
    });
    let leaf = pki.issue("bob", "LAPTOP-BOB", 1, YEAR);
    pki.sync().await;
    let ours = calculated(&leaf, Binding::IssuerAndSerialNumber);
    // Mixed mode: the low-affinity value and the certificate's value, after the administrator's two.
    assert_eq!(pki.world.values_of("bob"), [ADMIN_VALUE, admins, "X509:<S>CN=bob", ours.as_str()]);

    directory.revoke_leaf_certificate(TENANT_A, &leaf.id);
    pki.sync().await;
    assert_eq!(pki.world.values_of("bob"), [ADMIN_VALUE, admins, "X509:<S>CN=bob"]);
}

#[tokio::test]
async fn without_the_intune_permission_the_run_fails_naming_it_and_writes_nothing() {
    let mut world = World::start().await;
    world.emulator.directory().add_cloud_ca(TENANT_A, "Contoso Cloud PKI Issuing CA").unwrap();
    world.env.insert("CERTIFICATE_SOURCE".into(), "cloud-pki".into());
    world.env.insert("CERTIFICATE_USER_ID_TEMPLATES".into(), "subject-cn;issuer-serial".into());
    let app = TestApp::spawn(&world.env).await;
    let (status, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(status, 500, "{reply}");
    let text = reply.to_string();
    assert!(text.contains("DeviceManagementCloudCA"), "the permission is named: {text}");
    assert!(
        world.values_of("alice").is_empty(),
        "a failed certificate read writes nothing, not even low-affinity values"
    );
}
