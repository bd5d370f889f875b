//! Benchmarks of certsync against the runbook's request pattern, on the Graph emulator with a per-request latency and
//! Graph's documented throttling budgets. Prints a Markdown table (BENCHMARKS.md holds the last one, the command, and
//! which figures are measured or derived).
//!
//! Full syncs run the product as a child process (`certsync sync --json --state-dir …`), so its peak memory (VmHWM) is
//! its own, not the emulator's. Graph request counts come from the run's own report and are cross-checked against the
//! emulator's request log. The incremental scenario runs `certsync serve` as the Functions host would (see
//! `sync/incremental.rs`). The runbook (seed 000) is replayed against a second pair of tenants in the same emulator,
//! so both share the latency and budget rules but not each other's budget: pages of 100 members (no `$top`), then one
//! PATCH per matched user, one request at a time, on every run.
//!
//! Usage: `cargo bench --bench sync -- [--sizes 1000,10000,100000] [--latency-ms 20] [--runbook-max 10000]
//! [--runbook-sample 1000] [--throttled-max 10000]`; `AZURITE_BIN` for the incremental scenario;
//! `CERTSYNC_BENCH_BINARY=<path>` measures another build of certsync (e.g. the musl `handler` of `scripts/package`)
//! instead of the one cargo built for the bench.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graph_emulator::{AppRegistration, Directory, Emulator, EmulatorOptions, NewUser, Refill, RequestKind, Throttling};
use serde_json::Value;

use certsync_test_support::functions_host;
mod incremental;

/// The certsync binary under measurement: `CERTSYNC_BENCH_BINARY`, else the one cargo built for this bench.
fn binary() -> &'static str {
    static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var("CERTSYNC_BENCH_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_certsync").to_owned())
    })
}
const SECRET: &str = "bench-secret";

struct Args {
    sizes: Vec<usize>,
    latency: Duration,
    runbook_max: usize,
    /// Above --runbook-max: how many PATCHes the sampled runbook replay sends.
    runbook_sample: usize,
    /// Above this size the first sync runs with throttling off (Graph's write budget would make it take hours) and
    /// the other scenarios on an emulator seeded with its result.
    throttled_max: usize,
    /// Sections to run (`--only sizes,refill,continuation`); all by default.
    only: Vec<String>,
    /// Users of the first sync under each refill model (`--refill-size`).
    refill_size: usize,
    /// Users of the first sync that continues across invocations (`--continuation-size`).
    continuation_size: usize,
    /// Refill models to run (`--refill-models continuous,sliding,fixed`); all by default.
    refill_models: Vec<String>,
}

impl Args {
    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn args() -> Args {
    let mut args = Args {
        sizes: vec![1_000, 10_000],
        latency: Duration::from_millis(20),
        runbook_max: 10_000,
        runbook_sample: 1_000,
        throttled_max: 10_000,
        only: Vec::new(),
        refill_size: 10_000,
        continuation_size: 100_000,
        refill_models: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sizes" => {
                args.sizes = it.next().unwrap_or_default().split(',').filter_map(|s| s.trim().parse().ok()).collect()
            }
            "--latency-ms" => {
                args.latency = Duration::from_millis(it.next().and_then(|v| v.parse().ok()).unwrap_or(20))
            }
            "--runbook-max" => args.runbook_max = it.next().and_then(|v| v.parse().ok()).unwrap_or(10_000),
            "--runbook-sample" => args.runbook_sample = it.next().and_then(|v| v.parse().ok()).unwrap_or(1_000),
            "--throttled-max" => args.throttled_max = it.next().and_then(|v| v.parse().ok()).unwrap_or(10_000),
            "--refill-models" => {
                args.refill_models = it.next().unwrap_or_default().split(',').map(|s| s.trim().to_owned()).collect()
            }
            "--only" => args.only = it.next().unwrap_or_default().split(',').map(|s| s.trim().to_owned()).collect(),
            "--refill-size" => args.refill_size = it.next().and_then(|v| v.parse().ok()).unwrap_or(10_000),
            "--continuation-size" => args.continuation_size = it.next().and_then(|v| v.parse().ok()).unwrap_or(100_000),
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    args
}

#[derive(Default, Clone)]
struct Row {
    size: usize,
    scenario: String,
    who: &'static str,
    wall: Duration,
    reads: u64,
    writes: u64,
    batches: u64,
    throttle_wait_ms: u64,
    peak_mib: Option<f64>,
    note: String,
    /// Runbook only: time spent reading member pages, and sending PATCHes.
    page_time: Duration,
    patch_time: Duration,
}

impl Row {
    fn requests(&self) -> u64 {
        self.reads + self.writes
    }
}

/// A tenant pair seeded with `size` matched users.
struct Pair {
    tenant_a: String,
    tenant_b: String,
    app_a: String,
    app_b: String,
    group_a: String,
    group_b: String,
    /// Tenant A user ids in the group, in order.
    members_a: Vec<String>,
}

/// Seeds a pair of `size` matched users. Ids are derived from `tag` and the index, so a second emulator can hold the
/// same directory; `b_values` gives Tenant B users (by id) the certificateUserIds they already hold.
fn seed_pair(directory: &Directory, size: usize, tag: u8, b_values: &HashMap<String, Vec<String>>) -> Pair {
    let tenant_a = format!("aaaaaaa{tag}-0000-4000-8000-00000000000a");
    let tenant_b = format!("bbbbbbb{tag}-0000-4000-8000-00000000000b");
    let app_a = format!("aaaaaaa{tag}-0000-4000-8000-0000000000c1");
    let app_b = format!("bbbbbbb{tag}-0000-4000-8000-0000000000c2");
    directory.add_tenant(&tenant_a);
    directory.add_tenant(&tenant_b);
    let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect();
    // Group.Read.All: change-notification subscriptions on groups (the incremental scenario).
    directory.add_app(
        &tenant_a,
        AppRegistration {
            client_id: app_a.clone(),
            client_secret: Some(SECRET.into()),
            roles: roles(&["GroupMember.Read.All", "User.Read.All", "Group.Read.All"]),
            federated_credentials: vec![],
        },
    );
    directory.add_app(
        &tenant_b,
        AppRegistration {
            client_id: app_b.clone(),
            client_secret: Some(SECRET.into()),
            roles: roles(&["GroupMember.Read.All", "User.ReadWrite.All", "Group.Read.All"]),
            federated_credentials: vec![],
        },
    );
    let group_a =
        directory.add_group_with_id(&tenant_a, &format!("a{tag}000000-0000-4000-9000-000000000001"), "CBA users");
    let group_b =
        directory.add_group_with_id(&tenant_b, &format!("b{tag}000000-0000-4000-9000-000000000001"), "CBA users");
    let mut members_a = Vec::with_capacity(size);
    let mut members_b = Vec::with_capacity(size);
    for i in 0..size {
        let a = NewUser::new(format!("user{i}@tenant-a.example")).id(format!("a{tag}000000-0000-4000-8000-{i:012}"));
        members_a.push(directory.add_user(&tenant_a, a));
        let id_b = format!("b{tag}000000-0000-4000-8000-{i:012}");
        let mut b = NewUser::new(format!("user{i}@tenant-b.example")).id(&id_b);
        if let Some(values) = b_values.get(&id_b) {
            b = b.certificate_user_ids(values.clone());
        }
        members_b.push(directory.add_user(&tenant_b, b));
    }
    directory.add_members(&tenant_a, &group_a, &members_a);
    directory.add_members(&tenant_b, &group_b, &members_b);
    Pair { tenant_a, tenant_b, app_a, app_b, group_a, group_b, members_a }
}

fn env_for(emulator: &Emulator, pair: &Pair, ca: &Path) -> HashMap<String, String> {
    let url = |u: url::Url| u.as_str().trim_end_matches('/').to_owned();
    HashMap::from([
        ("TENANT_A_ID".into(), pair.tenant_a.clone()),
        ("TENANT_A_CREDENTIAL".into(), "client-secret".into()),
        ("TENANT_A_CLIENT_ID".into(), pair.app_a.clone()),
        ("TENANT_A_CLIENT_SECRET".into(), SECRET.into()),
        ("TENANT_B_ID".into(), pair.tenant_b.clone()),
        ("TENANT_B_CLIENT_ID".into(), pair.app_b.clone()),
        ("TENANT_B_CLIENT_SECRET".into(), SECRET.into()),
        ("SYNC_PAIRS".into(), format!("{}->{}", pair.group_a, pair.group_b)),
        ("CERTIFICATE_USER_ID_TEMPLATES".into(), "subject-cn".into()),
        ("GRAPH_ENDPOINT".into(), url(emulator.https_url())),
        ("AUTHORITY_HOST".into(), url(emulator.authority_host())),
        ("EXTRA_CA_CERTIFICATE_PATH".into(), ca.display().to_string()),
        ("AzureWebJobsStorage".into(), "UseDevelopmentStorage=true".into()),
        // The churn scenario removes 1 % of the users: below the default threshold, but be explicit.
        ("ALLOW_MASS_REMOVAL".into(), "true".into()),
        ("LOG_LEVEL".into(), "warn".into()),
    ])
}

/// Runs `certsync sync --json` as a child, sampling its peak resident memory (VmHWM) until it exits.
fn run_product(env: &HashMap<String, String>, state_dir: &Path) -> (Duration, Value, Option<f64>) {
    run_product_with(env, state_dir, &[])
}

/// [`run_product`] with more arguments for `certsync sync`.
fn run_product_with(env: &HashMap<String, String>, state_dir: &Path, extra: &[&str]) -> (Duration, Value, Option<f64>) {
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(["sync", "--json", "--state-dir"])
        .arg(state_dir)
        .args(extra)
        .env_clear()
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start certsync");
    let status_path = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak_kib = None;
        while let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            {
                peak_kib = Some(kib);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak_kib
    });
    let output = std::io::read_to_string(child.stdout.take().expect("stdout")).expect("read the report");
    let status = child.wait().expect("wait for certsync");
    let wall = started.elapsed();
    let peak = sampler.join().ok().flatten().map(|kib| kib / 1024.0);
    assert!(matches!(status.code(), Some(0 | 3 | 4)), "certsync failed ({status}):\n{output}");
    (wall, serde_json::from_str(&output).expect("the JSON report"), peak)
}

fn product_row(
    size: usize,
    scenario: &str,
    env: &HashMap<String, String>,
    state: &Path,
    directory: &Directory,
    note: &str,
) -> Row {
    directory.clear_requests();
    let (wall, report, peak_mib) = run_product(env, state);
    let metric = |tenant: &str, field: &str| report["graph"][tenant][field].as_u64().unwrap_or(0);
    let both = |field: &str| metric("tenantA", field) + metric("tenantB", field);
    let row = Row {
        size,
        scenario: scenario.into(),
        who: "certsync",
        wall,
        reads: both("reads"),
        writes: both("writes"),
        batches: both("batches"),
        throttle_wait_ms: both("throttleWaitMs"),
        peak_mib,
        note: format!(
            "{}{}",
            note,
            if report["outcome"]["status"] == "succeeded" { "" } else { " (outcome not succeeded)" }
        ),
        ..Row::default()
    };
    // Cross-check with what the emulator saw (batch items are logged with via_batch; token requests excluded).
    let seen = directory
        .requests()
        .iter()
        .filter(|r| matches!(r.kind, RequestKind::Read | RequestKind::Write) && (r.tenant.is_some()))
        .count() as u64;
    if seen != row.requests() {
        eprintln!("note: {scenario} at {size}: report says {} requests, emulator saw {seen}", row.requests());
    }
    row
}

/// The runbook's pattern (seed 000): token, member pages of 100 on both sides, one PATCH per matched user, sequential.
async fn runbook(emulator: &Emulator, pair: &Pair, size: usize, scenario: &str, patch_limit: Option<usize>) -> Row {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = emulator.https_url();
    let token = |tenant: String, app: String| {
        let client = client.clone();
        let url = base.join(&format!("{tenant}/oauth2/v2.0/token")).unwrap();
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", &app),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ];
            let response: Value = client.post(url).form(&form).send().await.unwrap().json().await.unwrap();
            response["access_token"].as_str().unwrap().to_owned()
        }
    };
    let started = Instant::now();
    let (token_a, token_b) = (
        token(pair.tenant_a.clone(), pair.app_a.clone()).await,
        token(pair.tenant_b.clone(), pair.app_b.clone()).await,
    );
    let mut reads = 0;
    let mut throttle_wait = Duration::ZERO;
    let mut send = async |request: reqwest::RequestBuilder| -> reqwest::Response {
        loop {
            let response = request.try_clone().unwrap().send().await.unwrap();
            if response.status() != 429 {
                return response;
            }
            // The runbook had no throttling handling; replaying it faithfully would just fail. Waiting as Graph asks
            // is the kindest reading, and counts the waits.
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(1.0);
            throttle_wait += Duration::from_secs_f64(wait);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    };
    let members = |token: String, group: String, tenant_a: bool| {
        let url = base.join(&format!("beta/groups/{group}/members")).unwrap();
        (token, url, tenant_a)
    };
    let mut upns: HashMap<bool, Vec<(String, String)>> = HashMap::new();
    for (token, url, side) in
        [members(token_a.clone(), pair.group_a.clone(), true), members(token_b.clone(), pair.group_b.clone(), false)]
    {
        let mut next = Some(url.to_string());
        while let Some(url) = next {
            let page: Value = send(client.get(&url).bearer_auth(&token)).await.json().await.unwrap();
            reads += 1;
            for m in page["value"].as_array().into_iter().flatten() {
                upns.entry(side).or_default().push((
                    m["id"].as_str().unwrap_or_default().to_owned(),
                    m["userPrincipalName"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            next = page["@odata.nextLink"].as_str().map(str::to_owned);
        }
    }
    let page_time = started.elapsed();
    let patches_started = Instant::now();
    let local = |upn: &str| upn.split('@').next().unwrap_or_default().to_owned();
    let a: HashMap<String, ()> = upns.get(&true).into_iter().flatten().map(|(_, upn)| (local(upn), ())).collect();
    let mut writes: u64 = 0;
    for (id, upn) in upns.get(&false).into_iter().flatten() {
        if patch_limit.is_some_and(|limit| writes >= limit as u64) {
            break;
        }
        if a.contains_key(&local(upn)) {
            let url = base.join(&format!("v1.0/users/{id}")).unwrap();
            let body = serde_json::json!({"authorizationInfo": {"certificateUserIds": [format!("X509:<PN>CN={}", local(upn))]}});
            send(client.patch(url).bearer_auth(&token_b).json(&body)).await;
            writes += 1;
        }
    }
    Row {
        size,
        scenario: scenario.into(),
        who: "runbook",
        wall: started.elapsed(),
        reads,
        writes,
        batches: 0,
        throttle_wait_ms: throttle_wait.as_millis() as u64,
        peak_mib: None,
        note: String::new(),
        page_time,
        patch_time: patches_started.elapsed(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("certsync-bench-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start_emulator(args: &Args, throttling: Throttling) -> Emulator {
    let options = EmulatorOptions { latency: args.latency, throttling, ..EmulatorOptions::default() };
    Emulator::start(options).await.expect("start the emulator")
}

fn write_ca(dir: &Path, emulator: &Emulator) -> PathBuf {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, emulator.ca_pem()).unwrap();
    ca
}

/// Graph's write budget: 3,000 writes per 150 s per app and tenant, the bucket full at the start. The least time
/// `writes` writes can take, whoever sends them [throttling-limits].
fn write_budget_secs(writes: usize) -> f64 {
    writes.saturating_sub(3_000) as f64 / (3_000.0 / 150.0)
}

async fn bench_size(args: &Args, size: usize) -> Vec<Row> {
    let dir = temp_dir(&size.to_string());
    let state = dir.join("state");
    let mut rows = vec![];
    let no_values = HashMap::new();

    // The first sync. Up to --throttled-max under Graph's budgets; above it on an emulator without throttling (the
    // client's own time and memory), and the scenarios after it on a second emulator with the budgets on, whose
    // Tenant B holds exactly what that first sync wrote (same ids, values copied) and whose ledger is that run's.
    let (emulator, ours, env) = if size <= args.throttled_max {
        let emulator = start_emulator(args, Throttling::Graph).await;
        let ours = seed_pair(&emulator.directory(), size, 1, &no_values);
        let env = env_for(&emulator, &ours, &write_ca(&dir, &emulator));
        rows.push(product_row(size, "first sync", &env, &state, &emulator.directory(), ""));
        (emulator, ours, env)
    } else {
        let first = start_emulator(args, Throttling::Off).await;
        let pair = seed_pair(&first.directory(), size, 1, &no_values);
        let mut env = env_for(&first, &pair, &write_ca(&dir, &first));
        // The client paces to Graph's documented write budget unless told otherwise (issue 19).
        env.insert("GRAPH_WRITE_BUDGET".into(), "1000000/150".into());
        let mut row = product_row(size, "first sync", &env, &state, &first.directory(), "");
        row.note = format!(
            "throttling off and GRAPH_WRITE_BUDGET=1000000/150: the client's own time, paced only by its resource-unit budget (8,000 per 10 s). Under Graph's write budget: ≥ {:.0} s (derived: {} writes at 3,000 per 150 s)",
            write_budget_secs(row.writes as usize),
            row.writes
        );
        rows.push(row);
        let values: HashMap<String, Vec<String>> =
            first.directory().users(&pair.tenant_b).into_iter().map(|u| (u.id, u.certificate_user_ids)).collect();
        first.shutdown().await;
        let emulator = start_emulator(args, Throttling::Graph).await;
        let ours = seed_pair(&emulator.directory(), size, 1, &values);
        let env = env_for(&emulator, &ours, &write_ca(&dir, &emulator));
        (emulator, ours, env)
    };
    let directory = emulator.directory();
    let seeded = if size <= args.throttled_max { "" } else { "Tenant B seeded with the first sync's result" };

    rows.push(product_row(size, "steady state (nothing changed)", &env, &state, &directory, seeded));
    // 1 % churn: half leave the Tenant A group, half are new matched users.
    let churn = (size / 100).max(2);
    for id in ours.members_a.iter().take(churn / 2) {
        directory.remove_member(&ours.tenant_a, &ours.group_a, id);
    }
    for i in 0..churn / 2 {
        let a = directory.add_user(&ours.tenant_a, NewUser::new(format!("new{i}@tenant-a.example")));
        let b = directory.add_user(&ours.tenant_b, NewUser::new(format!("new{i}@tenant-b.example")));
        directory.add_member(&ours.tenant_a, &ours.group_a, &a);
        directory.add_member(&ours.tenant_b, &ours.group_b, &b);
    }
    rows.push(product_row(size, "after 1 % churn", &env, &state, &directory, seeded));

    match incremental::run(size, &emulator, &ours, &env, &state, &dir).await {
        Ok(incremental) => rows.extend(incremental),
        Err(why) => eprintln!("incremental scenario at {size} users not run: {why}"),
    }

    let theirs = seed_pair(&directory, size, 2, &no_values);
    if size <= args.runbook_max {
        // Every runbook run sends the same requests (it rewrites every matched user), so one replay stands for each scenario.
        let replay = runbook(&emulator, &theirs, size, "every run", None).await;
        for scenario in SCENARIOS {
            rows.push(Row { scenario: scenario.into(), note: "same pattern every run".into(), ..replay.clone() });
        }
    } else {
        // Sampled: every member page read (measured), the first --runbook-sample PATCHes sent (measured); the rest of
        // the run's time derived from the per-PATCH time and Graph's write budget. The request count is exact: the
        // pattern fixes it.
        let sample = runbook(&emulator, &theirs, size, "every run", Some(args.runbook_sample)).await;
        let per_patch = sample.patch_time.as_secs_f64() / sample.writes.max(1) as f64;
        let latency_bound = size as f64 * per_patch;
        let budget_bound = write_budget_secs(size);
        let derived = sample.page_time.as_secs_f64() + latency_bound.max(budget_bound);
        let note = format!(
            "sampled: {} member pages read (measured {:.1} s), {} of {size} PATCHes sent (measured {:.1} s); time derived: pages + max({size} × {:.0} ms, write budget {:.0} s)",
            sample.reads,
            sample.page_time.as_secs_f64(),
            sample.writes,
            sample.patch_time.as_secs_f64(),
            per_patch * 1000.0,
            budget_bound
        );
        for scenario in SCENARIOS {
            rows.push(Row {
                size,
                scenario: scenario.into(),
                who: "runbook",
                wall: Duration::from_secs_f64(derived),
                reads: sample.reads,
                writes: size as u64,
                note: note.clone(),
                ..Row::default()
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

const SCENARIOS: [&str; 4] =
    ["first sync", "steady state (nothing changed)", "after 1 % churn", "incremental: one membership change"];

/// Process start to ready: how long `certsync serve` takes to answer the host's readiness probe.
async fn start_to_ready() -> Duration {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let pair = seed_pair(&emulator.directory(), 1, 3, &HashMap::new());
    let dir = temp_dir("ready");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, emulator.ca_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut env = env_for(&emulator, &pair, &ca);
    env.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string());
    let started = Instant::now();
    let mut child = Command::new(binary())
        .arg("serve")
        .env_clear()
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    while client.get(format!("http://127.0.0.1:{port}/")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    ready
}

fn print(rows: &[Row], args: &Args) {
    println!("\nPer-request latency {} ms; Graph throttling budgets on unless noted.\n", args.latency.as_millis());
    println!(
        "| users | scenario | who | wall time | Graph requests (reads + writes) | writes | batches | throttle wait | peak memory | requests vs runbook | note |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let runbook = rows.iter().find(|r| r.who == "runbook" && r.size == row.size && r.scenario == row.scenario);
        let ratio = match (row.who, runbook) {
            ("certsync", Some(rb)) if row.requests() >= rb.requests() => {
                format!("{:.1}× more", row.requests() as f64 / rb.requests().max(1) as f64)
            }
            ("certsync", Some(rb)) if row.requests() > 0 => {
                format!("{:.0}× fewer", rb.requests() as f64 / row.requests() as f64)
            }
            _ => String::new(),
        };
        let wall = if row.wall.is_zero() { "—".to_owned() } else { format!("{:.1} s", row.wall.as_secs_f64()) };
        println!(
            "| {} | {} | {} | {} | {} ({} + {}) | {} | {} | {:.1} s | {} | {} | {} |",
            row.size,
            row.scenario,
            row.who,
            wall,
            row.requests(),
            row.reads,
            row.writes,
            row.writes,
            row.batches,
            row.throttle_wait_ms as f64 / 1000.0,
            row.peak_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_default(),
            ratio,
            row.note
        );
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; test runners listing or running every target (`--list`, `cargo test
    // --all-targets`) must not start a benchmark of several minutes.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let args = args();
    let mut rows = Vec::new();
    if args.runs("sizes") {
        for &size in &args.sizes {
            eprintln!("benchmarking {size} users…");
            rows.extend(bench_size(&args, size).await);
            print(&rows, &args);
        }
    }
    if args.runs("refill") {
        refill_models(&args).await;
    }
    if args.runs("continuation") {
        continuation(&args).await;
    }
    if !args.runs("sizes") {
        return;
    }
    let mut readiness: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        readiness.push(start_to_ready().await);
    }
    readiness.sort();
    println!(
        "\nProcess start to ready (`certsync serve` answering GET /), 5 runs: median {:.1} ms, max {:.1} ms.",
        readiness[2].as_secs_f64() * 1000.0,
        readiness[4].as_secs_f64() * 1000.0
    );

    // Webhook acknowledgement: the webhook does no I/O, so neither Graph nor storage is involved.
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let pair = seed_pair(&emulator.directory(), 1, 4, &HashMap::new());
    let dir = temp_dir("ack");
    let env = env_for(&emulator, &pair, &write_ca(&dir, &emulator));
    let (burst, concurrency) = (1_000, 50);
    let started = Instant::now();
    let latencies = incremental::webhook_ack(&env, burst, concurrency).await;
    let total = started.elapsed();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "\nWebhook acknowledgement (`function-webhook` → 202 with the queue output), {burst} notifications at concurrency \
         {concurrency}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.0} notifications/s.",
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
        burst as f64 / total.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Graph's write budget per app and tenant [throttling-limits].
const BUDGET_WRITES: f64 = 3_000.0;
const BUDGET_WINDOW_SECS: f64 = 150.0;

/// The least time `writes` writes can take under `refill` from a full budget, whoever sends them (derived).
fn refill_floor_secs(refill: &Refill, writes: usize, capacity: f64, window: f64) -> f64 {
    let windows = (writes as f64 / capacity).ceil();
    match refill {
        Refill::Continuous => (writes as f64 - capacity).max(0.0) / (capacity / window),
        Refill::SlidingWindow => (windows - 1.0).max(0.0) * window,
        // The first window ends `window - phase` after the first request, then one window each.
        Refill::FixedWindow { phase_secs } => {
            if windows <= 1.0 {
                0.0
            } else {
                (window - *phase_secs as f64) + (windows - 2.0) * window
            }
        }
    }
}

/// What the emulator saw of one run: Graph requests (batch items counted one by one, `$batch` envelopes not), write
/// attempts, and throttled answers.
fn emulator_counts(directory: &Directory) -> (usize, usize, usize) {
    let requests = directory.requests();
    let graph =
        requests.iter().filter(|r| matches!(r.kind, RequestKind::Read | RequestKind::Write) && r.tenant.is_some());
    let (mut all, mut writes, mut throttled) = (0, 0, 0);
    for request in graph {
        all += 1;
        writes += usize::from(request.kind == RequestKind::Write);
        throttled += usize::from(request.status == 429);
    }
    (all, writes, throttled)
}

/// The first sync at `--refill-size` users under each refill model the documentation allows (graph.md, UNCERTAIN).
async fn refill_models(args: &Args) {
    let size = args.refill_size;
    let models = [
        ("continuous", "continuous (a token bucket, 20 per s)", Refill::Continuous),
        ("sliding", "sliding window of 150 s", Refill::SlidingWindow),
        (
            "fixed",
            "fixed windows of 150 s, the first 100 s old at the first request",
            Refill::FixedWindow { phase_secs: 100 },
        ),
    ];
    let models = models
        .into_iter()
        .filter(|(key, ..)| args.refill_models.is_empty() || args.refill_models.iter().any(|m| m == key))
        .map(|(_, name, refill)| (name, refill));
    println!(
        "\nFirst sync of {size} users under each refill model (Graph's 3,000 writes per 150 s), {} ms latency.\n",
        args.latency.as_millis()
    );
    println!(
        "| refill model | who | wall time | floor (derived) | over the floor | Graph requests | write attempts | 429s | 429s per write | requests per write |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, refill) in models {
        eprintln!("first sync of {size} users, refill {name}…");
        let options = EmulatorOptions {
            latency: args.latency,
            throttling: Throttling::Graph,
            refill: refill.clone(),
            ..EmulatorOptions::default()
        };
        let emulator = Emulator::start(options).await.expect("start the emulator");
        let dir = temp_dir("refill");
        let pair = seed_pair(&emulator.directory(), size, 1, &HashMap::new());
        let env = env_for(&emulator, &pair, &write_ca(&dir, &emulator));
        emulator.directory().clear_requests();
        let (wall, report, _) = run_product(&env, &dir.join("state"));
        let (requests, writes, throttled) = emulator_counts(&emulator.directory());
        let floor = refill_floor_secs(&refill, size, BUDGET_WRITES, BUDGET_WINDOW_SECS);
        let outcome = report["outcome"]["status"].as_str().unwrap_or("?").to_owned();
        let row = |who: &str, wall: Duration, (requests, writes, throttled): (usize, usize, usize), note: &str| {
            println!(
                "| {name} | {who} | {:.1} s | {floor:.0} s | {:+.1} % | {requests} | {writes} | {throttled} | {:.2} % | {:.3} |{note}",
                wall.as_secs_f64(),
                (wall.as_secs_f64() / floor.max(1.0) - 1.0) * 100.0,
                throttled as f64 * 100.0 / size as f64,
                requests as f64 / size as f64,
            );
        };
        let note = if outcome == "succeeded" { String::new() } else { format!(" outcome {outcome}") };
        row("certsync", wall, (requests, writes, throttled), &note);
        // The runbook (seed 000) beside it, on its own pair of tenants (its own budget) in the same emulator.
        let theirs = seed_pair(&emulator.directory(), size, 2, &HashMap::new());
        emulator.directory().clear_requests();
        let replay = runbook(&emulator, &theirs, size, "first sync", None).await;
        row("runbook (seed 000)", replay.wall, emulator_counts(&emulator.directory()), "");
        emulator.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Every Tenant B user's certificateUserIds, by id.
fn values_of(directory: &Directory, tenant: &str) -> HashMap<String, Vec<String>> {
    directory.users(tenant).into_iter().map(|u| (u.id, u.certificate_user_ids)).collect()
}

/// A first sync of `--continuation-size` users on a budget scaled ten times up (30,000 writes per 150 s, the client
/// told so with GRAPH_WRITE_BUDGET) so it ends in minutes, with a soft deadline of 60 s: it continues across
/// invocations (`certsync sync --soft-deadline 60`, run again while the outcome is `continued`), and must end in
/// exactly the state of one uninterrupted run (compared with one on a second emulator without throttling).
async fn continuation(args: &Args) {
    let size = args.continuation_size;
    let (writes_per_150s, deadline) = (30_000u32, 60u64);
    eprintln!("first sync of {size} users continued across invocations…");
    let options = EmulatorOptions {
        latency: args.latency,
        throttling: Throttling::Custom { resource_units_per_10s: 80_000, writes_per_150s },
        ..EmulatorOptions::default()
    };
    let emulator = Emulator::start(options).await.expect("start the emulator");
    let dir = temp_dir("continuation");
    let pair = seed_pair(&emulator.directory(), size, 1, &HashMap::new());
    let mut env = env_for(&emulator, &pair, &write_ca(&dir, &emulator));
    env.insert("GRAPH_WRITE_BUDGET".into(), format!("{writes_per_150s}/150"));
    let state = dir.join("state");
    emulator.directory().clear_requests();
    let started = Instant::now();
    let mut invocations = Vec::new();
    loop {
        let (wall, report, peak) = run_product_with(&env, &state, &["--soft-deadline", &deadline.to_string()]);
        let outcome = report["outcome"]["status"].as_str().unwrap_or("?").to_owned();
        let written = report["totals"]["usersChanged"].as_u64().unwrap_or(0);
        eprintln!(
            "  invocation {}: {:.1} s, {outcome}, {written} users written",
            invocations.len() + 1,
            wall.as_secs_f64()
        );
        invocations.push((wall, outcome.clone(), written, peak));
        if outcome != "continued" || invocations.len() > 40 {
            break;
        }
    }
    let total = started.elapsed();
    let (requests, writes, throttled) = emulator_counts(&emulator.directory());
    let continued = values_of(&emulator.directory(), &pair.tenant_b);
    emulator.shutdown().await;

    // One uninterrupted run of the same directory, without throttling (the state is what matters here).
    let reference = Emulator::start(EmulatorOptions {
        latency: Duration::ZERO,
        throttling: Throttling::Off,
        ..EmulatorOptions::default()
    })
    .await
    .expect("start the emulator");
    let reference_dir = temp_dir("continuation-reference");
    let reference_pair = seed_pair(&reference.directory(), size, 1, &HashMap::new());
    let mut reference_env = env_for(&reference, &reference_pair, &write_ca(&reference_dir, &reference));
    // No throttling here, so no budget to pace to: the client's own count of Graph's documented budget would make the
    // reference take 100,000 / 20 s.
    reference_env.insert("GRAPH_WRITE_BUDGET".into(), "1000000/150".into());
    let _ = run_product(&reference_env, &reference_dir.join("state"));
    let uninterrupted = values_of(&reference.directory(), &reference_pair.tenant_b);
    reference.shutdown().await;
    let same = continued == uninterrupted;
    let floor = refill_floor_secs(&Refill::Continuous, size, f64::from(writes_per_150s), BUDGET_WINDOW_SECS);

    println!(
        "\nA first sync of {size} users that continues across invocations: budget scaled to {writes_per_150s} writes per 150 s (continuous refill; GRAPH_WRITE_BUDGET={writes_per_150s}/150), soft deadline {deadline} s, {} ms latency.\n",
        args.latency.as_millis()
    );
    println!("| invocation | wall time | outcome | users written | peak memory |");
    println!("|---:|---:|---|---:|---:|");
    for (i, (wall, outcome, written, peak)) in invocations.iter().enumerate() {
        println!(
            "| {} | {:.1} s | {outcome} | {written} | {} |",
            i + 1,
            wall.as_secs_f64(),
            peak.map(|m| format!("{m:.0} MiB")).unwrap_or_default()
        );
    }
    println!(
        "\nIn all: {:.1} s against a floor of {floor:.0} s (derived), {requests} Graph requests, {writes} write attempts, {throttled} × 429; final state {} one uninterrupted run's ({} users compared).",
        total.as_secs_f64(),
        if same { "identical to" } else { "DIFFERENT from" },
        continued.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&reference_dir);
}
