//! Join keys: the [`KeyValue`] a key field holds, equality as ES's `SequenceKey` has it
//! (`Arrays.deepEquals`: type-sensitive, `null` equal to `null`), and the cartesian expansion of
//! multi-valued key fields in the order ES's `TumblingWindow.extractJoinKeys` produces.

use std::fmt;
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
