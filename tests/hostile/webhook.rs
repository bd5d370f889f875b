//! `function-webhook`'s notification bodies: what Graph (or anyone who learns the URL) POSTs.
//!
//! Graph's contract (change-notifications-delivery-webhooks): answer 2xx within 3 s once the notifications are
//! persisted; `clientState` must match the subscription's secret or the notification is dropped. The handler's
//! own contract (`src/functions/webhook.rs`): a body that is not `{"value":[…]}` gets a 400 naming the problem,
//! a body over 1 MiB is refused, and the clientState never reaches the queue.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::{
    CLIENT_STATE, Corpus, HostileApp, PREVIOUS_CLIENT_STATE, Tally, WEBHOOK_URL, declared_outcome, http_envelope,
    notification, runner, runner_for_a_share, runtime, webhook_post,
};
use crate::strategies::{Field, Mutation, any_json, apply, field, hostile_string, mutation, wrong_type};

const FUNCTION: &str = "function-webhook";
/// `webhook::MAX_NOTIFICATION_BODY_BYTES`.
const MAX_BODY: usize = 1024 * 1024;

/// Checks one answer against an `expect.json` entry: `{"http":"400","reason":…}` or `{"http":"202","queued":n}`.
fn check(what: &str, reply: &crate::harness::Reply, expected: &Value) {
    assert_eq!(
        reply.status, 200,
        "{what}: the invocation itself must succeed (it answered Graph): {:.500}",
        reply.text
    );
    reply.assert_envelope(what);
    let http = expected["http"].as_str().expect("expect.json: http");
    assert_eq!(reply.http_status(), http, "{what}: {:.500}", reply.text);
    if let Some(reason) = expected["reason"].as_str() {
        assert!(
            reply.http_body().contains(reason),
            "{what}: the 400 must say {reason:?}, it says {:.300}",
            reply.http_body()
        );
        assert!(reply.logs().contains(reason), "{what}: the host log must say {reason:?}: {:.300}", reply.logs());
    }
    if let Some(queued) = expected["queued"].as_u64() {
        assert_eq!(reply.queued() as u64, queued, "{what}: queued messages");
    }
    if let Some(log) = expected["log"].as_str() {
        assert!(reply.logs().contains(log), "{what}: the log must say {log:?}: {:.300}", reply.logs());
    }
    for message in reply.json["Outputs"]["notifications"].as_array().into_iter().flatten() {
        let message = message.as_str().expect("queue messages are JSON strings");
        assert!(
            !message.contains(CLIENT_STATE) && !message.contains(PREVIOUS_CLIENT_STATE),
            "{what}: the clientState reached the queue"
        );
    }
}

#[test]
fn every_webhook_corpus_file_gets_its_declared_answer() {
    let corpus = Corpus::load("webhook", true);
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    for (name, bytes) in &corpus.files {
        let expected = corpus.expected(name);
        let http = expected["http"].as_str().unwrap_or_default();
        let queued = expected["queued"].as_u64().unwrap_or(0);
        let outcome = match (http, queued) {
            ("400", _) => "reject",
            ("202", 0) => "drop",
            ("202", _) => "accept",
            other => panic!("webhook/{name}: expect.json declares {other:?}"),
        };
        assert_eq!(
            declared_outcome(name),
            outcome,
            "webhook/{name}: the file name's prefix disagrees with expect.json"
        );
        // The host hands the handler the body as text; bytes that are not UTF-8 arrive replaced (U+FFFD).
        let body = String::from_utf8_lossy(bytes);
        let content_type = match expected.get("content_type") {
            Some(Value::Null) => None,
            Some(value) => Some(value.as_str().expect("content_type is a string or null")),
            None => Some("application/json; charset=utf-8"),
        };
        let envelope = http_envelope(WEBHOOK_URL, json!({}), content_type, Value::from(body.as_ref()));
        let reply = rt.block_on(app.invoke(FUNCTION, envelope.to_string()));
        check(&format!("webhook/{name}"), &reply, expected);
    }
}

#[test]
fn valid_notifications_with_either_secret_are_queued_one_message_each() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let lifecycle = json!({"subscriptionId": "s-1", "clientState": CLIENT_STATE, "lifecycleEvent": "reauthorizationRequired",
        "resource": "groups/g", "tenantId": "t", "organizationId": "t", "subscriptionExpirationDateTime": "2026-11-24T10:00:00Z"});
    let seeds = [
        (json!({"value": [notification(CLIENT_STATE, "g1")]}), 1),
        (json!({"value": [notification(PREVIOUS_CLIENT_STATE, "g1"), notification(CLIENT_STATE, "g2")]}), 2),
        (json!({"value": [lifecycle.clone()]}), 1),
        (json!({"value": [lifecycle.clone(), notification(CLIENT_STATE, "g1"), lifecycle]}), 2),
        (json!({"value": [], "validationTokens": ["eyJ0eXAiOiJKV1QifQ"]}), 0),
    ];
    for (body, queued) in seeds {
        let reply = rt.block_on(app.invoke(FUNCTION, webhook_post(&body.to_string())));
        check(&format!("seed {body}"), &reply, &json!({"http": "202", "queued": queued}));
    }
}

/// A storm: as many notifications for one group as fit in the largest body Graph may send (about 3,000 of
/// Graph's size; an earlier build queued 12,945 messages for one 1 MiB POST) is one queue message, and the same storm
/// spread over two groups is two (issue 20).
#[test]
fn a_storm_of_notifications_for_one_group_is_one_queue_message() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let one = notification(CLIENT_STATE, "g1").to_string();
    let fit = MAX_BODY / (one.len() + 1) - 1;
    for groups in [1usize, 2] {
        let items: Vec<Value> = (0..fit).map(|i| notification(CLIENT_STATE, &format!("g{}", i % groups + 1))).collect();
        let body = json!({ "value": items }).to_string();
        assert!(body.len() <= MAX_BODY && body.len() > MAX_BODY * 9 / 10, "{} bytes", body.len());
        let reply = rt.block_on(app.invoke(FUNCTION, webhook_post(&body)));
        check(&format!("{fit} notifications for {groups} group(s)"), &reply, &json!({"http": "202", "queued": groups}));
        let merged = format!("Merged {} notification(s)", fit - groups);
        assert!(reply.logs().contains(&merged), "the log says how many were merged: {}", reply.logs());
    }
}

/// One generated notification item and what the handler must make of it.
#[derive(Debug, Clone)]
enum Item {
    Object {
        fields: Vec<(&'static str, Field)>,
        resource_data: Option<Value>,
        extra: Vec<(String, Value)>,
    },
    /// Not an object: a number, a string, null, an array.
    NotAnObject(Value),
}

const STRING_FIELDS: [&str; 6] =
    ["subscriptionId", "clientState", "changeType", "lifecycleEvent", "resource", "tenantId"];

impl Item {
    fn to_json(&self) -> Value {
        match self {
            Item::NotAnObject(value) => value.clone(),
            Item::Object { fields, resource_data, extra } => {
                let mut object = serde_json::Map::new();
                for (name, value) in extra {
                    object.insert(name.clone(), value.clone());
                }
                for (name, value) in fields {
                    value.insert_into(&mut object, name);
                }
                if let Some(data) = resource_data {
                    object.insert("resourceData".to_owned(), data.clone());
                }
                Value::Object(object)
            }
        }
    }

    /// `None`: the item is malformed (400). `Some(true)`: queued. `Some(false)`: dropped (wrong secret, no
    /// subscription id, neither a change nor a lifecycle event).
    fn verdict(&self) -> Option<bool> {
        let Item::Object { fields, .. } = self else { return None };
        if !fields.iter().all(|(_, f)| f.is_optional_string()) {
            return None;
        }
        let get = |name: &str| fields.iter().find(|(n, _)| *n == name).and_then(|(_, f)| f.text());
        let secret_matches = get("clientState").is_some_and(|s| s == CLIENT_STATE || s == PREVIOUS_CLIENT_STATE);
        let has_kind = get("changeType").is_some() || get("lifecycleEvent").is_some();
        Some(secret_matches && get("subscriptionId").is_some() && has_kind)
    }

    /// For an item that is queued: what makes it the same work as another item of the POST (its subscription, its
    /// group from `resourceData.id` or the `Groups/{id}` resource, and its lifecycle event, if any).
    fn queue_key(&self) -> Option<(String, Option<String>, Option<String>)> {
        let Item::Object { fields, resource_data, .. } = self else { return None };
        let get = |name: &str| fields.iter().find(|(n, _)| *n == name).and_then(|(_, f)| f.text());
        let from_resource = || {
            let mut parts = get("resource")?.trim_start_matches('/').split('/');
            match (parts.next(), parts.next()) {
                (Some(kind), Some(id)) if kind.eq_ignore_ascii_case("groups") && !id.is_empty() => Some(id.to_owned()),
                _ => None,
            }
        };
        let group = resource_data
            .as_ref()
            .and_then(|data| data.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(from_resource)
            .map(|group| group.to_ascii_lowercase());
        Some((get("subscriptionId")?.to_owned(), group, get("lifecycleEvent").map(str::to_owned)))
    }
}

fn client_state() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(CLIENT_STATE.to_owned()),
        2 => Just(PREVIOUS_CLIENT_STATE.to_owned()),
        1 => Just(String::new()),
        1 => Just(CLIENT_STATE.to_uppercase()),
        1 => Just(format!("{CLIENT_STATE}x")),
        1 => Just(CLIENT_STATE[..CLIENT_STATE.len() - 1].to_owned()),
        1 => Just(format!("{CLIENT_STATE}\0")),
        1 => (129usize..20_000).prop_map(|n| "s".repeat(n)),
        2 => hostile_string(),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    let object = (
        field(prop_oneof![3 => "[0-9a-f-]{1,36}", 1 => hostile_string()].boxed()),
        field(client_state().boxed()),
        field(
            prop_oneof![3 => Just("updated".to_owned()), 1 => Just("deleted".to_owned()), 1 => hostile_string()]
                .boxed(),
        ),
        prop_oneof![3 => Just(Field::Absent), 1 => field(hostile_string().boxed())],
        field(prop_oneof![2 => Just("Groups/g1".to_owned()), 1 => hostile_string()].boxed()),
        field(hostile_string().boxed()),
        prop::option::of(prop_oneof![Just(json!({"id": "g1"})), any_json()]),
        prop::collection::vec((hostile_string(), any_json()), 0..3),
    )
        .prop_map(|(subscription, state, change, lifecycle, resource, tenant, resource_data, extra)| {
            // Extra members must not shadow the ones under test.
            let extra = extra
                .into_iter()
                .filter(|(k, _)| !STRING_FIELDS.contains(&k.as_str()) && k != "resourceData")
                .collect();
            Item::Object {
                fields: vec![
                    ("subscriptionId", subscription),
                    ("clientState", state),
                    ("changeType", change),
                    ("lifecycleEvent", lifecycle),
                    ("resource", resource),
                    ("tenantId", tenant),
                ],
                resource_data,
                extra,
            }
        });
    prop_oneof![
        8 => object,
        1 => prop_oneof![wrong_type(), Just(Value::Null), hostile_string().prop_map(Value::String)]
            // A JSON array of exactly the struct's arity would be read positionally (serde's sequence form);
            // Graph never sends that, so the generator keeps to shapes with one clear answer. An object is an item.
            .prop_filter("not an object or a positional array", |v| {
                !v.is_object() && v.as_array().is_none_or(|a| a.is_empty())
            })
            .prop_map(Item::NotAnObject),
    ]
}

/// The whole body: `value` as Graph sends it, or missing / null / of the wrong type, plus stray members.
#[derive(Debug, Clone)]
enum Body {
    Items(Vec<Item>, Vec<(String, Value)>),
    BadValue(Option<Value>),
    NotAnObject(Value),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        8 => (prop::collection::vec(item(), 0..8), prop::collection::vec((hostile_string(), any_json()), 0..3))
            .prop_map(|(items, extra)| Body::Items(items, extra.into_iter().filter(|(k, _)| k != "value").collect())),
        1 => prop::option::of(prop_oneof![Just(Value::Null), wrong_type().prop_filter("not an array", |v| !v.is_array())])
            .prop_map(Body::BadValue),
        1 => prop_oneof![Just(json!(null)), Just(json!(42)), Just(json!("value")), Just(json!([]))].prop_map(Body::NotAnObject),
    ]
}

impl Body {
    fn to_json(&self) -> Value {
        match self {
            Body::Items(items, extra) => {
                let mut object: serde_json::Map<String, Value> = extra.iter().cloned().collect();
                object.insert("value".to_owned(), Value::Array(items.iter().map(Item::to_json).collect()));
                Value::Object(object)
            }
            Body::BadValue(value) => match value {
                Some(value) => json!({"value": value}),
                None => json!({"values": []}),
            },
            Body::NotAnObject(value) => value.clone(),
        }
    }
}

/// What the handler must answer, derived from the rules (not from the implementation).
#[derive(Debug, PartialEq)]
enum Expected {
    Reject(String),
    Accept { queued: usize, dropped: usize },
}

fn expected(body: &Body, text: &str) -> Expected {
    if text.len() > MAX_BODY {
        return Expected::Reject("bytes are refused".to_owned());
    }
    match body {
        Body::Items(items, _) => {
            let verdicts: Vec<Option<bool>> = items.iter().map(Item::verdict).collect();
            if let Some(first_bad) = verdicts.iter().position(Option::is_none) {
                return Expected::Reject(format!("value[{first_bad}]"));
            }
            let accepted: Vec<&Item> =
                items.iter().zip(&verdicts).filter(|(_, v)| **v == Some(true)).map(|(item, _)| item).collect();
            // One message per subscription, group and kind of event: duplicates within the POST are merged.
            let queued = accepted.iter().filter_map(|item| item.queue_key()).collect::<std::collections::HashSet<_>>();
            Expected::Accept { queued: queued.len(), dropped: items.len() - accepted.len() }
        }
        _ => Expected::Reject("not valid notification JSON".to_owned()),
    }
}

#[test]
fn structured_notification_bodies_get_exactly_the_answer_graph_rules_require() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let seen = Tally::default();
    runner()
        .run(&body(), |body| {
            let text = body.to_json().to_string();
            let reply = rt.block_on(app.invoke(FUNCTION, webhook_post(&text)));
            let what = format!("body {text:.300}");
            match expected(&body, &text) {
                Expected::Reject(reason) => {
                    seen.hit("rejected");
                    check(&what, &reply, &json!({"http": "400", "reason": reason}));
                }
                Expected::Accept { queued, dropped } => {
                    seen.hit(if queued > 0 { "queued" } else { "dropped only" });
                    check(&what, &reply, &json!({"http": "202", "queued": queued}));
                    let says_dropped = reply.logs().contains(&format!("Dropped {dropped} notification(s)"));
                    prop_assert_eq!(says_dropped, dropped > 0, "{}: {}", what, reply.logs());
                }
            }
            Ok(())
        })
        .unwrap();
    seen.assert_reached(&["rejected", "queued", "dropped only"]);
}

fn valid_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(CLIENT_STATE), Just(PREVIOUS_CLIENT_STATE), Just("guess")], 1..4).prop_map(
        |states| {
            let items: Vec<Value> = states.iter().enumerate().map(|(i, s)| notification(s, &format!("g{i}"))).collect();
            json!({"value": items}).to_string().into_bytes()
        },
    )
}

#[test]
fn byte_damaged_bodies_never_panic_and_unparsable_ones_get_a_400_naming_the_json() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let answered = Tally::default();
    let damaged = (valid_body(), prop::collection::vec(mutation(), 1..6));
    runner()
        .run(&damaged, |(bytes, mutations): (Vec<u8>, Vec<Mutation>)| {
            let text = String::from_utf8_lossy(&apply(bytes, &mutations)).into_owned();
            let reply = rt.block_on(app.invoke(FUNCTION, webhook_post(&text)));
            let what = format!("body {text:?}");
            prop_assert_eq!(reply.status, 200, "{}: {}", what, reply.text);
            reply.assert_envelope(&what);
            let parsed = serde_json::from_str::<Value>(&text);
            if text.trim().is_empty() {
                check(&what, &reply, &json!({"http": "400", "reason": "has no body"}));
            } else if parsed.is_err() {
                check(&what, &reply, &json!({"http": "400", "reason": "not valid notification JSON"}));
            }
            match reply.http_status() {
                "400" => {
                    answered.hit("400");
                    prop_assert!(
                        reply.http_body().contains("not valid notification JSON")
                            || reply.http_body().contains("no body"),
                        "{}: {}",
                        what,
                        reply.http_body()
                    );
                }
                "202" => {
                    answered.hit("202");
                    let items = parsed.ok().and_then(|v| v.get("value").and_then(Value::as_array).map(Vec::len));
                    prop_assert!(
                        reply.queued() <= items.unwrap_or(0),
                        "{}: queued {} of {:?}",
                        what,
                        reply.queued(),
                        items
                    );
                }
                other => prop_assert!(false, "{}: answered HTTP {:?}", what, other),
            }
            Ok(())
        })
        .unwrap();
    answered.assert_reached(&["400", "202"]);
}

#[test]
fn any_content_type_but_application_json_is_refused_naming_it() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let content_type = prop_oneof![
        Just("application/json".to_owned()),
        Just("APPLICATION/JSON; charset=utf-8".to_owned()),
        Just(" application/json ;charset=\"utf-8\"".to_owned()),
        Just("application/jsonx".to_owned()),
        Just("application/json-patch+json".to_owned()),
        Just("text/json".to_owned()),
        Just("text/plain".to_owned()),
        Just("application/x-www-form-urlencoded".to_owned()),
        hostile_string(),
    ];
    let body = json!({"value": [notification(CLIENT_STATE, "g1")]}).to_string();
    runner()
        .run(&content_type, |content_type| {
            let envelope = http_envelope(WEBHOOK_URL, json!({}), Some(&content_type), Value::from(body.as_str()));
            let reply = rt.block_on(app.invoke(FUNCTION, envelope.to_string()));
            let media_type = content_type.split(';').next().unwrap_or_default().trim();
            let what = format!("Content-Type {content_type:.200?}");
            if media_type.eq_ignore_ascii_case("application/json") {
                check(&what, &reply, &json!({"http": "202", "queued": 1}));
            } else {
                check(&what, &reply, &json!({"http": "400", "reason": "is not application/json"}));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_body_over_one_mib_is_refused_before_it_is_parsed() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    // Valid JSON all the way, so only the size can be the reason.
    let padding = "x".repeat(MAX_BODY);
    let body = json!({"value": [notification(CLIENT_STATE, "g1")], "padding": padding}).to_string();
    let reply = rt.block_on(app.invoke(FUNCTION, webhook_post(&body)));
    check("1 MiB + body", &reply, &json!({"http": "400", "reason": "bytes are refused", "queued": 0}));
    // Over the limit only by its whitespace still counts: the limit is on what was sent.
    let body = format!("{}{}", json!({"value": []}), " ".repeat(MAX_BODY));
    let reply = rt.block_on(app.invoke(FUNCTION, webhook_post(&body)));
    check("1 MiB of trailing blanks", &reply, &json!({"http": "400", "reason": "bytes are refused"}));
}

#[test]
fn a_body_object_the_host_already_parsed_is_read_like_its_text() {
    // Some host versions hand a JSON body over parsed (envelope.rs); hostile shapes must fare the same either way.
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    // A quarter of the cases: the structured property above already covers these shapes as text.
    runner_for_a_share(4)
        .run(&body(), |body| {
            let value = body.to_json();
            let as_text = rt.block_on(app.invoke(FUNCTION, webhook_post(&value.to_string())));
            let envelope = http_envelope(WEBHOOK_URL, json!({}), Some("application/json"), value.clone());
            let as_object = rt.block_on(app.invoke(FUNCTION, envelope.to_string()));
            let what = format!("body {value:.300}");
            if value.is_null() {
                // A null Body is "no body" to the handler, which is a different (also 400) answer.
                check(&what, &as_object, &json!({"http": "400", "reason": "has no body"}));
            } else {
                prop_assert_eq!(as_text.http_status(), as_object.http_status(), "{}", what);
                prop_assert_eq!(as_text.queued(), as_object.queued(), "{}", what);
            }
            Ok(())
        })
        .unwrap();
}
