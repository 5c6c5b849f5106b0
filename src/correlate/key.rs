//! Join keys: the [`KeyValue`] a key field holds, equality as ES's `SequenceKey` has it
//! (`Arrays.deepEquals`: type-sensitive, `null` equal to `null`), and the cartesian expansion of
//! multi-valued key fields in the order ES's `TumblingWindow.extractJoinKeys` produces; and the
//! matcher's compact form of keys ([`KeyInterner`] ids, [`KeyTuple`], [`CandidateKeys`]).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// One value of one join-key field.
///
/// Equality is type-sensitive like Java's `Object.equals`: `Int(1)`, `Float(1.0)` and
/// `Str("1")` are three different keys. `Null` (an optional `?field` without a value) equals
/// `Null`. Floats are stored as bits so `-0.0 != 0.0` and NaN equals NaN, as `Double.equals` has it.
/// ES also tells `Integer` from `Long`; callers that cannot (JSON numbers) map both to `Int`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// No value (only possible for optional keys; mandatory keys are filtered out by `exists`).
    Null,
    /// A boolean value.
    Bool(bool),
    /// An integral value.
    Int(i64),
    /// A floating-point value, as its IEEE-754 bits (see [`KeyValue::float`]).
    Float(u64),
    /// A string value.
    Str(Arc<str>),
}

impl KeyValue {
    /// A float key value; NaN is canonicalised as `Double.doubleToLongBits` does.
    pub fn float(value: f64) -> Self {
        let value = if value.is_nan() { f64::NAN } else { value };
        KeyValue::Float(value.to_bits())
    }

    /// A string key value.
    pub fn str(value: &str) -> Self {
        KeyValue::Str(Arc::from(value))
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Null => f.write_str("null"),
            KeyValue::Bool(v) => write!(f, "{v}"),
            KeyValue::Int(v) => write!(f, "{v}"),
            KeyValue::Float(bits) => write!(f, "{}", f64::from_bits(*bits)),
            KeyValue::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// The values of every join-key field of one event for one stage: one entry per key field
/// (the `sequence by` fields first, then the stage's own `by` fields), each holding the field's
/// values in the order ES returns them. A missing optional field is `vec![KeyValue::Null]`.
pub type KeyFields = Vec<Vec<KeyValue>>;

/// Expands multi-valued key fields into the key tuples ES matches independently, in ES's order.
///
/// `TumblingWindow.extractJoinKeys` builds the product field by field, and for each field loops
/// over the field's values *outside* the partial tuples built so far. So `[[1, 2], [x, y]]` gives
/// `[1, x], [2, x], [1, y], [2, y]`. The order matters: when two tuples of one event complete
/// sequences, ES keeps only the first (see `Matcher`). A field with no values yields no tuple.
/// No key fields at all yields the single empty tuple (ES's `SequenceKey.NONE`).
pub fn expand_join_keys(fields: &[Vec<KeyValue>]) -> Vec<Vec<KeyValue>> {
    let mut partial: Vec<Vec<KeyValue>> = vec![Vec::with_capacity(fields.len())];
    for values in fields {
        if values.len() == 1 {
            for tuple in &mut partial {
                tuple.push(values[0].clone());
            }
            continue;
        }
        let mut next = Vec::with_capacity(values.len() * partial.len());
        for value in values {
            for tuple in &partial {
                let mut extended = tuple.clone();
                extended.push(value.clone());
                next.push(extended);
            }
        }
        partial = next;
    }
    partial
}

// ---------------------------------------------------------------------------------------------
// The matcher's internal key form: each distinct key value gets a small id once, and a key
// tuple is a short array of ids, so looking a tuple up hashes a few integers instead of the
// values' strings, and a tuple of up to `INLINE_KEYS` fields needs no allocation.

/// The id of one interned [`KeyValue`]; equal ids mean equal values (and the reverse).
pub type KeyId = u32;

/// The id [`KeyInterner::find_str`] gives a string that has none: equal to no interned value,
/// so a key tuple holding it matches no state (and is never stored).
pub const UNSEEN_KEY: KeyId = KeyId::MAX;

/// The id [`KeyInterner`] gives `KeyValue::Null`.
pub const NULL_KEY: KeyId = 0;
const FALSE_KEY: KeyId = 1;
const TRUE_KEY: KeyId = 2;

/// Gives every distinct [`KeyValue`] one [`KeyId`]. Each value kind has its own map, so ids are
/// equal exactly when the values are equal under `KeyValue`'s type-sensitive equality.
///
/// Strings are hashed with std's keyed SipHash: they come from events, and a fixed fast hash
/// would let crafted key values collide on purpose and slow detection down.
#[derive(Debug, Clone)]
pub struct KeyInterner {
    strs: HashMap<Arc<str>, KeyId>,
    ints: HashMap<i64, KeyId, FxBuildHasher>,
    floats: HashMap<u64, KeyId, FxBuildHasher>,
    values: Vec<KeyValue>,
}

impl Default for KeyInterner {
    fn default() -> Self {
        KeyInterner {
            strs: HashMap::new(),
            ints: HashMap::default(),
            floats: HashMap::default(),
            values: vec![KeyValue::Null, KeyValue::Bool(false), KeyValue::Bool(true)],
        }
    }
}

impl KeyInterner {
    /// An interner holding only the fixed ids (null, false, true).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct values have ids.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Never true: null, false and true always have ids.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn next_id(&self) -> KeyId {
        // More than 4 billion distinct key values would be needed to wrap; saturate instead
        // (below [`UNSEEN_KEY`]).
        KeyId::try_from(self.values.len()).map_or(UNSEEN_KEY - 1, |id| id.min(UNSEEN_KEY - 1))
    }

    /// The id of a string value if it has one, else [`UNSEEN_KEY`]; nothing is added. For the
    /// keys of a later stage: they can only join sequences whose keys already have ids, so a
    /// value never seen joins nothing, and interning it would cost an allocation for nothing.
    pub fn find_str(&self, value: &str) -> KeyId {
        self.strs.get(value).copied().unwrap_or(UNSEEN_KEY)
    }

    /// The id of a string value, borrowed until it is new.
    pub fn str_id(&mut self, value: &str) -> KeyId {
        if let Some(&id) = self.strs.get(value) {
            return id;
        }
        let id = self.next_id();
        let shared: Arc<str> = Arc::from(value);
        self.strs.insert(shared.clone(), id);
        self.values.push(KeyValue::Str(shared));
        id
    }

    /// The id of an integral value.
    pub fn int_id(&mut self, value: i64) -> KeyId {
        let next = self.next_id();
        let id = *self.ints.entry(value).or_insert(next);
        if id == next {
            self.values.push(KeyValue::Int(value));
        }
        id
    }

    /// The id of a floating-point value (NaN canonicalised, as [`KeyValue::float`]).
    pub fn float_id(&mut self, value: f64) -> KeyId {
        let KeyValue::Float(bits) = KeyValue::float(value) else {
            return NULL_KEY;
        };
        let next = self.next_id();
        let id = *self.floats.entry(bits).or_insert(next);
        if id == next {
            self.values.push(KeyValue::Float(bits));
        }
        id
    }

    /// The id of a boolean value.
    pub fn bool_id(&self, value: bool) -> KeyId {
        if value {
            TRUE_KEY
        } else {
            FALSE_KEY
        }
    }

    /// The id of any key value.
    pub fn id(&mut self, value: &KeyValue) -> KeyId {
        match value {
            KeyValue::Null => NULL_KEY,
            KeyValue::Bool(b) => self.bool_id(*b),
            KeyValue::Int(i) => self.int_id(*i),
            KeyValue::Float(bits) => self.float_id(f64::from_bits(*bits)),
            KeyValue::Str(s) => self.str_id(s),
        }
    }

    /// The value an id stands for; `None` for an id this interner did not give.
    pub fn value(&self, id: KeyId) -> Option<&KeyValue> {
        self.values.get(id as usize)
    }

    /// A fresh interner holding only the values `keep` names (by old id, in order), and the map
    /// from old to new ids (`None` for dropped ones). Used to forget values no state refers to.
    pub(crate) fn compacted(&self, keep: &[bool]) -> (KeyInterner, Vec<Option<KeyId>>) {
        let mut fresh = KeyInterner::new();
        let mut remap = vec![None; self.values.len()];
        for (old, value) in self.values.iter().enumerate() {
            if old <= TRUE_KEY as usize || keep.get(old).copied().unwrap_or(false) {
                remap[old] = Some(fresh.id(value));
            }
        }
        (fresh, remap)
    }
}

/// How many key fields a [`KeyTuple`] holds without allocating.
pub const INLINE_KEYS: usize = 4;

/// One join-key tuple as ids: inline up to [`INLINE_KEYS`] fields, on the heap beyond.
/// A tuple of a given length always takes the same form, so the derived `Eq`/`Hash` agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyTuple {
    /// Up to [`INLINE_KEYS`] ids; slots past `len` are zero.
    Inline {
        /// How many ids are used.
        len: u8,
        /// The ids.
        ids: [KeyId; INLINE_KEYS],
    },
    /// More than [`INLINE_KEYS`] ids.
    Heap(Box<[KeyId]>),
}

impl KeyTuple {
    /// The tuple of `ids`.
    pub fn new(ids: &[KeyId]) -> Self {
        if ids.len() <= INLINE_KEYS {
            let mut inline = [0; INLINE_KEYS];
            inline[..ids.len()].copy_from_slice(ids);
            KeyTuple::Inline {
                len: ids.len() as u8,
                ids: inline,
            }
        } else {
            KeyTuple::Heap(ids.into())
        }
    }

    /// The ids, in key-field order.
    pub fn ids(&self) -> &[KeyId] {
        match self {
            KeyTuple::Inline { len, ids } => &ids[..usize::from(*len)],
            KeyTuple::Heap(ids) => ids,
        }
    }

    /// The tuple with every id mapped through `remap` (see [`KeyInterner::compacted`]).
    pub(crate) fn remapped(&self, remap: &[Option<KeyId>]) -> KeyTuple {
        let mapped: Vec<KeyId> = self
            .ids()
            .iter()
            .map(|&id| {
                remap
                    .get(id as usize)
                    .copied()
                    .flatten()
                    .unwrap_or(NULL_KEY)
            })
            .collect();
        KeyTuple::new(&mapped)
    }
}

/// Whom a group of key fields in [`CandidateKeys`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTarget {
    /// The event is a hit of this stage.
    Stage(usize),
    /// The event is a hit of the `until` filter.
    Until,
}

/// The join-key values of one event for every stage (and `until`) it is a hit of, as ids:
/// the allocation-free form of [`Candidate`](super::Candidate)'s `stages` and `until`,
/// reused event after event. Built with [`CandidateKeys::begin`], [`CandidateKeys::push_value`],
/// [`CandidateKeys::end_field`] and [`CandidateKeys::commit`] (or [`CandidateKeys::abandon`]).
#[derive(Debug, Clone, Default)]
pub struct CandidateKeys {
    /// Every value id of every field of every entry.
    values: Vec<KeyId>,
    /// The end (in `values`) of each field.
    field_ends: Vec<u32>,
    /// Per entry: its target and its fields as a range of `field_ends`.
    entries: Vec<(KeyTarget, u32, u32)>,
    /// The entry being built: (target, first field, first value).
    open: Option<(KeyTarget, u32, u32)>,
}

impl CandidateKeys {
    /// Empties the keys for the next event.
    pub fn clear(&mut self) {
        self.values.clear();
        self.field_ends.clear();
        self.entries.clear();
        self.open = None;
    }

    /// Starts the key fields of `target`; an entry begun and not committed is abandoned.
    pub fn begin(&mut self, target: KeyTarget) {
        self.abandon();
        self.open = Some((
            target,
            self.field_ends.len() as u32,
            self.values.len() as u32,
        ));
    }

    fn field_start(&self) -> usize {
        let entry_start = self.open.map_or(0, |(_, _, v)| v as usize);
        (self.field_ends.last().map_or(0, |&e| e as usize)).max(entry_start)
    }

    /// Adds a value to the current field, unless the field has it already (keyword doc
    /// values are a set; ES reads keys from doc values).
    pub fn push_value(&mut self, id: KeyId) {
        let start = self.field_start();
        if !self.values[start..].contains(&id) {
            self.values.push(id);
        }
    }

    /// Adds a value to the current field as is, even if repeated ([`Matcher::push`]'s
    /// conversion keeps the caller's lists exactly).
    ///
    /// [`Matcher::push`]: super::Matcher::push
    pub fn push_value_unchecked(&mut self, id: KeyId) {
        self.values.push(id);
    }

    /// The number of values of the current field so far.
    pub fn field_len(&self) -> usize {
        self.values.len() - self.field_start()
    }

    /// Ends the current field.
    pub fn end_field(&mut self) {
        self.field_ends.push(self.values.len() as u32);
    }

    /// Keeps the entry begun last.
    pub fn commit(&mut self) {
        if let Some((target, first_field, _)) = self.open.take() {
            self.entries
                .push((target, first_field, self.field_ends.len() as u32));
        }
    }

    /// Drops the entry begun last (a mandatory key had no value).
    pub fn abandon(&mut self) {
        if let Some((_, first_field, first_value)) = self.open.take() {
            self.field_ends.truncate(first_field as usize);
            self.values.truncate(first_value as usize);
        }
    }

    /// True when no entry was committed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The committed entries: target, and each field's value ids.
    pub fn entries(&self) -> impl Iterator<Item = (KeyTarget, EntryFields<'_>)> + '_ {
        self.entries.iter().map(|&(target, first, end)| {
            (
                target,
                EntryFields {
                    keys: self,
                    first: first as usize,
                    end: end as usize,
                },
            )
        })
    }

    /// The fields of committed entry `i` (as [`CandidateKeys::entries`] numbers them).
    pub fn entry_fields(&self, i: usize) -> EntryFields<'_> {
        let (first, end) = self.entries.get(i).map_or((0, 0), |&(_, f, e)| (f, e));
        EntryFields {
            keys: self,
            first: first as usize,
            end: end as usize,
        }
    }

    /// The ids of field `field` (an index into `field_ends`).
    fn field(&self, field: usize) -> &[KeyId] {
        let start = if field == 0 {
            0
        } else {
            self.field_ends[field - 1] as usize
        };
        &self.values[start..self.field_ends[field] as usize]
    }
}

/// The key fields of one [`CandidateKeys`] entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'k> {
    keys: &'k CandidateKeys,
    first: usize,
    end: usize,
}

impl<'k> EntryFields<'k> {
    /// How many key fields.
    pub fn len(&self) -> usize {
        self.end - self.first
    }

    /// True for an entry without key fields (a sequence without `by`).
    pub fn is_empty(&self) -> bool {
        self.end == self.first
    }

    /// The value ids of field `i`.
    pub fn field(&self, i: usize) -> &'k [KeyId] {
        self.keys.field(self.first + i)
    }

    /// Expands the fields into the key tuples ES matches, in the order
    /// [`expand_join_keys`] gives, appending them to `out`. Single-valued fields (the common
    /// case) take a path that builds the one tuple directly.
    pub fn expand_into(&self, out: &mut Vec<KeyTuple>) {
        let fields = self.len();
        let single = (0..fields).all(|i| self.field(i).len() == 1);
        if single {
            let mut ids = [0; INLINE_KEYS];
            if fields <= INLINE_KEYS {
                for (i, id) in ids.iter_mut().take(fields).enumerate() {
                    *id = self.field(i)[0];
                }
                out.push(KeyTuple::new(&ids[..fields]));
            } else {
                let ids: Vec<KeyId> = (0..fields).map(|i| self.field(i)[0]).collect();
                out.push(KeyTuple::new(&ids));
            }
            return;
        }
        // The general path: TumblingWindow.extractJoinKeys' product, field by field, each
        // field's values outside the partial tuples built so far.
        let mut partial: Vec<Vec<KeyId>> = vec![Vec::with_capacity(fields)];
        for i in 0..fields {
            let values = self.field(i);
            let mut next = Vec::with_capacity(values.len() * partial.len());
            for &value in values {
                for tuple in &partial {
                    let mut extended = tuple.clone();
                    extended.push(value);
                    next.push(extended);
                }
            }
            partial = next;
        }
        out.extend(partial.iter().map(|t| KeyTuple::new(t)));
    }
}

/// FxHash (the hash rustc uses for its own maps), written here to avoid a crate: one multiply
/// per word. Only for keys the matcher makes itself (ids, counters), never for raw event text.
#[derive(Debug, Clone, Copy, Default)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` hasher builder for [`FxHasher`].
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key_value() -> impl Strategy<Value = KeyValue> {
        prop_oneof![
            Just(KeyValue::Null),
            any::<bool>().prop_map(KeyValue::Bool),
            (0i64..3).prop_map(KeyValue::Int),
            Just(KeyValue::float(1.0)),
            Just(KeyValue::float(f64::NAN)),
            prop::sample::select(vec!["a", "b", "1"]).prop_map(KeyValue::str),
        ]
    }

    proptest! {
        /// The id form expands exactly as `expand_join_keys` (ES's `extractJoinKeys` order),
        /// on the single-valued fast path and on the cartesian path alike.
        #[test]
        fn id_tuples_expand_like_the_values(
            fields in prop::collection::vec(prop::collection::vec(key_value(), 0..3), 0..6)
        ) {
            let mut interner = KeyInterner::new();
            let mut keys = CandidateKeys::default();
            keys.begin(KeyTarget::Stage(0));
            for values in &fields {
                for v in values {
                    keys.push_value_unchecked(interner.id(v));
                }
                keys.end_field();
            }
            keys.commit();
            let mut tuples = Vec::new();
            keys.entry_fields(0).expand_into(&mut tuples);
            let as_values: Vec<Vec<KeyValue>> = tuples
                .iter()
                .map(|t| t.ids().iter().map(|&id| interner.value(id).cloned().expect("known id")).collect())
                .collect();
            prop_assert_eq!(as_values, expand_join_keys(&fields));
        }

        /// Ids are equal exactly when the values are (type-sensitive, as `KeyValue`'s `Eq`).
        #[test]
        fn ids_are_equal_exactly_when_values_are(a in key_value(), b in key_value()) {
            let mut interner = KeyInterner::new();
            let (ia, ib) = (interner.id(&a), interner.id(&b));
            prop_assert_eq!(ia == ib, a == b);
        }
    }

    /// Compaction keeps the values asked for under new ids, and the fixed ids.
    #[test]
    fn compaction_keeps_what_is_referenced() {
        let mut interner = KeyInterner::new();
        let a = interner.str_id("a");
        let b = interner.str_id("b");
        let mut keep = vec![false; interner.len()];
        keep[b as usize] = true;
        let (fresh, remap) = interner.compacted(&keep);
        assert_eq!(remap[a as usize], None);
        let new_b = remap[b as usize].expect("kept");
        assert_eq!(fresh.value(new_b), Some(&KeyValue::str("b")));
        assert_eq!(fresh.value(NULL_KEY), Some(&KeyValue::Null));
        assert_eq!(fresh.len(), 4);
        let tuple = KeyTuple::new(&[b, NULL_KEY]).remapped(&remap);
        assert_eq!(tuple.ids(), &[new_b, NULL_KEY]);
    }
}
