//! Tolerant JSON reading for Graph's answers: a property of an unexpected JSON type reads as absent instead of
//! failing the page, and object keys are borrowed from the page. What is absent is then the caller's to judge
//! (the users reader fails closed on what a write depends on).

use serde::de;
use serde::{Deserialize, Deserializer};

/// An object key, borrowed from the page when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a property name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The `visit_*` methods of the JSON scalars (string, boolean, number, null), each answering `$value`: for visitors
/// that read one JSON type and treat every other as absent.
macro_rules! other_json_values {
    ($ty:ty, $this:ident => $value:expr) => {
        fn visit_str<E: serde::de::Error>($this, _: &str) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_bool<E: serde::de::Error>($this, _: bool) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_i64<E: serde::de::Error>($this, _: i64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_u64<E: serde::de::Error>($this, _: u64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_f64<E: serde::de::Error>($this, _: f64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_unit<E: serde::de::Error>($this) -> Result<$ty, E> {
            Ok($value)
        }
    };
}
pub(crate) use other_json_values;

/// `Some` when the value has the expected JSON type, `None` for any other (consumed and dropped).
pub(crate) struct Lenient<T>(pub(crate) Option<T>);

/// The JSON types [`Lenient`] accepts.
pub(crate) trait LenientTarget: Sized {
    /// Whether a JSON array is read (with `Deserialize`) rather than dropped.
    const FROM_ARRAY: bool = false;
    fn from_json_str(_: &str) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

impl LenientTarget for String {
    fn from_json_str(v: &str) -> Option<Self> {
        Some(v.to_owned())
    }
}

impl LenientTarget for bool {
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

impl<'de, T: LenientTarget> Deserialize<'de> for Lenient<T>
where
    T: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar<T>(std::marker::PhantomData<T>);
        impl<'de, T: LenientTarget + Deserialize<'de>> de::Visitor<'de> for Scalar<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient<T>, E> {
                Ok(Lenient(T::from_json_str(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lenient<T>, E> {
                Ok(Lenient(T::from_bool(v)))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Lenient<T>, A::Error> {
                de::IgnoredAny.visit_map(map)?;
                Ok(Lenient(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Lenient<T>, A::Error> {
                if T::FROM_ARRAY {
                    T::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(|v| Lenient(Some(v)))
                } else {
                    de::IgnoredAny.visit_seq(seq)?;
                    Ok(Lenient(None))
                }
            }
        }
        deserializer.deserialize_any(Scalar(std::marker::PhantomData))
    }
}

impl<T> Lenient<T> {
    /// A visitor that hands objects to `objects` and turns every other JSON value into `other(())`.
    pub(crate) fn visitor<'de, V: de::Visitor<'de, Value = T>>(objects: V, other: fn(()) -> T) -> ObjectOr<V, T> {
        ObjectOr { objects, other }
    }
}

/// See [`Lenient::visitor`].
pub(crate) struct ObjectOr<V, T> {
    objects: V,
    other: fn(()) -> T,
}

impl<'de, T, V: de::Visitor<'de, Value = T>> de::Visitor<'de> for ObjectOr<V, T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        self.objects.visit_map(map)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        de::IgnoredAny.visit_seq(seq)?;
        Ok((self.other)(()))
    }
    other_json_values!(T, self => (self.other)(()));
}
