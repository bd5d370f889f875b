//! `function-notifications`: the queue worker behind the webhook. Its input is whatever sits on the
//! `graph-notifications` queue — normally what the webhook wrote, but a queue is writable by anyone with the
//! storage key, and a message can be damaged. The rules (`src/functions/notifications.rs`, functions.md):
//! a message that can never succeed is answered 200 with the reason in the log (a non-2xx would only send it round
//! the retry loop into the poison queue); a subscription that is not ours is dropped with a security line.
//!
//! Every message goes in as the real host sends it (JSON-encoded twice, `tests/support/src/functions_host.rs`) and, where
//! a test says so, also encoded once (the Learn sample) and as an object: each form must meet the same fate.

use std::sync::atomic::Ordering;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::{
    Corpus, HostileApp, KNOWN_SUBSCRIPTION, Reply, Tally, declared_outcome, queue_envelope, queue_message, runner,
    runtime,
};
use crate::strategies::{Field, any_json, field, hostile_string};

const FUNCTION: &str = "function-notifications";

/// What must happen to a message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Not a queued notification: dropped, counted, logged with the reason.
    Malformed,
    /// Well formed, for a subscription we do not hold: dropped with a security line.
    Unknown,
    /// Ours, on a group no longer configured: ignored before any Graph call.
    Unconfigured,
}

impl Fate {
    fn parse(text: &str) -> Self {
        match text {
            "malformed" => Fate::Malformed,
            "unknown" => Fate::Unknown,
            "unconfigured" => Fate::Unconfigured,
            other => panic!("unknown fate {other:?}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fate::Malformed => "malformed",
            Fate::Unknown => "unknown",
            Fate::Unconfigured => "unconfigured",
        }
    }

    fn log(self) -> &'static str {
        match self {
            Fate::Malformed => "Dropped a malformed message",
            Fate::Unknown => "which is not one of ours (security)",
            Fate::Unconfigured => "is no longer configured; the notification was ignored",
        }
    }
}

fn check(what: &str, app: &HostileApp, reply: &Reply, fate: Fate, malformed_before: u64) {
    assert_eq!(reply.status, 200, "{what}: a message that can never succeed must not be retried: {:.500}", reply.text);
    reply.assert_envelope(what);
    assert!(reply.logs().contains(fate.log()), "{what}: expected {fate:?}, the log says {:.500}", reply.logs());
    let malformed = app.state.counters.malformed.load(Ordering::Relaxed) - malformed_before;
    assert_eq!(malformed, u64::from(fate == Fate::Malformed), "{what}: the malformed counter");
}

#[test]
fn every_queue_corpus_file_gets_its_declared_fate() {
    let corpus = Corpus::load("queue", true);
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    for (name, bytes) in &corpus.files {
        let fate_name = corpus.expected(name)["fate"].as_str().expect("expect.json: fate");
        assert_eq!(
            declared_outcome(name),
            fate_name,
            "queue/{name}: the file name's prefix disagrees with expect.json"
        );
        let fate = Fate::parse(fate_name);
        // The real host hands the message text over JSON-encoded twice; the Learn sample shows it encoded once; a
        // host could hand a JSON object over as that object: every form must meet the same fate.
        let text = String::from_utf8_lossy(bytes);
        let mut forms = vec![
            ("real host", queue_message(&text)),
            ("encoded once", queue_envelope(Value::from(text.as_ref()), json!({"DequeueCount": 1}))),
        ];
        if let Ok(object @ Value::Object(_)) = serde_json::from_slice::<Value>(bytes) {
            forms.push(("object", queue_envelope(object, json!({"DequeueCount": 1}))));
        }
        for (form, envelope) in forms {
            let before = app.state.counters.malformed.load(Ordering::Relaxed);
            let reply = rt.block_on(app.invoke(FUNCTION, envelope));
            check(&format!("queue/{name} ({form})"), &app, &reply, fate, before);
        }
    }
}

/// A generated message: the queued-notification fields, each possibly missing, null or of the wrong type.
#[derive(Debug, Clone)]
struct Message {
    fields: Vec<(&'static str, Field)>,
    extra: Vec<(String, Value)>,
}

const FIELDS: [&str; 6] = ["subscriptionId", "tenantId", "changeType", "lifecycleEvent", "groupId", "resource"];

impl Message {
    fn to_json(&self) -> Value {
        let mut object: serde_json::Map<String, Value> =
            self.extra.iter().filter(|(k, _)| !FIELDS.contains(&k.as_str())).cloned().collect();
        for (name, value) in &self.fields {
            value.insert_into(&mut object, name);
        }
        Value::Object(object)
    }

    /// From the message's documented shape (`webhook::QueuedNotification`): `subscriptionId` a required string,
    /// every other field an optional string.
    fn fate(&self) -> Fate {
        let subscription = match &self.fields[0].1 {
            Field::Text(id) => id,
            _ => return Fate::Malformed,
        };
        if !self.fields.iter().all(|(_, f)| f.is_optional_string()) {
            return Fate::Malformed;
        }
        // Subscription ids compare case-insensitively (Graph's GUIDs).
        if subscription.eq_ignore_ascii_case(KNOWN_SUBSCRIPTION) { Fate::Unconfigured } else { Fate::Unknown }
    }
}

/// Lifecycle event names other than the two that make the worker call Graph (reauthorizationRequired,
/// subscriptionRemoved: change-notifications-lifecycle-events), which this in-process suite has no Graph for.
fn lifecycle_event() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("missed".to_owned()),
        Just("reauthorizationrequired ".to_owned()),
        Just("subscriptionRemoved\0".to_owned()),
        Just("unknownFutureValue".to_owned()),
        hostile_string(),
    ]
    .prop_filter("no Graph call", |e| {
        !e.eq_ignore_ascii_case("reauthorizationRequired") && !e.eq_ignore_ascii_case("subscriptionRemoved")
    })
}

fn message() -> impl Strategy<Value = Message> {
    let subscription = prop_oneof![
        3 => Just(KNOWN_SUBSCRIPTION.to_owned()),
        1 => Just(KNOWN_SUBSCRIPTION.to_uppercase()),
        1 => Just(format!(" {KNOWN_SUBSCRIPTION}")),
        2 => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        2 => hostile_string(),
    ];
    (
        field(subscription.boxed()),
        field(hostile_string().boxed()),
        field(prop_oneof![Just("updated".to_owned()), hostile_string()].boxed()),
        prop_oneof![2 => Just(Field::Absent), 1 => field(lifecycle_event().boxed())],
        field(prop_oneof![Just("cccccccc-0000-0000-0000-000000000009".to_owned()), hostile_string()].boxed()),
        field(hostile_string().boxed()),
        prop::collection::vec((hostile_string(), any_json()), 0..3),
    )
        .prop_map(|(s, t, c, l, g, r, extra)| Message {
            fields: vec![
                ("subscriptionId", s),
                ("tenantId", t),
                ("changeType", c),
                ("lifecycleEvent", l),
                ("groupId", g),
                ("resource", r),
            ],
            extra,
        })
}

/// `Metadata` as the host might send it, or mangled: `DequeueCount` only decides the wording of a retry.
fn metadata() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"DequeueCount": 1})),
        Just(json!({"DequeueCount": "5"})),
        Just(json!({"DequeueCount": u64::MAX})),
        Just(json!({"DequeueCount": -1})),
        Just(json!({"DequeueCount": 1.5})),
        Just(json!({"dequeuecount": null})),
        Just(json!({})),
        any_json().prop_map(|v| json!({"DequeueCount": v, "Id": "m1"})),
    ]
}

#[test]
fn structured_queue_messages_meet_the_fate_their_shape_decides() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let seen = Tally::default();
    runner()
        .run(&(message(), 0..3u8, metadata()), |(message, form, metadata)| {
            let value = message.to_json();
            // The real host's form carries the host's metadata; the other forms carry generated, mangled metadata.
            let (form, envelope) = match form {
                0 => ("real host", queue_message(&value.to_string())),
                1 => ("encoded once", queue_envelope(Value::from(value.to_string()), metadata)),
                _ => ("object", queue_envelope(value.clone(), metadata)),
            };
            let fate = message.fate();
            seen.hit(fate.name());
            let before = app.state.counters.malformed.load(Ordering::Relaxed);
            let reply = rt.block_on(app.invoke(FUNCTION, envelope));
            check(&format!("message {value:.300} ({form})"), &app, &reply, fate, before);
            Ok(())
        })
        .unwrap();
    seen.assert_reached(&["malformed", "unknown", "unconfigured"]);
}

#[test]
fn arbitrary_message_text_is_dropped_as_malformed_without_a_retry() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let text = prop_oneof![
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        hostile_string(),
        any_json().prop_map(|v| v.to_string()),
    ];
    runner()
        .run(&text, |text| {
            // Only a JSON object with a string subscriptionId is a message, as the text or inside one JSON string
            // in it (the worker unwraps three strings, the host adds one); anything else is malformed.
            if could_be_a_message(&text) {
                return Ok(());
            }
            let fate = Fate::Malformed;
            let before = app.state.counters.malformed.load(Ordering::Relaxed);
            let reply = rt.block_on(app.invoke(FUNCTION, queue_message(&text)));
            check(&format!("message text {text:.300?}"), &app, &reply, fate, before);
            Ok(())
        })
        .unwrap();
}

/// A JSON object with a string `subscriptionId`, as the text or as the content of a JSON string that is the text.
fn could_be_a_message(text: &str) -> bool {
    let is_message = |v: &Value| v.get("subscriptionId").is_some_and(Value::is_string);
    match serde_json::from_str::<Value>(text) {
        Ok(Value::String(inner)) => serde_json::from_str::<Value>(&inner).is_ok_and(|v| is_message(&v)),
        Ok(value) => is_message(&value),
        Err(_) => false,
    }
}

/// No host sends these (the real host sends a string, `tests/support/src/functions_host.rs`); a damaged envelope could.
#[test]
fn a_message_that_is_not_a_string_or_an_object_is_dropped_naming_its_kind() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    for (message, kind) in
        [(json!(42), "a number"), (json!(null), "null"), (json!([1]), "an array"), (json!(true), "a boolean")]
    {
        let before = app.state.counters.malformed.load(Ordering::Relaxed);
        let reply = rt.block_on(app.invoke(FUNCTION, queue_envelope(message.clone(), json!({}))));
        check(&format!("message {message}"), &app, &reply, Fate::Malformed, before);
        assert!(reply.logs().contains(&format!("Data.message is {kind}")), "{message}: {}", reply.logs());
    }
}
