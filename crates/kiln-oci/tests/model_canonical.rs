//! Properties of canonical JSON over arbitrary documents: the bytes do not depend on the
//! order keys were inserted in, parse back to the same value, and are a fixed point.

use kiln_oci::{JsonBlob, to_canonical_json};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "[a-zA-Z0-9 _.:/\\\\\"\u{e9}\u{1F600}\u{0}-\u{1f}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z.é_-]{0,8}", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// The same value with every object's keys inserted in reverse order (the workspace's
/// serde_json keeps insertion order).
fn reversed(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map.iter().rev() {
                out.insert(key.clone(), reversed(item));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

proptest! {
    #[test]
    fn canonical_bytes_ignore_insertion_order(value in json_value()) {
        let a = to_canonical_json(&value).unwrap();
        let b = to_canonical_json(&reversed(&value)).unwrap();
        prop_assert_eq!(&a, &b);
        let back: Value = serde_json::from_slice(&a).unwrap();
        prop_assert_eq!(&back, &value);
        prop_assert_eq!(to_canonical_json(&back).unwrap(), a.clone());
        prop_assert!(!a.ends_with(b"\n"));
        let blob = JsonBlob::from_value(back).unwrap();
        prop_assert_eq!(blob.bytes(), a.as_slice());
    }
}
