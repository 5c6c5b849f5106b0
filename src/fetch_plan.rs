//! The two-step fetch of a sequence rule, planned without I/O: which rules may use it, the
//! stage-1 key values a key scan collects, and the restriction of every later stage to those
//! values, both as an exact Rust predicate ([`StageRestriction::admits`]) and as the query DSL
//! built from the same values ([`StageRestriction::query`]).
//!
//! Why it never drops an event that could join: every sequence's key tuple is the key tuple of
//! its stage-1 event (ES's `SequenceMatcher` keys every stage by the same `SequenceKey`), so a
//! later-stage event whose key tuples are all absent from stage 1 finds no pending sequence and
//! is ignored. The restriction keeps an event when, at every key position, one of its values is
//! among stage 1's values at that position: a superset of "one of its tuples is a stage-1
//! tuple", and multi-valued keys (expanded into the cartesian product, `TumblingWindow.extractJoinKeys`)
//! are covered because `terms` matches when any value matches. Elasticsearch does the same
//! (`ES: execution/assembler/BoxedQueryRequest.java`, `keys`: per key position a `terms` over
//! the values found, `must_not exists` for a null optional key, and no key filter at all above
//! `MAX_TERMS` = 128 values); here the values are chunked instead, and a position with a null
//! optional key is left unrestricted (a superset of ES's `must_not exists`, which would also
//! depend on how an `ignore_above` value counts for `exists`).

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use serde_json::{json, Value};

use crate::correlate::KeyValue;
use crate::eql::ast;

/// Values per `terms` clause; far below `index.max_terms_count` (65,536 by default).
pub const TERMS_PER_CLAUSE: usize = 4_096;
/// Distinct stage-1 values at one key position beyond which the one-query fetch is used.
pub const MAX_VALUES_PER_POSITION: usize = 65_536;
/// Longest key string (in UTF-16 units, as `ignore_above` counts) the restriction sends: the
/// mapping's `ignore_above` is not in `_field_caps`, and a longer value may be unindexed
/// (dynamic mappings use 256), so a `terms` on it would miss documents the correlator joins.
pub const MAX_KEY_STRING: usize = 256;

/// Why a run fetched with one query instead of two steps. Displayed in the run document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneQueryReason {
    /// `elasticsearch.two_step_fetch = false`.
    Disabled,
    /// An event query: there is nothing to join.
    NotSequence,
    /// The sequence has no join keys.
    NoJoinKeys,
    /// `until` events must be seen whatever their keys' partners.
    Until,
    /// Missing-event stages (`![ ]`) are checked against every event.
    MissingEventStage,
    /// A later stage's key field is not of a type whose `terms` query matches exactly.
    KeyFieldType {
        /// The field path.
        field: String,
        /// Its type(s) across the matched indices, or `unmapped`.
        found: KeyTypeError,
    },
    /// A stage-1 key string is longer than [`MAX_KEY_STRING`].
    LongKey {
        /// The key field of stage 1.
        field: String,
    },
    /// Too many distinct stage-1 values at one key position.
    TooManyValues {
        /// The key field of stage 1.
        field: String,
        /// How many.
        count: usize,
    },
    /// A stage-1 hit's keys could not be read, so the key set may be incomplete.
    UnreadableKey {
        /// `index/id: reason`.
        event: String,
    },
}

impl fmt::Display for OneQueryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OneQueryReason::Disabled => f.write_str("elasticsearch.two_step_fetch is false"),
            OneQueryReason::NotSequence => f.write_str("not a sequence"),
            OneQueryReason::NoJoinKeys => f.write_str("the sequence has no join keys"),
            OneQueryReason::Until => f.write_str("the sequence has an until clause"),
            OneQueryReason::MissingEventStage => {
                f.write_str("the sequence has a missing-event stage")
            }
            OneQueryReason::KeyFieldType { field, found } => write!(
                f,
                "join key {field} is mapped as {found}; only keyword, constant_keyword, integer types and ip are restricted"
            ),
            OneQueryReason::LongKey { field } => write!(
                f,
                "a stage-1 value of join key {field} is longer than {MAX_KEY_STRING} characters"
            ),
            OneQueryReason::TooManyValues { field, count } => write!(
                f,
                "stage 1 has {count} distinct values of join key {field} (more than {MAX_VALUES_PER_POSITION})"
            ),
            OneQueryReason::UnreadableKey { event } => {
                write!(f, "a stage-1 event's join keys cannot be read ({event})")
            }
        }
    }
}

/// The mapping type of a later stage's key field, as far as the restriction cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `keyword` or `constant_keyword`: the correlator reads strings, a `terms` on the string
    /// matches the indexed term (a normalizer only widens the match).
    Keyword,
    /// `long`, `integer`, `short`, `byte`: the correlator reads integers, ES indexes the same.
    Integer,
    /// `ip`: the correlator reads strings that parse as an address; `terms` compares addresses,
    /// so other spellings of the same address also match (wider, never narrower).
    Ip,
}

/// Why a later stage's key field cannot be restricted: its mapping, as `_field_caps` gave it.
/// Displays the type(s) found, or `unmapped`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTypeError {
    /// No matched index maps the field.
    #[error("unmapped")]
    Unmapped,
    /// One mapping type everywhere, but none of [`KeyKind`]'s.
    #[error("{0}")]
    Unsupported(String),
    /// Different mapping types in different indices.
    #[error("{}", .0.join(" and "))]
    Conflicting(Vec<String>),
}

impl KeyKind {
    /// The kind of a field mapped with exactly `mapping_type` in every matched index (one
    /// `_field_caps` entry), or `None` for any other type.
    pub fn from_mapping_type(mapping_type: &str) -> Option<KeyKind> {
        match mapping_type {
            "keyword" | "constant_keyword" => Some(KeyKind::Keyword),
            "long" | "integer" | "short" | "byte" => Some(KeyKind::Integer),
            "ip" => Some(KeyKind::Ip),
            _ => None,
        }
    }

    /// The kind of a field whose matched indices map it as `mapping_types` (its `_field_caps`
    /// entries; none when it is unmapped): one type everywhere, and a kind of [`KeyKind`].
    pub fn from_mapping_types(mapping_types: &[String]) -> Result<KeyKind, KeyTypeError> {
        match mapping_types {
            [] => Err(KeyTypeError::Unmapped),
            [one] => KeyKind::from_mapping_type(one)
                .ok_or_else(|| KeyTypeError::Unsupported(one.clone())),
            many => Err(KeyTypeError::Conflicting(many.to_vec())),
        }
    }

    /// The value as a term of this kind, or `None` when no value of a field of this kind can
    /// equal it in the correlator (so no event it would admit can join on it).
    fn term(self, value: &KeyValue) -> Option<Value> {
        match (self, value) {
            (KeyKind::Keyword, KeyValue::Str(s)) => Some(json!(s.as_ref())),
            (KeyKind::Integer, KeyValue::Int(i)) => Some(json!(i)),
            (KeyKind::Ip, KeyValue::Str(s)) if s.parse::<IpAddr>().is_ok() => {
                Some(json!(s.as_ref()))
            }
            _ => None,
        }
    }
}

/// Why a rule cannot use the two-step fetch at all, from its shape alone.
pub fn shape_refusal(query: &ast::Query) -> Option<OneQueryReason> {
    let ast::Query::Sequence(seq) = query else {
        return Some(OneQueryReason::NotSequence);
    };
    if seq.until.is_some() {
        return Some(OneQueryReason::Until);
    }
    if seq.stages.iter().any(|s| s.missing) {
        return Some(OneQueryReason::MissingEventStage);
    }
    if seq.stages.iter().all(|s| s.keys.is_empty()) {
        return Some(OneQueryReason::NoJoinKeys);
    }
    None
}

/// The key fields of every stage, `[stage][position]`.
pub fn stage_key_fields(seq: &ast::Sequence) -> Vec<Vec<String>> {
    seq.stages
        .iter()
        .map(|s| s.keys.iter().map(|k| k.field.path.clone()).collect())
        .collect()
}

/// Stage 1's key values, per key position, as the key scan collects them.
#[derive(Debug, Clone, Default)]
pub struct StageOneKeys {
    values: Vec<HashSet<KeyValue>>,
    has_null: Vec<bool>,
    events: u64,
}

impl StageOneKeys {
    /// An empty collection for `positions` key fields.
    pub fn new(positions: usize) -> Self {
        StageOneKeys {
            values: vec![HashSet::new(); positions],
            has_null: vec![false; positions],
            events: 0,
        }
    }

    /// Adds one stage-1 event's key fields (the correlator's `KeyFields`: one list per
    /// position). Every value is kept, so every tuple of the cartesian expansion is covered.
    pub fn add(&mut self, key_fields: &[Vec<KeyValue>]) {
        self.events += 1;
        for (position, values) in key_fields.iter().enumerate() {
            let Some(set) = self.values.get_mut(position) else {
                continue;
            };
            for value in values {
                if *value == KeyValue::Null {
                    self.has_null[position] = true;
                } else {
                    set.insert(value.clone());
                }
            }
        }
    }

    /// How many events were added.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The distinct values at each position.
    pub fn distinct(&self) -> Vec<usize> {
        self.values.iter().map(HashSet::len).collect()
    }

    /// The restriction of every later stage (index 1.. of `key_fields`), given the kind of
    /// each later stage's key fields (`kind_of(path)`; `Err(found)` names an unsupported
    /// mapping). `key_fields[0]` names stage 1's fields, for messages.
    pub fn restrictions(
        &self,
        key_fields: &[Vec<String>],
        kind_of: impl Fn(&str) -> Result<KeyKind, KeyTypeError>,
    ) -> Result<Vec<StageRestriction>, OneQueryReason> {
        let stage_one = key_fields.first().map(Vec::as_slice).unwrap_or(&[]);
        for (position, set) in self.values.iter().enumerate() {
            let field = stage_one.get(position).cloned().unwrap_or_default();
            if set.len() > MAX_VALUES_PER_POSITION {
                return Err(OneQueryReason::TooManyValues {
                    field,
                    count: set.len(),
                });
            }
            let too_long = set.iter().any(|v| match v {
                KeyValue::Str(s) => s.encode_utf16().count() > MAX_KEY_STRING,
                _ => false,
            });
            if too_long {
                return Err(OneQueryReason::LongKey { field });
            }
        }
        let mut out = Vec::new();
        for fields in key_fields.iter().skip(1) {
            let mut positions = Vec::with_capacity(fields.len());
            for (position, field) in fields.iter().enumerate() {
                let kind = kind_of(field).map_err(|found| OneQueryReason::KeyFieldType {
                    field: field.clone(),
                    found,
                })?;
                if self.has_null.get(position).copied().unwrap_or(true) {
                    // An optional key that was null in stage 1 joins events without the field:
                    // leave the position open (see the module comment).
                    positions.push(PositionRestriction {
                        field: field.clone(),
                        kind,
                        values: None,
                    });
                    continue;
                }
                let mut values: Vec<KeyValue> = self.values[position]
                    .iter()
                    .filter(|v| kind.term(v).is_some())
                    .cloned()
                    .collect();
                values.sort();
                positions.push(PositionRestriction {
                    field: field.clone(),
                    kind,
                    values: Some(values),
                });
            }
            out.push(StageRestriction { positions });
        }
        Ok(out)
    }
}

/// One key position of a later stage: its field and the stage-1 values it may hold, or `None`
/// when it is left open.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionRestriction {
    field: String,
    kind: KeyKind,
    values: Option<Vec<KeyValue>>,
}

/// What a later stage's events must satisfy to be fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRestriction {
    positions: Vec<PositionRestriction>,
}

impl StageRestriction {
    /// The exact meaning of [`StageRestriction::query`] over the correlator's key values of an
    /// event for this stage: at every restricted position one of its values is a kept stage-1
    /// value. (The query sees indexed terms; [`KeyKind`] says why they agree.)
    pub fn admits(&self, key_fields: &[Vec<KeyValue>]) -> bool {
        self.positions
            .iter()
            .enumerate()
            .all(|(i, p)| match &p.values {
                None => true,
                Some(kept) => key_fields
                    .get(i)
                    .is_some_and(|values| values.iter().any(|v| kept.binary_search(v).is_ok())),
            })
    }

    /// True when no position admits any value: no event of this stage can join.
    pub fn admits_nothing(&self) -> bool {
        self.positions
            .iter()
            .any(|p| p.values.as_ref().is_some_and(Vec::is_empty))
    }

    /// The filter clauses to AND with the stage's own query: per restricted position, `terms`
    /// clauses of at most [`TERMS_PER_CLAUSE`] values, any of which may match.
    pub fn query(&self) -> Vec<Value> {
        if self.admits_nothing() {
            return vec![json!({"match_none": {}})];
        }
        let mut clauses = Vec::new();
        for p in &self.positions {
            let Some(values) = &p.values else {
                continue;
            };
            let terms: Vec<Value> = values.iter().filter_map(|v| p.kind.term(v)).collect();
            let chunks: Vec<Value> = terms
                .chunks(TERMS_PER_CLAUSE)
                .map(|chunk| json!({"terms": {p.field.as_str(): chunk}}))
                .collect();
            clauses.push(match chunks.len() {
                1 => chunks.into_iter().next().unwrap_or_default(),
                _ => json!({"bool": {"should": chunks, "minimum_should_match": 1}}),
            });
        }
        clauses
    }

    /// How many values the restriction sends, over all positions.
    pub fn value_count(&self) -> usize {
        self.positions
            .iter()
            .map(|p| p.values.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> KeyValue {
        KeyValue::str(v)
    }

    fn keyword(_: &str) -> Result<KeyKind, KeyTypeError> {
        Ok(KeyKind::Keyword)
    }

    fn fields() -> Vec<Vec<String>> {
        vec![
            vec!["host.id".into(), "process.entity_id".into()],
            vec!["host.id".into(), "process.parent.entity_id".into()],
        ]
    }

    #[test]
    fn admits_when_every_position_has_a_stage_one_value() {
        let mut keys = StageOneKeys::new(2);
        keys.add(&[vec![s("h1")], vec![s("p1")]]);
        keys.add(&[vec![s("h2")], vec![s("p2"), s("p3")]]);
        let r = keys.restrictions(&fields(), keyword).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].admits(&[vec![s("h1")], vec![s("p1")]]));
        // Per position, not per tuple: (h1, p2) is no stage-1 tuple but is admitted (superset).
        assert!(r[0].admits(&[vec![s("h1")], vec![s("p2")]]));
        assert!(r[0].admits(&[vec![s("h2")], vec![s("p3")]]));
        assert!(!r[0].admits(&[vec![s("h3")], vec![s("p1")]]));
        assert!(!r[0].admits(&[vec![s("h1")], vec![s("p9")]]));
        // A multi-valued later key is admitted when any value is kept (terms: any value); ES
        // matches each tuple of the cartesian product (`TumblingWindow.extractJoinKeys`), and
        // one of them joins only if each of its values is a stage-1 value at its position.
        assert!(r[0].admits(&[vec![s("h9"), s("h2")], vec![s("p9"), s("p3")]]));
    }

    // ES drops the whole key filter above `BoxedQueryRequest.MAX_TERMS` (128) values per
    // position; here the values are chunked under `index.max_terms_count` instead.
    #[test]
    fn the_query_names_the_same_values_chunked() {
        let mut keys = StageOneKeys::new(2);
        for i in 0..(TERMS_PER_CLAUSE + 5) {
            keys.add(&[vec![s("h")], vec![s(&format!("p{i}"))]]);
        }
        let r = keys.restrictions(&fields(), keyword).unwrap();
        let q = r[0].query();
        assert_eq!(q[0], json!({"terms": {"host.id": ["h"]}}));
        let chunks = q[1]["bool"]["should"].as_array().unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[0]["terms"]["process.parent.entity_id"]
                .as_array()
                .unwrap()
                .len(),
            TERMS_PER_CLAUSE
        );
        assert_eq!(
            chunks[1]["terms"]["process.parent.entity_id"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        assert_eq!(r[0].value_count(), TERMS_PER_CLAUSE + 6);
    }

    #[test]
    fn no_stage_one_events_admit_nothing() {
        let keys = StageOneKeys::new(2);
        let r = keys.restrictions(&fields(), keyword).unwrap();
        assert!(r[0].admits_nothing());
        assert_eq!(r[0].query(), vec![json!({"match_none": {}})]);
        assert!(!r[0].admits(&[vec![s("h")], vec![s("p")]]));
    }

    // ES (`execution/assembler/BoxedQueryRequest.java`, `keys`) ORs `must_not exists` into a
    // position where a null optional key was found; leaving the position open is wider.
    #[test]
    fn a_null_optional_key_leaves_its_position_open() {
        let mut keys = StageOneKeys::new(2);
        keys.add(&[vec![s("h1")], vec![KeyValue::Null]]);
        let r = keys.restrictions(&fields(), keyword).unwrap();
        assert!(r[0].admits(&[vec![s("h1")], vec![KeyValue::Null]]));
        assert!(r[0].admits(&[vec![s("h1")], vec![s("anything")]]));
        assert!(!r[0].admits(&[vec![s("h2")], vec![s("anything")]]));
        assert_eq!(r[0].query(), vec![json!({"terms": {"host.id": ["h1"]}})]);
    }

    #[test]
    fn values_of_another_type_cannot_join_and_are_not_sent() {
        // On a keyword field the correlator reads strings only: Int(7) can never equal one.
        let mut keys = StageOneKeys::new(1);
        keys.add(&[vec![KeyValue::Int(7), s("7"), s("not-an-ip")]]);
        let f = vec![vec!["k".to_string()], vec!["k".to_string()]];
        let r = keys.restrictions(&f, keyword).unwrap();
        assert_eq!(
            r[0].query(),
            vec![json!({"terms": {"k": ["7", "not-an-ip"]}})]
        );
        let r = keys.restrictions(&f, |_| Ok(KeyKind::Integer)).unwrap();
        assert_eq!(r[0].query(), vec![json!({"terms": {"k": [7]}})]);
        let r = keys.restrictions(&f, |_| Ok(KeyKind::Ip)).unwrap();
        assert!(r[0].admits_nothing());
        let mut keys = StageOneKeys::new(1);
        keys.add(&[vec![s("::1"), s("10.0.0.1"), s("x")]]);
        let r = keys.restrictions(&f, |_| Ok(KeyKind::Ip)).unwrap();
        assert_eq!(
            r[0].query(),
            vec![json!({"terms": {"k": ["10.0.0.1", "::1"]}})]
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let mut keys = StageOneKeys::new(2);
        keys.add(&[vec![s("h")], vec![s(&"x".repeat(MAX_KEY_STRING + 1))]]);
        assert_eq!(
            keys.restrictions(&fields(), keyword).unwrap_err(),
            OneQueryReason::LongKey {
                field: "process.entity_id".into()
            }
        );
        let mut keys = StageOneKeys::new(2);
        keys.add(&[vec![s("h")], vec![s(&"x".repeat(MAX_KEY_STRING))]]);
        assert!(keys.restrictions(&fields(), keyword).is_ok());
        let err = keys
            .restrictions(&fields(), |f| {
                if f == "host.id" {
                    Err(KeyTypeError::Unsupported("text".into()))
                } else {
                    Ok(KeyKind::Keyword)
                }
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "join key host.id is mapped as text; only keyword, constant_keyword, integer types and ip are restricted"
        );
        let mut keys = StageOneKeys::new(1);
        for i in 0..=MAX_VALUES_PER_POSITION {
            keys.add(&[vec![KeyValue::Int(i as i64)]]);
        }
        let f = vec![vec!["k".to_string()], vec!["k".to_string()]];
        assert!(matches!(
            keys.restrictions(&f, keyword),
            Err(OneQueryReason::TooManyValues { count, .. }) if count == MAX_VALUES_PER_POSITION + 1
        ));
    }

    #[test]
    fn shapes_that_need_every_event() {
        let parse = |q: &str| crate::eql::parser::parse(q).unwrap();
        let base = "sequence by host.id [process where true] by a [process where true] by b";
        assert_eq!(shape_refusal(&parse(base)), None);
        assert_eq!(
            shape_refusal(&parse("process where true")),
            Some(OneQueryReason::NotSequence)
        );
        assert_eq!(
            shape_refusal(&parse(&format!("{base} until [process where true] by c"))),
            Some(OneQueryReason::Until)
        );
        assert_eq!(
            shape_refusal(&parse("sequence [process where true] [process where true]")),
            Some(OneQueryReason::NoJoinKeys)
        );
        assert_eq!(
            shape_refusal(&parse(
                "sequence by host.id with maxspan=1s [process where true] ![process where true]"
            )),
            Some(OneQueryReason::MissingEventStage)
        );
    }
}
