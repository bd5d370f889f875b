//! How the Azure Functions host converts what passes between the bindings and a custom handler, read from the host's
//! source (`Azure/azure-functions-host`, `dev` at 89dc438d, October 2024) because the host cannot run here. The test
//! host shim (`tests/support/src/host.rs`), the hostile suite and the benchmarks all go through these functions, so no test
//! relies on a form of the protocol that the real host does not produce.
//!
//! The rules, each with the file and method it comes from:
//! - **Trigger data and metadata** (`src/WebJobs.Script/Workers/MessageExtensions/ScriptInvocationContextExtensions.cs`,
//!   `ToHttpScriptInvocationContext` and `GetHttpScriptInvocationContextValue`): every input and every binding-data
//!   value (but the HTTP request and keys ending in "trigger") goes through `GetHttpScriptInvocationContextValue`:
//!   `byte[]` → base64; `DateTime`/`DateTimeOffset` → re-parsed from their `ToString()` (whole seconds); anything
//!   `JObject.FromObject` accepts (a POCO such as the timer's `TimerInfo` or `sys`) → that object; everything else (a
//!   string, a number) → `JsonConvert.SerializeObject`, i.e. JSON *text*. So a queue message `{"a":1}` bound as a
//!   string arrives as `"Data":{"message":"\"{\\\"a\\\":1}\""}` (the host's test
//!   `GetHttpScriptInvocationContextValueTest_String` asserts `"stringTest"` → `"\"stringTest\""`), `DequeueCount`
//!   as `"1"` and `Id` as `"\"…\""`.
//! - **The HTTP request** (`src/WebJobs.Script/Extensions/HttpRequestExtensions.cs`, `GetRequestAsJObject`): `Url`,
//!   `Method`, `Query` (name → the values joined with `,`), `Headers` (name → [values]), `Identities`, and `Body`
//!   only when the request has a body (a string, base64 for octet-stream or multipart).
//! - **An output array is one message per element** (`src/WebJobs.Script/Binding/FunctionBinding.cs`,
//!   `ReadAsEnumerable` and `BindAsyncCollectorAsync`): a JSON array, or a string that looks like JSON (`Utility.IsJson`:
//!   `{…}` or `[…]` after trimming) parsed into one, is enumerated; each element becomes its `ToString()`: a JSON
//!   string its content, an object its indented JSON text.
//! - **A string output that is valid base64 is decoded** (`src/WebJobs.Script/Workers/Http/
//!   HttpScriptInvocationResultExtensions.cs`, `GetBindingValue`: `Convert.FromBase64String` in a try, unless the
//!   binding's `dataType` is `binary`), and the bytes are the message.
//! - **Readiness** (`src/WebJobs.Script/Workers/Http/DefaultHttpWorkerService.cs`, `IsWorkerReady`, with
//!   `HttpWorkerOptions.InitializationTimeout` = 30 s): any HTTP answer to `GET /` means ready. **Restarts**
//!   (`src/WebJobs.Script/Workers/Http/HttpFunctionInvocationDispatcher.cs`, `ErrorEventsThreshold` = 3): the
//!   process is restarted after an error up to 3 times, then the host shuts down.
//! - **Console lines** (`src/WebJobs.Script/Workers/ProcessManagement/WorkerProcess.cs`, `OnOutputDataReceived` and
//!   `ParseErrorMessageAndLog`; `HttpWorkerDescription.UseStdErrorStreamForErrorsOnly` = true): a stdout line is
//!   logged as Information; a stderr line as Warning when it contains "warn" (any case), otherwise as Error.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// `HttpWorkerOptions.InitializationTimeout`.
pub const INITIALIZATION_TIMEOUT: Duration = Duration::from_secs(30);
/// `HttpFunctionInvocationDispatcher.ErrorEventsThreshold`: restarts before the host gives up.
pub const RESTARTS: usize = 3;

/// A binding-data value, by the .NET type the host holds it as.
#[derive(Debug, Clone)]
pub enum HostValue<'a> {
    /// `string`: a queue message bound without `dataType`, `Id`, `PopReceipt`.
    Text(&'a str),
    /// `long`/`int`: `DequeueCount`.
    Integer(i64),
    /// `DateTimeOffset`: `InsertionTime`, `ExpirationTime`, `NextVisibleTime`.
    Timestamp(OffsetDateTime),
    /// A POCO or dictionary that `JObject.FromObject` accepts: `TimerInfo`, `sys`, headers.
    Object(Value),
    /// `byte[]`: a message bound with `dataType: binary`.
    Bytes(&'a [u8]),
}

/// `ScriptInvocationContextExtensions.GetHttpScriptInvocationContextValue`.
pub fn invocation_context_value(value: &HostValue) -> Value {
    match value {
        // Base64 either way: as a string (DataType.String), or as a byte[] that Newtonsoft writes in base64.
        HostValue::Bytes(bytes) => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        // `DateTimeOffset.Parse(value.ToString())`: ToString() has whole seconds; Newtonsoft writes ISO 8601.
        HostValue::Timestamp(at) => Value::String(newtonsoft_timestamp(*at)),
        HostValue::Object(object) => object.clone(),
        // `JObject.FromObject` throws for a primitive; `JsonConvert.SerializeObject(1)` is the text `1`.
        HostValue::Integer(n) => Value::String(n.to_string()),
        HostValue::Text(text) => Value::String(newtonsoft_string(text)),
    }
}

/// `JsonConvert.SerializeObject(string)` with the default `StringEscapeHandling.Default` (Newtonsoft.Json
/// `JavaScriptUtils.WriteEscapedJavaScriptString`): `"` and `\`, control characters, and U+0085, U+2028, U+2029 are
/// escaped; every other character, non-ASCII included, is written as is.
pub fn newtonsoft_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `DateTimeOffset` as Newtonsoft writes it (ISO 8601 with the offset), after the host's round trip through
/// `ToString()`, which keeps whole seconds.
pub fn newtonsoft_timestamp(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    at.format(&format).unwrap_or_default()
}

/// `SystemBindingData` (`sys`) as `JObject.FromObject` writes it: `UtcNow` is a `DateTime` in UTC, with Newtonsoft's
/// seven-digit fraction trimmed of trailing zeros.
pub fn system_binding_data(function: &str) -> Value {
    let now = OffsetDateTime::now_utc();
    let fraction = format!("{:07}", now.nanosecond() / 100);
    let fraction = fraction.trim_end_matches('0');
    let seconds = now
        .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
        .unwrap_or_default();
    let utc_now = if fraction.is_empty() { format!("{seconds}Z") } else { format!("{seconds}.{fraction}Z") };
    json!({"MethodName": function, "UtcNow": utc_now, "RandGuid": uuid::Uuid::new_v4().to_string()})
}

/// One dequeued message as the queue trigger describes it (its binding-data contract: `Id`, `DequeueCount`,
/// `InsertionTime`, `ExpirationTime`, `NextVisibleTime`, `PopReceipt`; `QueueTrigger` is left out by the host as a
/// key ending in "trigger").
#[derive(Debug, Clone)]
pub struct Dequeued<'a> {
    pub id: &'a str,
    pub dequeue_count: u64,
    pub inserted: OffsetDateTime,
}

/// The envelope the host posts to a queue-triggered function whose trigger binding is `binding`, for a message
/// whose text is `text` (bound as a .NET string: `queueTrigger` without `dataType`).
pub fn queue_trigger_envelope(function: &str, binding: &str, text: &str, message: &Dequeued) -> Value {
    let seen = OffsetDateTime::now_utc();
    let metadata = [
        ("DequeueCount", HostValue::Integer(i64::try_from(message.dequeue_count).unwrap_or(i64::MAX))),
        ("ExpirationTime", HostValue::Timestamp(message.inserted + time::Duration::days(7))),
        ("Id", HostValue::Text(message.id)),
        ("InsertionTime", HostValue::Timestamp(message.inserted)),
        ("NextVisibleTime", HostValue::Timestamp(seen + time::Duration::seconds(30))),
        ("PopReceipt", HostValue::Text(&uuid::Uuid::new_v4().simple().to_string())),
        ("sys", HostValue::Object(system_binding_data(function))),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), invocation_context_value(value)))
    .collect::<Map<String, Value>>();
    json!({"Data": {binding: invocation_context_value(&HostValue::Text(text))}, "Metadata": metadata})
}

/// A request reaching an HTTP-triggered function, as `GetRequestAsJObject` sees it.
#[derive(Debug, Clone, Default)]
pub struct HttpTriggerRequest<'a> {
    /// Scheme, host, path and query as the caller sent them.
    pub url: &'a str,
    pub method: &'a str,
    /// Header names as received, each with its values.
    pub headers: Vec<(String, Vec<String>)>,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
}

/// The envelope the host posts to an HTTP-triggered function in envelope mode (`enableForwardingHttpRequest: false`).
pub fn http_trigger_envelope(function: &str, binding: &str, request: &HttpTriggerRequest) -> Value {
    let raw_query = url::Url::parse(request.url).ok().and_then(|u| u.query().map(str::to_owned)).unwrap_or_default();
    // ASP.NET's query collection: form decoding (`+` is a space), repeated names joined with "," by StringValues.
    let mut query: Map<String, Value> = Map::new();
    for (name, value) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(name.as_ref()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                query.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    let headers: Map<String, Value> =
        request.headers.iter().map(|(name, values)| (name.clone(), json!(values))).collect();
    let mut req = json!({
        "Url": request.url,
        "Method": request.method,
        "Query": query,
        "Headers": headers,
        "Identities": [],
    });
    if !request.body.is_empty() {
        let media = request.content_type.unwrap_or_default().to_ascii_lowercase();
        req["Body"] = if media.starts_with("application/octet-stream") || media.starts_with("multipart/") {
            Value::String(base64::engine::general_purpose::STANDARD.encode(request.body))
        } else {
            Value::String(String::from_utf8_lossy(request.body).into_owned())
        };
    }
    // Binding data of an HTTP trigger: `headers` (a dictionary) and `query` (the raw query string, so JSON text).
    let query_string = if raw_query.is_empty() { String::new() } else { format!("?{raw_query}") };
    json!({
        "Data": {binding: req},
        "Metadata": {
            "headers": invocation_context_value(&HostValue::Object(json!(headers))),
            "query": invocation_context_value(&HostValue::Text(&query_string)),
            "sys": system_binding_data(function),
        },
    })
}

/// The messages a queue output binding writes for `Outputs.<name>` of an invocation's answer (`GetBindingValue`,
/// then `ReadAsEnumerable` and `BindAsyncCollectorAsync`). Null or absent writes nothing.
pub fn queue_output_messages(output: Option<&Value>) -> Vec<Vec<u8>> {
    let Some(output) = output.filter(|v| !v.is_null()) else { return Vec::new() };
    if let Value::String(text) = output
        && let Some(bytes) = dotnet_base64(text)
    {
        return vec![bytes];
    }
    let elements: Vec<Value> = match output {
        Value::Array(items) => items.clone(),
        Value::String(text) if looks_like_json(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items,
            Ok(token) => vec![token],
            // `JToken.Parse` throws: the invocation fails at the host (a 500 to the HTTP caller).
            Err(_) => return Vec::new(),
        },
        other => vec![other.clone()],
    };
    elements.iter().map(|element| jtoken_to_string(element).into_bytes()).collect()
}

/// `Utility.IsJson`.
fn looks_like_json(text: &str) -> bool {
    let text = text.trim();
    (text.starts_with('{') && text.ends_with('}')) || (text.starts_with('[') && text.ends_with(']'))
}

/// `JToken.ToString()`: a string's content, a container's indented JSON (two spaces, as Newtonsoft indents), .NET's
/// `True`/`False` for booleans.
fn jtoken_to_string(token: &Value) -> String {
    match token {
        Value::String(text) => text.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        container => serde_json::to_string_pretty(container).unwrap_or_default(),
    }
}

/// `Convert.FromBase64String`: white space ignored, the base64 alphabet with `=` padding, length a multiple of 4.
fn dotnet_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n')).collect();
    if !compact.len().is_multiple_of(4) {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(compact).ok()
}

/// The level at which the host logs a line the handler wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostLogLevel {
    Information,
    Warning,
    Error,
}

/// `WorkerProcess.OnOutputDataReceived` (stdout) and `ParseErrorMessageAndLog` (stderr).
pub fn console_log_level(from_stderr: bool, line: &str) -> HostLogLevel {
    if !from_stderr {
        HostLogLevel::Information
    } else if line.to_ascii_lowercase().contains("warn") {
        HostLogLevel::Warning
    } else {
        HostLogLevel::Error
    }
}
