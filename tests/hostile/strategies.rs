//! Generators of hostile text and JSON shared by the properties.

use proptest::prelude::*;
use serde_json::{Value, json};

/// Strings an attacker or a broken client would send: empty, control characters, NUL, byte-order marks, bidi
/// overrides, the last code point, combining marks, emoji sequences, CR/LF, JSON and URL metacharacters, long
/// repeats, and arbitrary Unicode. (The really large inputs — megabytes — are corpus files: generating them
/// hundreds of times would only slow the suite down.)
pub fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => short_hostile_string(),
        1 => (prop::sample::select(vec!["x", "é", "\0", "{", "😀"]), 1_000usize..20_000)
            .prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

/// [`hostile_string`] without the long repeats: for values that appear many times in one input.
pub fn short_hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "\\PC{0,40}",
        2 => prop::sample::select(vec![
            "", " ", "\0", "a\0b", "\n", "\r\n", "line\nbreak", "\t", "\u{FEFF}", "\u{FEFF}value", "\u{202E}gnp.exe",
            "\u{10FFFF}", "e\u{301}\u{301}\u{301}", "👩‍👩‍👧‍👦", "\u{1F600}", "\u{FFFD}", "\u{0085}", "\u{2028}",
            "\"", "\\", "\\u0000", "{", "}", "[", "]", "null", "true", "0", "-0", "1e999", "NaN",
            "%", "%00", "%ZZ", "%C3%28", "+", "&", "=", "#", "?", "<script>alert(1)</script>", "../../etc/passwd",
            "Groups/", "/groups//members", "groups/x/y/z",
        ]).prop_map(str::to_owned),
    ]
}

/// Any JSON value, a few levels deep, with hostile strings and numbers at the edges of their ranges.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1.7976931348623157e308)),
        short_hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(short_hostile_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON value that is not a string and not null: what a "wrong type" field holds.
pub fn wrong_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(json!(1e308)),
        Just(json!([])),
        Just(json!(["a"])),
        Just(json!({})),
        Just(json!({"id": "x"})),
    ]
}

/// One field of a generated object: left out, null, a string, or a value of the wrong type.
#[derive(Debug, Clone)]
pub enum Field {
    Absent,
    Null,
    Text(String),
    Wrong(Value),
}

impl Field {
    /// Whether `Option<String>` would deserialize it (absent and null are `None`).
    pub fn is_optional_string(&self) -> bool {
        !matches!(self, Field::Wrong(_))
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Field::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn insert_into(&self, object: &mut serde_json::Map<String, Value>, name: &str) {
        match self {
            Field::Absent => {}
            Field::Null => {
                object.insert(name.to_owned(), Value::Null);
            }
            Field::Text(text) => {
                object.insert(name.to_owned(), Value::String(text.clone()));
            }
            Field::Wrong(value) => {
                object.insert(name.to_owned(), value.clone());
            }
        }
    }
}

/// A field that is usually a string from `text`, sometimes absent, null or of the wrong type.
pub fn field(text: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Field> {
    prop_oneof![
        6 => text.prop_map(Field::Text),
        1 => Just(Field::Absent),
        1 => Just(Field::Null),
        1 => wrong_type().prop_map(Field::Wrong),
    ]
    .boxed()
}

/// Byte-level damage to a valid document: truncation, deletion, insertion of hostile tokens or random bytes,
/// duplication. Positions are fractions so they fit any length.
#[derive(Debug, Clone)]
pub enum Mutation {
    Truncate(f64),
    Delete(f64, usize),
    Insert(f64, Vec<u8>),
    Overwrite(f64, u8),
    Duplicate(f64, usize),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        prop::sample::select(vec![
            &b"\0"[..],
            b"\\u0000",
            b"\\ud800",
            b"\xff\xfe",
            b"\xef\xbb\xbf",
            b"\xc3\x28",
            b"[[[[[[[[[[[[[[[[",
            b"]]]]",
            b"{\"value\":",
            b"null",
            b"\"",
            b"\\",
            b",",
            b":",
            b"1e999999",
            b"-0",
            b"18446744073709551616",
            b"-9223372036854775809",
            b"NaN",
            b"\"clientState\":null,",
            b"\"value\":[],",
        ])
        .prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (0.0..1.0f64).prop_map(Mutation::Truncate),
        ((0.0..1.0f64), 1usize..16).prop_map(|(at, n)| Mutation::Delete(at, n)),
        ((0.0..1.0f64), token).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        ((0.0..1.0f64), any::<u8>()).prop_map(|(at, byte)| Mutation::Overwrite(at, byte)),
        ((0.0..1.0f64), 1usize..64).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
    ]
}

pub fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    let at = |fraction: f64, len: usize| ((fraction * len as f64) as usize).min(len);
    for mutation in mutations {
        let len = bytes.len();
        match mutation {
            Mutation::Truncate(f) => bytes.truncate(at(*f, len)),
            Mutation::Delete(f, n) => {
                let start = at(*f, len);
                bytes.drain(start..(start + n).min(len));
            }
            Mutation::Insert(f, token) => {
                let start = at(*f, len);
                bytes.splice(start..start, token.iter().copied());
            }
            Mutation::Overwrite(f, byte) => {
                if len > 0 {
                    bytes[at(*f, len - 1)] = *byte;
                }
            }
            Mutation::Duplicate(f, n) => {
                let start = at(*f, len);
                let copy = bytes[start..(start + n).min(len)].to_vec();
                bytes.splice(start..start, copy);
            }
        }
    }
    bytes
}
