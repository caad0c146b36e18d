//! The entry decoder against malformed stream entries, generated: it never panics, and every
//! refusal names the entry and its stream.

use ordershop_domain::{Action, EntityKind};
use ordershop_eventstore::{EntryId, RawEntry, Stream};
use proptest::prelude::*;
use redis::Value;
use std::collections::HashMap;

/// Field values as an attacker or a buggy writer might leave them.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<Vec<u8>>().prop_map(Value::BulkString),
        "[ -~]{0,40}".prop_map(|s| Value::BulkString(s.into_bytes())),
        Just(Value::BulkString(
            b"{\"id\":\"00000000-0000-0000-0000-000000000000\"}".to_vec()
        )),
        Just(Value::BulkString(
            b"8c6b1f2e-7c4a-4f7e-9b0e-2f5d7c1a9e01".to_vec()
        )),
        any::<i64>().prop_map(Value::Int),
        Just(Value::Nil),
        "[ -~]{0,10}".prop_map(Value::SimpleString),
    ]
}

fn fields() -> impl Strategy<Value = HashMap<String, Value>> {
    let name = prop_oneof![
        Just("event_id".to_owned()),
        Just("entity".to_owned()),
        Just("version".to_owned()),
        "[a-z_]{0,12}",
    ];
    proptest::collection::hash_map(name, value(), 0..6)
}

fn stream() -> impl Strategy<Value = Stream> {
    (0..EntityKind::ALL.len(), 0..Action::ALL.len())
        .prop_map(|(k, a)| Stream::new(EntityKind::ALL[k], Action::ALL[a]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    #[test]
    fn malformed_entries_are_refused_with_their_id_never_a_panic(
        stream in stream(),
        ms in any::<u64>(),
        seq in any::<u64>(),
        fields in fields(),
    ) {
        let entry = RawEntry { stream, id: EntryId::new(ms, seq), fields };
        if let Err(e) = entry.decode() {
            let message = e.to_string();
            prop_assert!(message.contains(&entry.id.to_string()), "{message}");
            prop_assert!(message.contains(&stream.key()), "{message}");
        }
    }

    #[test]
    fn valid_entities_with_a_bad_field_elsewhere_are_still_refused(
        version in "[^0-9]{1,5}",
    ) {
        let mut fields = HashMap::new();
        fields.insert("event_id".to_owned(), Value::BulkString(b"8c6b1f2e-7c4a-4f7e-9b0e-2f5d7c1a9e01".to_vec()));
        fields.insert(
            "entity".to_owned(),
            Value::BulkString(br#"{"id":"8c6b1f2e-7c4a-4f7e-9b0e-2f5d7c1a9e01","name":"Ada","email":"ada@example.com"}"#.to_vec()),
        );
        fields.insert("version".to_owned(), Value::BulkString(version.into_bytes()));
        let entry = RawEntry { stream: Stream::new(EntityKind::Customer, Action::Created), id: EntryId::new(1, 2), fields };
        prop_assert!(entry.decode().is_err());
    }
}
