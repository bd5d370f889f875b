//! The JSON envelopes the Functions host exchanges with a custom handler (functions-custom-handlers).
//!
//! Parsing is lenient where the host varies (timestamps, null `ScheduleStatus`, string or object bodies) and strict
//! where a wrong guess would be dangerous (a missing trigger payload is an error, not a default).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// `POST /<function>` body: `{"Data":{"<binding>":…},"Metadata":{…}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InvocationRequest {
    #[serde(rename = "Data", default)]
    pub data: BTreeMap<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: BTreeMap<String, Value>,
}

impl InvocationRequest {
    /// The trigger payload under `binding`, or, when the function has a single input, that one (the binding name is
    /// the administrator's choice in function.json; we should not break if they rename it).
    pub fn trigger(&self, binding: &str) -> Option<&Value> {
        self.data.get(binding).or_else(|| if self.data.len() == 1 { self.data.values().next() } else { None })
    }

    /// A `Metadata` scalar (name matched in any case) as text. The real host JSON-encodes each binding-data value
    /// that is not an object (`GetHttpScriptInvocationContextValue`, `ScriptInvocationContextExtensions.cs`), so a
    /// queue message's `DequeueCount` arrives as `"1"` and its `Id` as `"\"…\""`; other hosts send plain values.
    /// Both read the same: `Some("1")`, `Some("…")`. `None` for a missing value, null, an object or an array.
    pub fn metadata_text(&self, name: &str) -> Option<String> {
        let value = self.metadata.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)?;
        match value {
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::String(inner)) => Some(inner),
                _ => Some(text.clone()),
            },
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// The reply to every invocation. `ReturnValue` is always serialized (null included) and `Outputs` always an object:
/// the host logs a warning for a missing one and an empty body can hang the invocation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: BTreeMap<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl InvocationResponse {
    pub fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }
}

/// One element of a queue output binding's array in `Outputs`: the message's JSON text, which the host writes to the
/// queue as it is (one message per element).
pub fn queue_message(message: &impl Serialize) -> Value {
    Value::String(serde_json::to_string(message).expect("serializable"))
}

/// The timer trigger payload: `{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last","Next","LastUpdated"}|null,"IsPastDue":bool}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimerInfo {
    pub is_past_due: bool,
    pub last: Option<OffsetDateTime>,
    pub next: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "the invocation body is larger than {limit_mib} MiB, the most this handler reads; no Graph notification or \
         timer payload comes near that, so the request did not come from the Functions host as configured"
    )]
    TooLarge { limit_mib: usize },
    #[error("the invocation body could not be read: {0}")]
    Unreadable(String),
    #[error("the invocation body is not the Functions envelope JSON: {0}")]
    NotJson(String),
    #[error("the invocation has no trigger payload under Data.{0}")]
    MissingTrigger(&'static str),
    #[error("the trigger payload under Data.{binding} is not an object: {found}")]
    NotAnObject { binding: &'static str, found: String },
}

impl TimerInfo {
    pub fn from_invocation(request: &InvocationRequest, binding: &'static str) -> Result<Self, EnvelopeError> {
        let payload = request.trigger(binding).ok_or(EnvelopeError::MissingTrigger(binding))?;
        let payload = match payload {
            // Some hosts hand non-HTTP trigger data over as a JSON string.
            Value::String(text) => serde_json::from_str(text).map_err(|e| EnvelopeError::NotJson(e.to_string()))?,
            other => other.clone(),
        };
        let object = payload
            .as_object()
            .ok_or_else(|| EnvelopeError::NotAnObject { binding, found: kind_of(&payload).to_owned() })?;
        let field = |name: &str| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let is_past_due = match field("IsPastDue") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let status = field("ScheduleStatus").and_then(Value::as_object);
        let time_of = |name: &str| {
            status
                .and_then(|s| s.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .and_then(|(_, v)| v.as_str())
                .and_then(parse_dotnet_datetime)
        };
        Ok(Self { is_past_due, last: time_of("Last"), next: time_of("Next") })
    }
}

/// What a JSON value is, for error messages ("Data.timer is a string").
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses the DateTime strings .NET writes: `2026-11-22T10:00:00`, `…00.0000000Z`, `…00.123+01:00`, and the
/// "never" value `0001-01-01T00:00:00`. A value without an offset is taken as UTC (the timer works in UTC).
/// Returns `None` for year 1 and for anything unparsable: these times are informational only.
pub fn parse_dotnet_datetime(text: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        // No offset: append Z. Fractions longer than 9 digits are not .NET's; Rfc3339 accepts up to 9.
        OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339).ok()
    })?;
    (parsed.year() > 1).then_some(parsed)
}

/// The HTTP trigger payload in envelope mode: `Data.req`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRequestData {
    pub url: String,
    pub method: String,
    /// Query parameters as the host decoded them.
    pub query: BTreeMap<String, String>,
    /// Header names lower-cased; the host sends name → [values].
    pub headers: BTreeMap<String, Vec<String>>,
    /// The raw body text; `None` when the request had none.
    pub body: Option<String>,
}

impl HttpRequestData {
    pub fn from_invocation(request: &InvocationRequest, binding: &'static str) -> Result<Self, EnvelopeError> {
        let payload = request.trigger(binding).ok_or(EnvelopeError::MissingTrigger(binding))?;
        let object = payload
            .as_object()
            .ok_or_else(|| EnvelopeError::NotAnObject { binding, found: kind_of(payload).to_owned() })?;
        let field = |name: &str| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let string = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let mut query: BTreeMap<String, String> = field("Query")
            .and_then(Value::as_object)
            .map(|q| q.iter().map(|(k, v)| (k.clone(), string(v))).collect())
            .unwrap_or_default();
        let url = field("Url").map(string).unwrap_or_default();
        // Fall back to the URL's own query string for anything the host did not put in `Query`.
        if let Ok(parsed) = url::Url::parse(&url) {
            for (k, v) in parsed.query_pairs() {
                query.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        let headers = field("Headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| {
                        let values = match v {
                            Value::Array(items) => items.iter().map(string).collect(),
                            other => vec![string(other)],
                        };
                        (k.to_ascii_lowercase(), values)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = match field("Body") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // Some host versions hand a JSON body over already parsed.
            Some(other) => Some(other.to_string()),
        };
        Ok(Self {
            url,
            method: field("Method").map(string).unwrap_or_default().to_ascii_uppercase(),
            query,
            headers,
            body,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).and_then(|v| v.first()).map(String::as_str)
    }
}

/// An HTTP response in envelope mode: `Outputs.res`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponseData {
    #[serde(rename = "statusCode")]
    pub status_code: String,
    pub body: String,
    pub headers: BTreeMap<String, String>,
}

impl HttpResponseData {
    pub fn new(status: u16, content_type: &str, body: impl Into<String>) -> Self {
        Self {
            status_code: status.to_string(),
            body: body.into(),
            headers: BTreeMap::from([("Content-Type".to_owned(), content_type.to_owned())]),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn json(status: u16, body: &Value) -> Self {
        Self::new(status, "application/json", body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invocation(data: Value) -> InvocationRequest {
        serde_json::from_value(json!({ "Data": data, "Metadata": {} })).unwrap()
    }

    #[test]
    fn timer_payload_with_null_schedule_status_and_past_due_parses() {
        let request = invocation(
            json!({"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": true}}),
        );
        let timer = TimerInfo::from_invocation(&request, "timer").unwrap();
        assert!(timer.is_past_due);
        assert_eq!(timer.last, None);
    }

    #[test]
    fn dotnet_timestamps_parse_in_every_form_the_host_writes() {
        for text in [
            "2026-11-22T10:00:00",
            "2026-11-22T10:00:00.0000000Z",
            "2026-11-22T11:00:00.123+01:00",
            "2026-11-22T10:00:00Z",
        ] {
            let parsed = parse_dotnet_datetime(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(parsed.unix_timestamp(), 1_795_341_600, "{text}");
        }
        assert_eq!(parse_dotnet_datetime("0001-01-01T00:00:00"), None, "year 1 means never");
        assert_eq!(parse_dotnet_datetime("yesterday"), None);
    }

    #[test]
    fn a_missing_trigger_payload_is_an_error_naming_the_binding() {
        let err = TimerInfo::from_invocation(&invocation(json!({})), "timer").unwrap_err();
        assert_eq!(err.to_string(), "the invocation has no trigger payload under Data.timer");
    }

    #[test]
    fn http_payload_takes_query_headers_and_body() {
        let request = invocation(json!({"req": {
            "Url": "https://app.azurewebsites.net/api/function-webhook?code=k&validationToken=a%2Bb%20c",
            "Method": "post",
            "Query": {"code": "k"},
            "Headers": {"Content-Type": ["application/json; charset=utf-8"]},
            "Params": {}, "Identities": [],
            "Body": {"value": []}
        }}));
        let http = HttpRequestData::from_invocation(&request, "req").unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(http.query.get("validationToken").map(String::as_str), Some("a+b c"));
        assert_eq!(http.header("content-type"), Some("application/json; charset=utf-8"));
        assert_eq!(http.body.as_deref(), Some(r#"{"value":[]}"#));
    }

    #[test]
    fn the_response_always_has_all_three_fields() {
        let text = serde_json::to_string(&InvocationResponse::default()).unwrap();
        assert_eq!(text, r#"{"Outputs":{},"Logs":[],"ReturnValue":null}"#);
    }
}
