//! `certsync demo`: the seed-000 story, end to end, against the built-in Graph emulator. No Azure account needed.
//!
//! Two tenants: Tenant A (devices, Intune) and Tenant B (data). The scenario has users in both tenants, one only in
//! A, one only in B, two Tenant A users sharing a local part, a device in the group, a user with an administrator's own
//! value that must survive, and a user synchronized from on-premises. The real binary code runs: settings parsing,
//! `azure_identity` client-secret credentials over HTTPS against the emulator's token endpoint, the Graph client,
//! the planner, apply, and a file-backed state store in a temporary folder.
//!
//! Only with the `demo` feature (on by default): the deployed package is built without it, so the handler Azure runs
//! carries no emulator.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use graph_emulator::{AppRegistration, Directory, Emulator, EmulatorOptions, LeafRequest, NewUser};

use crate::config::Settings;
use crate::storage::{LocalDirStore, Stores};
use crate::sync::{RunReport, RunRequest, SyncService, Trigger};

pub const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
pub const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
pub const APP_A: &str = "aaaaaaaa-0000-4000-8000-0000000000c1";
pub const APP_B: &str = "bbbbbbbb-0000-4000-8000-0000000000c2";
pub const SECRET_A: &str = "demo-secret-tenant-a";
pub const SECRET_B: &str = "demo-secret-tenant-b";
/// The value an administrator set by hand on Bob in Tenant B: the tool must never remove it.
pub const ADMIN_VALUE: &str = "X509:<PN>bob@partner.example";

/// The ids of the seeded scenario.
#[derive(Debug, Clone)]
pub struct DemoWorld {
    pub group_a: String,
    pub group_b: String,
    /// Tenant A user ids by local part.
    pub a: HashMap<&'static str, String>,
    /// Tenant B user ids by local part.
    pub b: HashMap<&'static str, String>,
}

/// Least privilege, as the README lists it: read members in A; read members and write users in B.
pub const APP_A_ROLES: &[&str] = &["GroupMember.Read.All", "User.Read.All"];
pub const APP_B_ROLES: &[&str] = &["GroupMember.Read.All", "User.ReadWrite.All"];
/// What `CERTIFICATE_SOURCE=cloud-pki` adds in Tenant A (README "Permissions").
pub const CLOUD_PKI_ROLES: &[&str] =
    &["DeviceManagementConfiguration.Read.All", "DeviceManagementCloudCA.ReadWrite.All"];

/// Registers (or re-registers, e.g. with more permissions) the story's app of `tenant` (Tenant A or B) with its
/// secret and `roles`, the application permissions it was granted.
pub fn register_app(directory: &Directory, tenant: &str, roles: &[&str]) {
    let (client_id, secret) = if tenant == TENANT_A { (APP_A, SECRET_A) } else { (APP_B, SECRET_B) };
    directory.add_app(
        tenant,
        AppRegistration {
            client_id: client_id.into(),
            client_secret: Some(secret.into()),
            roles: roles.iter().map(|role| role.to_string()).collect(),
            federated_credentials: vec![],
        },
    );
}

/// Seeds the two tenants of the story into an emulator directory.
pub fn seed(directory: &Directory) -> DemoWorld {
    directory.add_tenant(TENANT_A);
    directory.add_tenant(TENANT_B);
    register_app(directory, TENANT_A, APP_A_ROLES);
    register_app(directory, TENANT_B, APP_B_ROLES);
    let group_a = directory.add_group(TENANT_A, "CBA users (Intune)");
    let group_b = directory.add_group(TENANT_B, "CBA users (resource tenant)");
    let mut a = HashMap::new();
    let mut b = HashMap::new();
    for (key, upn) in [
        ("alice", "alice@tenant-a.example"),
        ("bob", "bob@tenant-a.example"),
        ("carol", "carol@tenant-a.example"),
        ("dave", "dave@tenant-a.example"),
        ("jdoe", "jdoe@tenant-a.example"),
        ("jdoe2", "JDoe@emea.tenant-a.example"),
    ] {
        let id = directory.add_user(TENANT_A, NewUser::new(upn).mail(upn));
        directory.add_member(TENANT_A, &group_a, &id);
        a.insert(key, id);
    }
    let laptop = directory.add_device(TENANT_A, "LAPTOP-0042");
    directory.add_member(TENANT_A, &group_a, &laptop);
    for (key, user) in [
        ("alice", NewUser::new("alice@tenant-b.example")),
        ("bob", NewUser::new("bob@tenant-b.example").certificate_user_ids([ADMIN_VALUE])),
        ("carol", NewUser::new("carol@tenant-b.example").synced(true)),
        ("jdoe", NewUser::new("jdoe@tenant-b.example")),
        ("erin", NewUser::new("erin@tenant-b.example")),
    ] {
        let id = directory.add_user(TENANT_B, user);
        directory.add_member(TENANT_B, &group_b, &id);
        b.insert(key, id);
    }
    DemoWorld { group_a, group_b, a, b }
}

/// The settings an administrator would write for this scenario, pointed at the emulator. The CA of the emulator's
/// HTTPS endpoint is written to `ca_path`.
pub fn settings_for(
    emulator: &Emulator,
    world: &DemoWorld,
    ca_path: &Path,
) -> std::io::Result<HashMap<String, String>> {
    std::fs::write(ca_path, emulator.ca_pem())?;
    let url = |u: url::Url| u.as_str().trim_end_matches('/').to_owned();
    Ok(HashMap::from([
        ("TENANT_A_ID".into(), TENANT_A.into()),
        ("TENANT_A_CREDENTIAL".into(), "client-secret".into()),
        ("TENANT_A_CLIENT_ID".into(), APP_A.into()),
        ("TENANT_A_CLIENT_SECRET".into(), SECRET_A.into()),
        ("TENANT_B_ID".into(), TENANT_B.into()),
        ("TENANT_B_CREDENTIAL".into(), "client-secret".into()),
        ("TENANT_B_CLIENT_ID".into(), APP_B.into()),
        ("TENANT_B_CLIENT_SECRET".into(), SECRET_B.into()),
        ("SYNC_PAIRS".into(), format!("{}->{}", world.group_a, world.group_b)),
        ("MATCH_ON".into(), "upn-local-part".into()),
        ("CERTIFICATE_USER_ID_TEMPLATES".into(), "subject-cn".into()),
        ("GRAPH_ENDPOINT".into(), url(emulator.https_url())),
        ("AUTHORITY_HOST".into(), url(emulator.authority_host())),
        ("EXTRA_CA_CERTIFICATE_PATH".into(), ca_path.display().to_string()),
        ("AzureWebJobsStorage".into(), "UseDevelopmentStorage=true".into()),
    ]))
}

fn print_step(title: &str, report: &RunReport) {
    println!("\n################ {title} ################\n");
    println!("{}", report.to_text());
}

pub async fn run() -> ExitCode {
    match run_demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("the demo failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_demo() -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorOptions::default()).await?;
    let world = seed(&emulator.directory());
    let folder = std::env::temp_dir().join(format!("certsync-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder)?;
    let env = settings_for(&emulator, &world, &folder.join("emulator-ca.pem"))?;
    let settings = Arc::new(Settings::load(&env)?);
    let store: Arc<LocalDirStore> = Arc::new(LocalDirStore::new(folder.join("storage")));
    let stores = Stores { state: store.clone(), logs: store.clone() };
    let service = crate::app::sync_service(settings, Some(stores))?;
    let run = |title: &'static str| {
        let service = &service;
        async move { run_step(service, title).await }
    };

    println!(
        "certsync demo: Tenant A group {} → Tenant B group {}, template subject-cn (X509:<S>CN={{localpart}}).",
        world.group_a, world.group_b
    );
    println!("State and logs go to {}", folder.display());
    let first = run("1. First sync: matched users get their value; the rest is reported").await;
    let directory = emulator.directory();
    let bob = directory.user(TENANT_B, &world.b["bob"]).map(|u| u.certificate_user_ids).unwrap_or_default();
    println!("Bob in Tenant B now holds {bob:?}: the administrator's value is still first.");

    let second = run("2. Second sync, nothing changed: zero writes").await;
    println!(
        "Graph writes in the second run: {} (first run: {}).",
        second.graph.tenant_b.writes, first.graph.tenant_b.writes
    );

    directory.remove_member(TENANT_A, &world.group_a, &world.a["alice"]);
    let third = run("3. Alice leaves the Tenant A group: the value we wrote is removed").await;
    let alice = directory.user(TENANT_B, &world.b["alice"]).map(|u| u.certificate_user_ids).unwrap_or_default();
    println!("Alice in Tenant B now holds {alice:?}.");
    // High affinity: Tenant A's Intune Cloud PKI issues Bob a certificate; Tenant B binds exactly that certificate.
    register_app(&directory, TENANT_A, &[APP_A_ROLES, CLOUD_PKI_ROLES].concat());
    let authority = directory.add_cloud_ca(TENANT_A, "Contoso Cloud PKI Issuing CA")?;
    let now = directory.now();
    let leaf = directory.issue_leaf_certificate(
        TENANT_A,
        LeafRequest {
            authority_id: &authority,
            user_id: &world.a["bob"],
            device_name: "LAPTOP-BOB",
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(365),
        },
    )?;
    let mut env = env;
    env.insert("CERTIFICATE_SOURCE".into(), "cloud-pki".into());
    env.insert("CERTIFICATE_USER_ID_TEMPLATES".into(), "subject-cn;issuer-serial".into());
    let stores = Stores { state: store.clone(), logs: store.clone() };
    let service = crate::app::sync_service(Arc::new(Settings::load(&env)?), Some(stores))?;
    println!(
        "\nNow with CERTIFICATE_SOURCE=cloud-pki and templates subject-cn;issuer-serial: Intune Cloud PKI issued Bob \
         a certificate (serial {}).",
        leaf.serial_number
    );
    let fourth = run_step(&service, "4. High affinity: the certificate Intune issued to Bob is bound").await;
    let bob = directory.user(TENANT_B, &world.b["bob"]).map(|u| u.certificate_user_ids).unwrap_or_default();
    println!("Bob in Tenant B now holds {bob:?}.");
    directory.revoke_leaf_certificate(TENANT_A, &leaf.id);
    let fifth = run_step(&service, "5. The certificate is revoked in Intune: its value is removed").await;
    let bob = directory.user(TENANT_B, &world.b["bob"]).map(|u| u.certificate_user_ids).unwrap_or_default();
    println!("Bob in Tenant B now holds {bob:?}: the administrator's value and the low-affinity value stay.");
    println!(
        "\nDone. Runs: {}. Logs and the ownership ledger are in {}.",
        [&first, &second, &third, &fourth, &fifth].map(|r| r.outcome.label()).join(" / "),
        folder.display()
    );
    Ok(())
}

async fn run_step(service: &SyncService, title: &str) -> RunReport {
    let report = service.run(RunRequest { trigger: Trigger::Demo, ..RunRequest::default() }).await;
    print_step(title, &report);
    report
}
