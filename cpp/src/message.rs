//! Protobuf messages as the header's classes use them: a setter merges
//! prototxt text into the message (as protobuf merges: a singular field takes
//! the new value, a repeated one gets it appended, a message field merges),
//! and a getter reads a field by name as text.
use caffe_tch::proto::{descriptor_of, text};
use caffe_tch::{Error, Result};
use prost::{Message, Name};
use prost_reflect::{DynamicMessage, FieldDescriptor, Value};

/// Merges `prototxt` into `message`.
pub(crate) fn merge_text<M: Message + Name + Default>(message: &mut M, prototxt: &str) -> Result<()> {
    let origin = format!("<{} setter>", M::NAME);
    let parsed = text::parse_str::<M>(prototxt, &origin, Default::default())?;
    message
        .merge(parsed.message.encode_to_vec().as_slice())
        .map_err(|e| Error::invalid(format!("{}: cannot merge '{prototxt}': {e}", M::NAME)))
}

/// Field `name` of `message` (its default when unset) as text: a number,
/// true/false, a string, an enum's number; element `index` of a repeated
/// field (`index` < 0 for a singular one).
pub(crate) fn field_text<M: Message + Name>(message: &M, name: &str, index: i32) -> Result<String> {
    let value = field(message, name)?;
    let value = match (&value, index) {
        (Value::List(items), i) if i >= 0 => items
            .get(i as usize)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("{}.{name} has {} values, not a value {i}", M::NAME, items.len())))?,
        (Value::List(_), _) => return Err(Error::invalid(format!("{}.{name} is repeated", M::NAME))),
        (v, _) => v.clone(),
    };
    Ok(match value {
        Value::Bool(b) => b.to_string(),
        Value::I32(v) | Value::EnumNumber(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::F32(v) => format!("{v:e}"),
        Value::F64(v) => format!("{v:e}"),
        Value::String(s) => s,
        _ => return Err(Error::unsupported(format!("{}.{name} is a message", M::NAME))),
    })
}

/// How many values repeated field `name` of `message` holds.
pub(crate) fn field_size<M: Message + Name>(message: &M, name: &str) -> Result<usize> {
    match field(message, name)? {
        Value::List(items) => Ok(items.len()),
        _ => Err(Error::invalid(format!("{}.{name} is not repeated", M::NAME))),
    }
}

/// Whether field `name` of `message` is set (protobuf's `has_`; a repeated
/// field: whether it holds values).
pub(crate) fn field_is_set<M: Message + Name>(message: &M, name: &str) -> Result<bool> {
    let (dynamic, f) = dynamic_field(message, name)?;
    Ok(dynamic.has_field(&f))
}

/// Clears field `name` of `message` (protobuf's `clear_`).
pub(crate) fn clear_field<M: Message + Name + Default>(message: &mut M, name: &str) -> Result<()> {
    let (mut dynamic, f) = dynamic_field(message, name)?;
    dynamic.clear_field(&f);
    *message = M::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|e| Error::invalid(format!("{} does not decode: {e}", M::NAME)))?;
    Ok(())
}

fn dynamic_field<M: Message + Name>(message: &M, name: &str) -> Result<(DynamicMessage, FieldDescriptor)> {
    let desc = descriptor_of::<M>();
    let dynamic = DynamicMessage::decode(desc.clone(), message.encode_to_vec().as_slice())
        .map_err(|e| Error::invalid(format!("{} does not decode: {e}", M::NAME)))?;
    let f = desc.get_field_by_name(name).ok_or_else(|| Error::invalid(format!("{} has no field '{name}'", M::NAME)))?;
    Ok((dynamic, f))
}

fn field<M: Message + Name>(message: &M, name: &str) -> Result<Value> {
    let (dynamic, f) = dynamic_field(message, name)?;
    Ok(dynamic.get_field(&f).into_owned())
}
