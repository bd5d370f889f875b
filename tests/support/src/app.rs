//! `TestApp`: the binary as the Functions host runs it, against the emulator and Azurite.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certsync::demo::{self, DemoWorld};
use certsync::storage::{AzureBlobStore, BlobStore, StorageConnection};
use graph_emulator::{Emulator, EmulatorOptions};
use serde_json::{Value, json};

use crate::azurite::Azurite;
use crate::functions_host::{self, HostLogLevel};

/// The `certsync` binary cargo built for the tests: `target/<profile>/certsync`, beside the `deps/` folder the test
/// executables run from (cargo builds a package's binaries for its integration tests). `CERTSYNC_BINARY` overrides it.
pub fn binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("CERTSYNC_BINARY") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe.parent().and_then(std::path::Path::parent).expect("target/<profile>/deps/<test>");
    profile.join(format!("certsync{}", std::env::consts::EXE_SUFFIX))
}

/// A temporary folder, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("certsync-test-").tempdir().expect("create a temporary folder")
}

/// The emulator seeded with the demo scenario, Azurite, and the settings pointing at both.
pub struct World {
    pub emulator: Emulator,
    pub world: DemoWorld,
    pub azurite: Azurite,
    pub env: HashMap<String, String>,
    _folder: tempfile::TempDir,
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(EmulatorOptions::default()).await
    }

    pub async fn start_with(options: EmulatorOptions) -> Self {
        let emulator = Emulator::start(options).await.expect("start the Graph emulator");
        let world = demo::seed(&emulator.directory());
        let azurite = Azurite::start().await;
        let folder = tempdir();
        let mut env = demo::settings_for(&emulator, &world, &folder.path().join("ca.pem")).expect("write the CA");
        env.insert("AzureWebJobsStorage".into(), azurite.connection_string());
        env.insert("WEBHOOK_CLIENT_STATE".into(), "test-client-state".into());
        Self { emulator, world, azurite, env, _folder: folder }
    }

    pub async fn log_store(&self) -> AzureBlobStore {
        let connection = StorageConnection::ConnectionString(self.azurite.connection_string().into());
        AzureBlobStore::connect(&connection, None, "cert-auth").await.expect("connect to Azurite")
    }

    pub async fn log_blobs(&self) -> Vec<String> {
        self.log_store().await.list("").await.expect("list the log container")
    }

    pub fn values_of(&self, tenant_b_key: &str) -> Vec<String> {
        self.emulator
            .directory()
            .user(demo::TENANT_B, &self.world.b[tenant_b_key])
            .map(|u| u.certificate_user_ids)
            .unwrap_or_default()
    }
}

/// The running binary; killed on drop.
pub struct TestApp {
    child: Child,
    pub port: u16,
    pub output: Output,
    client: reqwest::Client,
}

/// What a process printed, stdout and stderr apart (the host logs stderr as errors).
#[derive(Clone, Default)]
pub struct Output {
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Output {
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The lines the host would log at `level` (`functions_host::console_log_level`).
    pub fn host_log(&self, level: HostLogLevel) -> Vec<String> {
        let stdout = self.stdout();
        let stderr = self.stderr();
        let lines = stdout.lines().map(|l| (false, l)).chain(stderr.lines().map(|l| (true, l)));
        lines
            .filter(|(from_stderr, line)| functions_host::console_log_level(*from_stderr, line) == level)
            .map(|(_, line)| line.to_owned())
            .collect()
    }
}

/// The port in the binary's "custom handler listening" log line (JSON or text format), once it is there.
fn listening_port(stdout: &str) -> Option<u16> {
    let line = stdout.lines().find(|line| line.contains("custom handler listening"))?;
    if let Ok(record) = serde_json::from_str::<Value>(line) {
        // The event's fields are flattened into the record (src/telemetry.rs).
        let port = record.get("port").or_else(|| record["fields"].get("port"));
        return port.and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
    }
    let (_, rest) = line.split_once("port=")?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok().filter(|p| *p != 0)
}

/// Starts `certsync <args>` with exactly `env` (nothing inherited but PATH), capturing stdout and stderr.
pub fn spawn_binary(args: &[&str], env: &HashMap<String, String>) -> (Child, Output) {
    let mut command = Command::new(binary());
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).envs(env);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the certsync binary");
    let output = Output::default();
    type Pipe = Box<dyn std::io::Read + Send>;
    let pipes: [(Option<Pipe>, Arc<Mutex<String>>); 2] = [
        (child.stdout.take().map(|p| Box::new(p) as Pipe), output.stdout.clone()),
        (child.stderr.take().map(|p| Box::new(p) as Pipe), output.stderr.clone()),
    ];
    for (pipe, sink) in pipes {
        let Some(pipe) = pipe else { continue };
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
    }
    (child, output)
}

impl TestApp {
    /// Starts `certsync serve` as the host does (`tests/support/src/functions_host.rs`): any HTTP answer to `GET /`
    /// within 30 s means ready; a process that exits or stays silent is restarted up to 3 times, then the host gives
    /// up, and so does this. The handler must also answer that probe with a 2xx, which is the product's promise.
    pub async fn spawn(env: &HashMap<String, String>) -> Self {
        let mut failures = Vec::new();
        for _ in 0..=functions_host::RESTARTS {
            match Self::start_once(env).await {
                Ok(app) => return app,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "the host would give up: certsync did not start in {} attempts:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    async fn start_once(env: &HashMap<String, String>) -> Result<Self, String> {
        // Port 0: the binary binds a free port itself and logs it. A port found free here and handed over could be
        // taken by another test in between.
        let mut env = env.clone();
        env.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "0".into());
        env.entry("LOG_FORMAT".into()).or_insert_with(|| "json".into());
        let (child, output) = spawn_binary(&["serve"], &env);
        let mut app = Self { child, port: 0, output, client: reqwest::Client::new() };
        let deadline = Instant::now() + functions_host::INITIALIZATION_TIMEOUT;
        loop {
            if app.port == 0 {
                app.port = listening_port(&app.output.stdout()).unwrap_or(0);
            }
            if app.port != 0
                && let Ok(response) = app.client.get(app.url("/")).send().await
            {
                assert!(response.status().is_success(), "GET / answered {}:\n{}", response.status(), app.output());
                return Ok(app);
            }
            if let Ok(Some(status)) = app.child.try_wait() {
                return Err(format!("certsync exited during start-up ({status}):\n{}", app.output()));
            }
            if Instant::now() > deadline {
                app.kill();
                return Err(format!("certsync did not answer GET / within 30 s:\n{}", app.output()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything printed so far, for failure messages.
    pub fn output(&self) -> String {
        format!("--- stdout ---\n{}--- stderr ---\n{}", self.output.stdout(), self.output.stderr())
    }

    /// Waits (bounded) until stdout holds `needle`: the pipes are read by other threads.
    pub async fn wait_for_stdout(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stdout = self.output.stdout();
            if stdout.contains(needle) || Instant::now() > deadline {
                return stdout;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process at once, as a crash or a platform restart would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `POST /<function>` with an invocation id header, as the host does.
    pub async fn invoke(&self, function: &str, body: &Value) -> (u16, String, Value) {
        let response = self
            .client
            .post(self.url(&format!("/{function}")))
            .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("invoke the function");
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().await.expect("read the reply");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("the reply is not JSON ({e}): {text:?}"));
        (status, content_type, json)
    }

    pub async fn invoke_raw(&self, function: &str, body: &str) -> (u16, Value) {
        let response =
            self.client.post(self.url(&format!("/{function}"))).body(body.to_owned()).send().await.expect("invoke");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The timer envelope exactly as functions.md shows it.
pub fn timer_envelope(schedule_status: Value, past_due: bool) -> Value {
    json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": schedule_status, "IsPastDue": past_due}},
        "Metadata": {"sys": {"MethodName": "function-cert-sync", "UtcNow": "2026-11-22T10:00:00.0123456Z", "RandGuid": uuid::Uuid::new_v4().to_string()}}
    })
}

/// The HTTP envelope of `function-webhook` as the host builds it in envelope mode.
pub fn http_envelope(query: Value, content_type: &str, body: &str) -> Value {
    json!({
        "Data": {"req": {
            "Url": "https://certsync.azurewebsites.net/api/function-webhook",
            "Method": "POST",
            "Query": query,
            "Headers": {"Content-Type": [content_type], "User-Agent": ["Microsoft-Graph-ChangeTracking/1.0"]},
            "Params": {},
            "Body": body,
            "Identities": []
        }},
        "Metadata": {"sys": {"MethodName": "function-webhook", "UtcNow": "2026-11-22T10:00:00Z", "RandGuid": uuid::Uuid::new_v4().to_string()}}
    })
}
