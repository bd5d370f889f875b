//! One page of a Graph collection (`value`, `@odata.nextLink`, `@odata.count`), read with the items' own
//! `Deserialize` so a caller can turn each page into compact records and drop it before the next one arrives
//! [paging].

use serde::de;
use serde::{Deserialize, Deserializer};

use super::json::Key;

/// A page as received. `value` is `None` when the page has no `value` array (an error for the caller to name).
pub(super) struct Page<T> {
    pub(super) value: Option<Vec<T>>,
    pub(super) next_link: Option<String>,
    /// `@odata.count` (present when `$count=true` was asked for, on the first page).
    pub(super) count: Option<u64>,
    /// `@odata.nextLink` was there but not a string (nor null): where the next page is cannot be known, and reading
    /// it as "no next page" would take the rest of the collection for gone.
    pub(super) next_link_malformed: bool,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Page<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = Page<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a page of a collection")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Page<T>, A::Error> {
                let mut page = Page { value: None, next_link: None, count: None, next_link_malformed: false };
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "value" => page.value = map.next_value::<Items<T>>()?.0,
                        "@odata.nextLink" => match map.next_value::<serde_json::Value>()? {
                            serde_json::Value::String(link) => page.next_link = Some(link),
                            // A last page may plausibly say `null` as well as leave the link out.
                            serde_json::Value::Null => page.next_link = None,
                            _ => page.next_link_malformed = true,
                        },
                        "@odata.count" => page.count = map.next_value::<Count>()?.0,
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(page)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Page<T>, A::Error> {
                de::IgnoredAny.visit_seq(seq)?;
                Ok(Page { value: None, next_link: None, count: None, next_link_malformed: false })
            }
            super::json::other_json_values!(Page<T>, self => Page { value: None, next_link: None, count: None, next_link_malformed: false });
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// `value`: the items when it is an array, `None` for anything else.
struct Items<T>(Option<Vec<T>>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = Items<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of items")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Items<T>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1_000));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Items(Some(items)))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Items<T>, A::Error> {
                de::IgnoredAny.visit_map(map)?;
                Ok(Items(None))
            }
            super::json::other_json_values!(Items<T>, self => Items(None));
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// `@odata.count`: a number, or nothing.
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Count(value.as_u64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_page_reads_its_items_link_and_count_and_tolerates_odd_shapes() {
        let page: Page<Value> = serde_json::from_value(json!({
            "@odata.context": "x", "@odata.count": 3, "value": [1, {"a": 2}], "@odata.nextLink": "https://n"
        }))
        .unwrap();
        assert_eq!(page.value.map(|v| v.len()), Some(2));
        assert_eq!(page.next_link.as_deref(), Some("https://n"));
        assert_eq!(page.count, Some(3));
        for odd in
            [json!({"value": {"a": 1}}), json!({"value": null}), json!({}), json!([1, 2]), json!(null), json!("x")]
        {
            let page: Page<Value> = serde_json::from_value(odd.clone()).unwrap();
            assert!(page.value.is_none(), "{odd}");
        }
        // A nextLink that is not a string is not "no next page" (that read it as the end and lost the rest).
        for odd in [json!(5), json!({"href": "https://n"}), json!(["https://n"]), json!(true)] {
            let page: Page<Value> = serde_json::from_value(json!({"value": [], "@odata.nextLink": odd})).unwrap();
            assert!(page.next_link.is_none() && page.next_link_malformed, "{odd}");
        }
        let page: Page<Value> = serde_json::from_value(json!({"value": [], "@odata.nextLink": null})).unwrap();
        assert!(page.next_link.is_none() && !page.next_link_malformed, "null ends the collection");
    }
}
