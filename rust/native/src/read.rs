//! Reading Python values for the converters (convert.rs).
//!
//! Rules: errors are in the caller's terms, never Python's exception text: a value of the wrong type names its type
//! and what the setting accepts ([`Accepted`]); a `str` holding a lone surrogate (which UTF-8 cannot encode) says
//! so and where; an integer is read as any Python int and narrowed here, so one out of range (even past 64 bits) is
//! the field's `InvalidConfig`, not an OverflowError.

use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyBytes, PyInt, PyString};
use rusty_genius_cortex::CortexError;

use crate::errors::{config_error, to_py};

/// What a setting of this Rust type accepts, in words: the error for a value that does not convert says it.
pub trait Accepted {
    fn accepted() -> String;
}

impl Accepted for bool {
    fn accepted() -> String {
        "true or false".into()
    }
}

impl Accepted for f32 {
    fn accepted() -> String {
        "a number".into()
    }
}

impl Accepted for String {
    fn accepted() -> String {
        "a str".into()
    }
}

impl Accepted for Vec<String> {
    fn accepted() -> String {
        "a sequence of str".into()
    }
}

impl Accepted for Vec<Bound<'_, PyAny>> {
    fn accepted() -> String {
        "a sequence".into()
    }
}

impl<T: Accepted> Accepted for Option<T> {
    fn accepted() -> String {
        format!("{}, or None", T::accepted())
    }
}

pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value.get_type().name().map(|n| n.to_string()).unwrap_or_default()
}

/// "a str", "an int": the type of `value` with its article.
pub fn a_type(value: &Bound<'_, PyAny>) -> String {
    let name = type_name(value);
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {name}")
}

/// The first lone surrogate (U+D800 to U+DFFF) in a Python `str`: Python strings may hold one, UTF-8 cannot.
pub fn lone_surrogate(text: &Bound<'_, PyString>) -> Option<u32> {
    let encoded = text.call_method1("encode", ("utf-8", "surrogatepass")).ok()?;
    let bytes = encoded.cast::<PyBytes>().ok()?.as_bytes();
    // "surrogatepass" writes a surrogate as ED A0..BF xx; 0xED is never a continuation byte, so this is a whole one.
    bytes
        .windows(3)
        .find(|w| w[0] == 0xED && w[1] >= 0xA0)
        .map(|w| (u32::from(w[0] & 0x0F) << 12) | (u32::from(w[1] & 0x3F) << 6) | u32::from(w[2] & 0x3F))
}

/// Why `value` is not `accepted` at `place` (`grammar`, `stop[1]`): a `str` with a lone surrogate, or a value of
/// another type.
pub fn not_accepted(value: &Bound<'_, PyAny>, place: &str, accepted: &str) -> String {
    if let Some(code) = value.cast::<PyString>().ok().and_then(|s| lone_surrogate(s)) {
        return format!("{place} holds a lone surrogate (U+{code:04X}); send valid Unicode text");
    }
    format!("invalid {place}: {} is not accepted: must be {accepted}", a_type(value))
}

pub fn attr<'py, T: FromPyObjectOwned<'py> + Accepted>(
    obj: &Bound<'py, PyAny>,
    owner: &str,
    name: &str,
) -> PyResult<T> {
    let value = obj.getattr(name).map_err(|_| no_attribute(owner, name))?;
    value.extract::<T>().map_err(|_| config_error(not_accepted(&value, name, &T::accepted()), Some(name)))
}

pub fn no_attribute(owner: &str, name: &str) -> PyErr {
    config_error(format!("{owner} has no attribute {name:?}; pass a rusty_genius.{owner}"), Some(name))
}

pub fn to_u32(field: &'static str, value: i64, expected: &'static str) -> Result<u32, CortexError> {
    u32::try_from(value).map_err(|_| CortexError::InvalidConfig { field, value: value.to_string(), expected })
}

/// An integer setting (None allowed), read as any Python int and narrowed here: a value out of range, even one past
/// 64 bits, is the field's InvalidConfig saying what is `expected`.
pub fn opt_u32(
    obj: &Bound<'_, PyAny>,
    owner: &str,
    name: &'static str,
    expected: &'static str,
) -> PyResult<Option<u32>> {
    let value = obj.getattr(name).map_err(|_| no_attribute(owner, name))?;
    if value.is_none() {
        return Ok(None);
    }
    match value.extract::<i64>() {
        Ok(v) => to_u32(name, v, expected).map(Some).map_err(to_py),
        Err(_) if value.is_instance_of::<PyInt>() => {
            Err(to_py(CortexError::InvalidConfig { field: name, value: big_int(&value), expected }))
        }
        Err(_) => Err(config_error(
            format!("invalid {name}: {} is not accepted: an integer is, and it {expected}", a_type(&value)),
            Some(name),
        )),
    }
}

/// An integer setting that may not be None (see [`opt_u32`]).
pub fn req_u32(obj: &Bound<'_, PyAny>, owner: &str, name: &'static str, expected: &'static str) -> PyResult<u32> {
    opt_u32(obj, owner, name, expected)?.ok_or_else(|| {
        config_error(format!("invalid {name}: None is not accepted: an integer is, and it {expected}"), Some(name))
    })
}

/// A Python int too big for i64, for a message: its digits when short, else how many there are.
pub fn big_int(value: &Bound<'_, PyAny>) -> String {
    // str() refuses ints past sys.get_int_max_str_digits() (4300 by default).
    let Ok(text) = value.str().map(|s| s.to_string()) else { return "an integer of more than 4300 digits".into() };
    let digits = text.trim_start_matches('-').len();
    if digits > 40 { format!("an integer of {digits} digits") } else { text }
}

/// A JSON value in text form (`json.dumps`), for schemas and tool arguments given as Python objects; the error says
/// what is wrong at `place` (`tools[0].parameters`).
pub fn json_text(value: &Bound<'_, PyAny>, place: &str) -> Result<String, String> {
    if let Ok(s) = value.cast::<PyString>() {
        return s.to_str().map(str::to_owned).map_err(|_| not_accepted(value, place, "JSON text"));
    }
    let py = value.py();
    let kwargs = [("allow_nan", false)].into_py_dict(py).map_err(|e| e.to_string())?;
    let dumped = py.import("json").and_then(|json| json.call_method("dumps", (value,), Some(&kwargs)));
    dumped
        .and_then(|text| text.extract::<String>())
        .map_err(|_| format!("invalid {place}: not JSON data: use dicts, lists, str, finite numbers, bools and None"))
}
