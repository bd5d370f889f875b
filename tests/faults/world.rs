//! One fault scenario's world: the Graph emulator (in this process) seeded with a directory of a few dozen users,
//! a restartable Azurite, the settings, the oracle's [`Model`] of the directory, and the seed everything random is
//! drawn from.
//!
//! Every scenario has the same shape: [`Scenario::start`] seeds the tenants, runs one clean baseline sync (so the
//! ledger owns values) and checks it against the oracle, then changes the directory the way a week of administration
//! would (users leave and join both groups, are deleted, an administrator edits values by hand, a key becomes
//! ambiguous, a value moves between users). The test then injects its faults and runs; [`Scenario::converges`] turns
//! the faults off, runs once cleanly, asserts the oracle's exact state, and asserts a further run writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::process::Child;
use std::time::{Duration, Instant};

use certsync::demo::{self, DemoWorld, TENANT_A, TENANT_B};
use certsync::storage::{AzureBlobStore, AzureBlobStoreOptions, BlobStore, StorageConnection};
use graph_emulator::{Directory, Emulator, EmulatorOptions, Faults, NewUser, RequestRecord};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde_json::Value;

use super::azurite::Azurite;
use super::helpers::{Output, spawn_binary, tempdir};
use super::oracle::{
    BeforeRun, Model, SourceUser, TEMPLATES, TargetUser, assert_converged, assert_nothing_lost, wanted_values,
};

/// Matched pairs seeded before the baseline: "tens of users" keeps every scenario to seconds.
const PAIRS: usize = 24;
/// A CLI run that takes longer than this is stuck (the longest legitimate one waits out a 60 s client timeout).
const RUN_TIMEOUT: Duration = Duration::from_secs(150);
/// A run killed while holding the lease blocks the next for at most the lease's 15 s (docs/decisions.md).
const LEASE_EXPIRY_WAIT: Duration = Duration::from_secs(40);

/// What `certsync sync --json` did.
pub struct Run {
    pub report: Value,
    pub output: Output,
}

impl Run {
    pub fn status(&self) -> &str {
        self.report["outcome"]["status"].as_str().unwrap_or("no report")
    }

    /// Why the run failed or was skipped (`outcome.reason`), or "".
    pub fn reason(&self) -> &str {
        self.report["outcome"]["reason"].as_str().unwrap_or_default()
    }
}

/// The state container of every scenario (`STATE_CONTAINER`'s default) and the tenant's ledger in it
/// (docs/operations.md "A lost ownership ledger").
pub const STATE_CONTAINER: &str = "certsync-state";

pub fn ledger_blob() -> String {
    format!("ledger/{TENANT_B}.json")
}

pub struct Scenario {
    pub name: &'static str,
    pub seed: u64,
    pub rng: StdRng,
    pub emulator: Emulator,
    pub azurite: Azurite,
    pub env: HashMap<String, String>,
    pub model: Model,
    pub group_a: String,
    pub group_b: String,
    started: Instant,
    _folder: tempfile::TempDir,
}

/// The seed: `FAULT_SEED` replays a failure; otherwise the scenario's own, so CI runs the same faults every time.
pub fn seed_for(name: &str, default: u64) -> u64 {
    let seed = std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    println!("fault scenario {name}: seed {seed} (FAULT_SEED={seed} replays it)");
    seed
}

impl Scenario {
    pub async fn start(name: &'static str, default_seed: u64) -> Self {
        Self::start_with(name, default_seed, EmulatorOptions::default()).await
    }

    /// Seeds the directory, runs the clean baseline and checks it, then changes the directory (see the module doc).
    pub async fn start_with(name: &'static str, default_seed: u64, options: EmulatorOptions) -> Self {
        let mut scenario = Self::baseline(name, default_seed, options).await;
        scenario.administer();
        scenario.directory().clear_requests();
        scenario
    }

    /// Seeds the directory and runs the clean baseline, checked by the oracle; the changes are the caller's.
    pub async fn baseline(name: &'static str, default_seed: u64, options: EmulatorOptions) -> Self {
        let mut scenario = Self::seeded(name, default_seed, options).await;
        let baseline = scenario.sync().await;
        assert_eq!(baseline.status(), "succeeded", "the baseline run: {}", baseline.report);
        scenario.assert_oracle();
        scenario
    }

    /// Seeds the directory, nothing synced yet: the first sync is the caller's.
    pub async fn seeded(name: &'static str, default_seed: u64, options: EmulatorOptions) -> Self {
        let seed = seed_for(name, default_seed);
        let emulator = Emulator::start(options).await.expect("start the Graph emulator");
        let azurite = Azurite::start().await;
        let folder = tempdir();
        let directory = emulator.directory();
        let (group_a, group_b) = seed_tenants(&directory);
        let ids =
            DemoWorld { group_a: group_a.clone(), group_b: group_b.clone(), a: HashMap::new(), b: HashMap::new() };
        let mut env = demo::settings_for(&emulator, &ids, &folder.path().join("ca.pem")).expect("write the CA");
        env.insert("CERTIFICATE_USER_ID_TEMPLATES".into(), TEMPLATES.into());
        env.insert("AzureWebJobsStorage".into(), azurite.connection_string());
        env.insert("WEBHOOK_CLIENT_STATE".into(), "fault-suite-client-state".into());
        let mut scenario = Self {
            name,
            seed,
            rng: StdRng::seed_from_u64(seed),
            emulator,
            azurite,
            env,
            model: Model::default(),
            group_a,
            group_b,
            started: Instant::now(),
            _folder: folder,
        };
        scenario.seed_directory();
        scenario.phase("seeded");
        scenario
    }

    /// `count` more matched pairs, each Tenant B user with none to two of an administrator's own values.
    pub fn add_matched_pairs(&mut self, count: usize) {
        for i in 0..count {
            self.add_source(format!("bulk{i:04}@tenant-a.example"), true);
            let own = self.rng.random_range(0..=2);
            let values = self.administrator_values(1_000 + i, own);
            self.add_target(format!("bulk{i:04}@tenant-b.example"), true, false, values);
        }
    }

    /// Asserts Tenant B is exactly in the state one complete run over the model's directory gives.
    pub fn assert_oracle(&mut self) {
        let expected = self.model.converge();
        assert_converged(&self.directory(), TENANT_B, &self.model, &expected);
    }

    /// Prints how long the scenario has run, so a slow phase shows in the test output.
    pub fn phase(&self, what: &str) {
        println!("[{} +{:.1}s] {what}", self.name, self.started.elapsed().as_secs_f64());
    }

    pub fn directory(&self) -> Directory {
        self.emulator.directory()
    }

    fn add_source(&mut self, upn: String, member: bool) -> String {
        let directory = self.directory();
        let id = directory.add_user(TENANT_A, NewUser::new(&upn).mail(&upn));
        if member {
            directory.add_member(TENANT_A, &self.group_a, &id);
        }
        self.model.source.push(SourceUser { id: id.clone(), upn, member });
        id
    }

    fn add_target(&mut self, upn: String, member: bool, synced: bool, values: Vec<String>) -> String {
        let directory = self.directory();
        let user = NewUser::new(&upn).synced(synced).certificate_user_ids(values.clone());
        let id = directory.add_user(TENANT_B, user);
        if member {
            directory.add_member(TENANT_B, &self.group_b, &id);
        }
        self.model.target.push(TargetUser {
            id: id.clone(),
            upn,
            member,
            synced,
            values: values.clone(),
            owned: Vec::new(),
            administrator_values: values,
        });
        id
    }

    /// An administrator's own values, distinct per user (values are unique per tenant), in the documented patterns.
    fn administrator_values(&mut self, user: usize, count: usize) -> Vec<String> {
        (0..count)
            .map(|n| match self.rng.random_range(0..3) {
                0 => format!("X509:<SKI>{:016x}{user:02x}{n:02x}", self.rng.random::<u64>()),
                1 => format!("X509:<PN>admin-own-{user}-{n}@partner.example"),
                _ => format!(
                    "X509:<I>DC=com,DC=contoso,CN=CONTOSO-CA<SR>{:08x}{user:02x}{n:02x}",
                    self.rng.random::<u32>()
                ),
            })
            .collect()
    }

    /// The directory before the baseline: matched pairs (some with administrator values, one at 9 and one at the
    /// 10-value limit, one whose administrator already set exactly the value we would write, one synchronized from
    /// on-premises), users only in A or only in B, and a device in the Tenant A group.
    fn seed_directory(&mut self) {
        let mut special: Vec<usize> = (0..PAIRS).collect();
        special.shuffle(&mut self.rng);
        let (nine, ten, preset, synced) = (special[0], special[1], special[2], special[3]);
        for i in 0..PAIRS {
            self.add_source(format!("u{i:02}@tenant-a.example"), true);
            let mut values = match i {
                _ if i == nine => self.administrator_values(i, 9),
                _ if i == ten => self.administrator_values(i, 10),
                _ if self.rng.random_bool(0.4) => {
                    let count = self.rng.random_range(1..=3);
                    self.administrator_values(i, count)
                }
                _ => Vec::new(),
            };
            if i == preset {
                values.push(wanted_values(&format!("u{i:02}@tenant-a.example"))[0].clone());
            }
            self.add_target(format!("u{i:02}@tenant-b.example"), true, i == synced, values);
        }
        for i in 0..3 {
            let values = self.administrator_values(100 + i, i);
            self.add_target(format!("only-b{i}@tenant-b.example"), true, false, values);
            self.add_source(format!("only-a{i}@tenant-a.example"), true);
        }
        let directory = self.directory();
        let device = directory.add_device(TENANT_A, "LAPTOP-FAULTS");
        directory.add_member(TENANT_A, &self.group_a, &device);
    }

    /// Matched, ordinary pairs (not at the limit, not synced, no preset value) the changes below may pick.
    fn ordinary_pairs(&self) -> Vec<usize> {
        (0..PAIRS)
            .filter(|&i| {
                let target = &self.model.target[i];
                !target.synced && target.values.len() < 8 && target.owned.len() == 2
            })
            .collect()
    }

    /// What changes between the baseline and the fault phase (module doc). Four users of about 26 holding our values lose
    /// them, under `REMOVAL_THRESHOLD_PERCENT`'s default 20 %, so the mass-removal threshold never holds a removal back.
    pub fn administer(&mut self) {
        let directory = self.directory();
        let mut pick = self.ordinary_pairs();
        pick.shuffle(&mut self.rng);
        let [leave_a1, leave_a2, deleted_a, leave_b, deleted_b, ambiguous, admin_adds, admin_removes, ..] = pick[..]
        else {
            panic!("not enough ordinary pairs: {pick:?}")
        };
        // Ids first: the model's lists shrink below.
        let source = |i: usize| self.model.source[i].id.clone();
        let target = |i: usize| self.model.target[i].id.clone();
        let (leave_a, deleted_a_id) = ([source(leave_a1), source(leave_a2)], source(deleted_a));
        let (leave_b_id, deleted_b_id) = (target(leave_b), target(deleted_b));
        let (admin_adds, admin_removes) = (target(admin_adds), target(admin_removes));
        // Two users leave the Tenant A group, one is deleted there: their Tenant B users lose our values only.
        for id in leave_a {
            directory.remove_member(TENANT_A, &self.group_a, &id);
            self.model.source_mut(&id).member = false;
        }
        directory.delete_user(TENANT_A, &deleted_a_id);
        self.model.source.retain(|u| u.id != deleted_a_id);
        // A Tenant B user leaves its group; a new account with the same key takes its place: the values move.
        directory.remove_member(TENANT_B, &self.group_b, &leave_b_id);
        self.model.target_mut(&leave_b_id).member = false;
        self.add_target(format!("u{leave_b:02}@moved.tenant-b.example"), true, false, Vec::new());
        // A Tenant B user is deleted: its ledger entry goes.
        directory.delete_user(TENANT_B, &deleted_b_id);
        self.model.target.retain(|u| u.id != deleted_b_id);
        // A second Tenant A user with the same local part joins: the key is ambiguous, the user is left alone.
        self.add_source(format!("U{ambiguous:02}@emea.tenant-a.example"), true);
        // An administrator adds a value by hand, and removes one of ours by hand (it comes back: desired state wins).
        let added = format!("X509:<SKI>{:016x}ad", self.rng.random::<u64>());
        directory.update_user(TENANT_B, &admin_adds, |u| u.certificate_user_ids.push(added.clone()));
        let user = self.model.target_mut(&admin_adds);
        user.values.push(added.clone());
        user.administrator_values.push(added);
        let ours = self.model.target(&admin_removes).owned[0].clone();
        directory.update_user(TENANT_B, &admin_removes, |u| u.certificate_user_ids.retain(|v| *v != ours));
        self.model.target_mut(&admin_removes).values.retain(|v| *v != ours);
        // New pairs join both groups, and a user only in B gets its Tenant A counterpart: additions.
        for n in 0..6 {
            self.add_source(format!("new{n}@tenant-a.example"), true);
            let values = if n % 2 == 0 { self.administrator_values(200 + n, 1) } else { Vec::new() };
            self.add_target(format!("new{n}@tenant-b.example"), true, false, values);
        }
        self.add_source("only-b1@tenant-a.example".into(), true);
    }

    /// Replaces the emulator's faults (and reseeds its generator from the scenario's seed).
    pub fn faults(&self, faults: Faults) {
        self.emulator.set_faults(Faults { seed: self.seed, ..faults });
    }

    /// How many faults the emulator injected since they were last set (`GET /_emulator/faults`).
    pub async fn injected(&self) -> Value {
        let url = format!("{}_emulator/faults", self.emulator.http_url());
        let answer: Value = reqwest::get(url).await.expect("ask the emulator").json().await.expect("JSON");
        answer["injected"].clone()
    }

    /// The Graph requests the emulator answered (token requests included).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.directory().requests()
    }

    /// `PATCH /users/{id}` requests (batch items included): the writes of certificateUserIds.
    pub fn user_writes(&self) -> Vec<RequestRecord> {
        self.requests().into_iter().filter(|r| r.method == "PATCH" && r.path.contains("/users/")).collect()
    }

    /// Starts `certsync sync --json` (the administrator's CLI: same code path as the timer).
    pub fn spawn_sync(&self) -> (Child, Output) {
        spawn_binary(&["sync", "--json"], &self.env)
    }

    /// One `certsync sync --json`, awaited without blocking the runtime (the emulator runs in this process), and
    /// checked against the invariants of every run ([`assert_nothing_lost`]).
    pub async fn sync(&self) -> Run {
        self.sync_with(&[]).await
    }

    /// [`Self::sync`] with more arguments (`--accept-new-ledger`).
    pub async fn sync_with(&self, args: &[&str]) -> Run {
        let before = self.before_run().await;
        let (child, output) = spawn_binary(&[&["sync", "--json"], args].concat(), &self.env);
        let run = finish(child, output).await;
        self.phase(&format!("sync: {}", run.status()));
        self.after_run(&before, &format!("[{}] the run ending {}", self.name, run.status()));
        run
    }

    /// The state container, as the runs see it.
    pub async fn state_store(&self) -> AzureBlobStore {
        AzureBlobStore::connect(&self.storage_connection(), None, STATE_CONTAINER).await.expect("connect to Azurite")
    }

    fn storage_connection(&self) -> StorageConnection {
        StorageConnection::ConnectionString(SecretString::from(self.azurite.connection_string()))
    }

    /// Tenant B and the ledger now, for [`Self::after_run`]. A ledger that cannot be read (storage stopped) is
    /// `None`; a missing one holds nothing.
    pub async fn before_run(&self) -> BeforeRun {
        let values = self.directory().users(TENANT_B).into_iter().map(|u| (u.id, u.certificate_user_ids)).collect();
        let ledger = tokio::time::timeout(Duration::from_secs(5), self.read_ledger()).await.unwrap_or_default();
        BeforeRun { values, ledger, matched: self.model.matched() }
    }

    async fn read_ledger(&self) -> Option<BTreeMap<String, Vec<String>>> {
        let options = AzureBlobStoreOptions { max_retries: 0, ..AzureBlobStoreOptions::default() };
        let store = AzureBlobStore::connect_with_options(&self.storage_connection(), None, STATE_CONTAINER, options)
            .await
            .ok()?;
        let Some(blob) = store.get(&ledger_blob()).await.ok()? else {
            return Some(BTreeMap::new());
        };
        let document: Value = serde_json::from_slice(&blob.bytes).expect("the ledger is JSON");
        Some(serde_json::from_value(document["users"].clone()).expect("the ledger maps user ids to values"))
    }

    /// Asserts the invariants of every run against the state before it.
    pub fn after_run(&self, before: &BeforeRun, run: &str) {
        let after = self.directory().users(TENANT_B).into_iter().map(|u| (u.id, u.certificate_user_ids)).collect();
        assert_nothing_lost(before, &after, run);
    }

    /// Faults off, then the clean run (after any crashed run's lease has expired), the oracle's exact state, and a
    /// further run that writes nothing.
    pub async fn converges(mut self) {
        self.phase("faults off");
        self.emulator.set_faults(Faults::default());
        let deadline = Instant::now() + LEASE_EXPIRY_WAIT;
        let clean = loop {
            let run = self.sync().await;
            if run.status() != "skipped" {
                break run;
            }
            assert!(Instant::now() < deadline, "the lease of an earlier run never expired: {}", run.report);
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        assert_eq!(
            clean.status(),
            "succeeded",
            "[{}] the clean run: {}\n{}",
            self.name,
            clean.report,
            clean.output.stderr()
        );
        self.assert_oracle();

        self.directory().clear_requests();
        let again = self.sync().await;
        assert_eq!(again.status(), "succeeded", "{}", again.report);
        assert_eq!(self.user_writes(), Vec::new(), "[{}] a run after convergence writes nothing", self.name);
    }
}

/// Tenants, apps (with `Group.Read.All` too, for the notification scenarios' subscriptions) and the two groups.
fn seed_tenants(directory: &Directory) -> (String, String) {
    for (tenant, roles) in [(TENANT_A, demo::APP_A_ROLES), (TENANT_B, demo::APP_B_ROLES)] {
        directory.add_tenant(tenant);
        demo::register_app(directory, tenant, &[roles, &["Group.Read.All"]].concat());
    }
    (directory.add_group(TENANT_A, "CBA users (Intune)"), directory.add_group(TENANT_B, "CBA users (resource tenant)"))
}

/// Waits for a CLI run to exit and reads its JSON report (stdout carries only the report; logs go to stderr).
pub async fn finish(mut child: Child, output: Output) -> Run {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if child.try_wait().expect("poll the process").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("certsync sync did not exit within {RUN_TIMEOUT:?}:\n{}", output.stderr());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The pipes are read by threads: wait (bounded) for the whole document. When storage is down the run log is
    // printed to stdout before the report (its fallback), so the report is what starts at the first line `{`.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stdout = output.stdout();
        let start = if stdout.starts_with("{\n") { Some(0) } else { stdout.find("\n{\n").map(|i| i + 1) };
        if let Some(Ok(report)) = start.map(|start| serde_json::from_str::<Value>(&stdout[start..])) {
            return Run { report, output };
        }
        if Instant::now() > deadline {
            return Run { report: Value::Null, output };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per user, how many PATCHes the emulator saw.
pub fn writes_per_user(writes: &[RequestRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for write in writes {
        let user = write.path.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default();
        *counts.entry(user.to_owned()).or_default() += 1;
    }
    counts
}
