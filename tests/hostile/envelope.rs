//! The invocation envelope itself: the bytes the host (or anything that reaches the handler's loopback port) posts
//! to `/<function>`. Not an envelope → a failed invocation (400) whose `Logs` say why, still in the JSON shape the
//! host expects (functions-custom-handlers: always answer `{"Outputs","Logs","ReturnValue"}`).

use proptest::prelude::*;
use serde_json::{Value, json};

use certsync::functions::InvocationRequest;

use crate::harness::{Corpus, HostileApp, Tally, declared_outcome, runner, runtime};
use crate::strategies::{any_json, apply, mutation};

const ROUTES: [(&str, &str); 2] = [("webhook", "function-webhook"), ("notifications", "function-notifications")];

#[test]
fn every_envelope_corpus_file_gets_its_declared_answer_on_both_routes() {
    let corpus = Corpus::load("envelope", true);
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    for (name, bytes) in &corpus.files {
        let expected = corpus.expected(name);
        for (key, function) in ROUTES {
            let what = format!("envelope/{name} → {function}");
            let (status, log) = match expected[key].as_array().map(Vec::as_slice) {
                Some([status, log]) => (status.as_u64().expect("a status"), log.as_str().expect("a log needle")),
                _ => panic!("envelope/{name}: expect.json needs {key}: [status, log]"),
            };
            if key == "webhook" {
                let outcome = if status == 400 { "reject" } else { "accept" };
                assert_eq!(declared_outcome(name), outcome, "envelope/{name}: the prefix disagrees with expect.json");
            }
            let reply = rt.block_on(app.invoke(function, bytes.clone()));
            assert_eq!(u64::from(reply.status), status, "{what}: {:.500}", reply.text);
            reply.assert_envelope(&what);
            assert!(reply.logs().contains(log), "{what}: the log must say {log:?}: {:.500}", reply.logs());
        }
    }
}

/// Envelope-level answer the protocol requires, from the bytes alone.
fn expected_webhook_status(bytes: &[u8]) -> (u16, &'static str) {
    let Ok(request) = serde_json::from_slice::<InvocationRequest>(bytes) else {
        return (400, "not the Functions envelope JSON");
    };
    match request.trigger("req") {
        None => (400, "no trigger payload under Data.req"),
        Some(Value::Object(_)) => (200, ""),
        Some(_) => (400, "is not an object"),
    }
}

fn check_both_routes(app: &HostileApp, rt: &tokio::runtime::Runtime, bytes: &[u8], tally: &Tally) {
    let what = format!("envelope {:.300?}", String::from_utf8_lossy(bytes));
    let (status, log) = expected_webhook_status(bytes);
    let reply = rt.block_on(app.invoke("function-webhook", bytes.to_vec()));
    assert_eq!(reply.status, status, "{what} → webhook: {:.500}", reply.text);
    reply.assert_envelope(&what);
    assert!(reply.logs().contains(log), "{what} → webhook: the log must say {log:?}: {:.500}", reply.logs());
    if status == 200 {
        tally.hit("webhook answered");
        assert!(["200", "202", "400"].contains(&reply.http_status()), "{what}: HTTP {:?}", reply.http_status());
    } else {
        tally.hit("webhook refused");
    }

    // The worker: only a broken envelope fails the invocation; a broken message inside one is dropped with 200.
    let reply = rt.block_on(app.invoke("function-notifications", bytes.to_vec()));
    let envelope_ok = serde_json::from_slice::<InvocationRequest>(bytes).is_ok();
    assert_eq!(reply.status, if envelope_ok { 200 } else { 400 }, "{what} → notifications: {:.500}", reply.text);
    reply.assert_envelope(&what);
    assert!(!reply.logs().is_empty(), "{what} → notifications: every answer says what happened");
}

#[test]
fn arbitrary_bytes_posted_as_an_envelope_get_a_json_answer_naming_the_problem() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let tally = Tally::default();
    let bytes = prop_oneof![
        any::<Vec<u8>>(),
        // Damaged real envelopes reach further than random bytes.
        (Just(crate::harness::webhook_post(r#"{"value":[]}"#)), prop::collection::vec(mutation(), 1..6))
            .prop_map(|(bytes, mutations)| apply(bytes, &mutations)),
    ];
    runner()
        .run(&bytes, |bytes| {
            check_both_routes(&app, &rt, &bytes, &tally);
            Ok(())
        })
        .unwrap();
    tally.assert_reached(&["webhook refused", "webhook answered"]);
}

#[test]
fn envelopes_of_any_json_shape_get_the_answer_the_protocol_requires() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let tally = Tally::default();
    let shapes = prop_oneof![
        any_json(),
        (any_json(), any_json()).prop_map(|(data, metadata)| json!({"Data": data, "Metadata": metadata})),
        (any_json(), any_json()).prop_map(|(req, metadata)| json!({"Data": {"req": req}, "Metadata": metadata})),
        any_json().prop_map(|message| json!({"Data": {"message": message}, "Metadata": {}})),
        (any_json(), any_json(), any_json(), any_json()).prop_map(|(url, query, headers, body)| json!({
            "Data": {"req": {"Url": url, "Method": "POST", "Query": query, "Headers": headers, "Body": body}},
            "Metadata": {}
        })),
    ];
    runner()
        .run(&shapes, |value| {
            check_both_routes(&app, &rt, value.to_string().as_bytes(), &tally);
            Ok(())
        })
        .unwrap();
    tally.assert_reached(&["webhook refused", "webhook answered"]);
}

#[test]
fn an_envelope_over_the_8_mib_buffer_limit_is_refused_with_413_and_the_reason() {
    // `functions::invocation::MAX_ENVELOPE_BYTES`: the server stops reading there, before the envelope is parsed.
    // The answer is still the host's envelope, so the reason reaches the host's log: no Graph notification can come
    // near it (the webhook's own limit is 1 MiB).
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let padding = "x".repeat(8 * 1024 * 1024);
    let envelope = json!({"Data": {"req": {"Body": padding}}, "Metadata": {}}).to_string();
    for (_, function) in ROUTES {
        let reply = rt.block_on(app.invoke(function, envelope.clone()));
        assert_eq!(reply.status, 413, "{function}: {:.300}", reply.text);
        assert!(reply.logs().contains("larger than 8 MiB"), "{function}: {:.300}", reply.text);
    }
}
