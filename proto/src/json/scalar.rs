//! Decoding of OTLP/JSON scalars, lenient where the proto3 JSON mapping is: `null` is the default,
//! 64-bit integers come as strings or numbers, doubles may be `"NaN"`/`"Infinity"`, enums come as
//! numbers or names. Anything else is an error that names the field.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::path::Path;
use super::JsonError;

pub(crate) type Result<T> = std::result::Result<T, JsonError>;

pub(crate) fn error(path: &Path<'_>, message: impl Into<String>) -> JsonError {
    JsonError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn unexpected(path: &Path<'_>, expected: &str, found: &Value) -> JsonError {
    error(path, format!("expected {expected}, found {}", kind(found)))
}

/// Field names are matched in lowerCamelCase; the proto field name (snake_case) is accepted too.
pub(crate) fn canonical_name(key: &str) -> Cow<'_, str> {
    if !key.contains('_') {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An object, or `None` for `null` (the message's default).
pub(crate) fn object<'v>(value: &'v Value, path: &Path<'_>) -> Result<Option<&'v Map<String, Value>>> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        other => Err(unexpected(path, "an object", other)),
    }
}

/// Decodes a repeated field: an array (or `null`, which is empty), each element with `decode`.
pub(crate) fn repeated<T>(
    value: &Value,
    path: &Path<'_>,
    decode: impl Fn(&Value, &Path<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(decode(item, &path.index(i))?);
            }
            Ok(out)
        }
        other => Err(unexpected(path, "an array", other)),
    }
}

pub(crate) fn string(value: &Value, path: &Path<'_>) -> Result<String> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        other => Err(unexpected(path, "a string", other)),
    }
}

pub(crate) fn boolean(value: &Value, path: &Path<'_>) -> Result<bool> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        other => Err(unexpected(path, "a boolean", other)),
    }
}

fn integral_f64(f: f64) -> Option<f64> {
    (f.is_finite() && f.fract() == 0.0).then_some(f)
}

pub(crate) fn u64_value(value: &Value, path: &Path<'_>) -> Result<u64> {
    let parsed = match value {
        Value::Null => return Ok(0),
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .and_then(integral_f64)
                .filter(|f| *f >= 0.0 && *f < 18_446_744_073_709_551_616.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok().or_else(|| {
            s.parse::<f64>()
                .ok()
                .and_then(integral_f64)
                .filter(|f| *f >= 0.0 && *f < 18_446_744_073_709_551_616.0)
                .map(|f| f as u64)
        }),
        other => return Err(unexpected(path, "an unsigned 64-bit integer", other)),
    };
    parsed.ok_or_else(|| error(path, format!("{value} is not an unsigned 64-bit integer")))
}

pub(crate) fn i64_value(value: &Value, path: &Path<'_>) -> Result<i64> {
    let in_range = |f: &f64| *f >= -9_223_372_036_854_775_808.0 && *f < 9_223_372_036_854_775_808.0;
    let parsed = match value {
        Value::Null => return Ok(0),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().and_then(integral_f64).filter(in_range).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok().or_else(|| {
            s.parse::<f64>()
                .ok()
                .and_then(integral_f64)
                .filter(in_range)
                .map(|f| f as i64)
        }),
        other => return Err(unexpected(path, "a 64-bit integer", other)),
    };
    parsed.ok_or_else(|| error(path, format!("{value} is not a 64-bit integer")))
}

pub(crate) fn u32_value(value: &Value, path: &Path<'_>) -> Result<u32> {
    let wide = u64_value(value, path)?;
    u32::try_from(wide).map_err(|_| error(path, format!("{wide} is out of range for an unsigned 32-bit integer")))
}

pub(crate) fn i32_value(value: &Value, path: &Path<'_>) -> Result<i32> {
    let wide = i64_value(value, path)?;
    i32::try_from(wide).map_err(|_| error(path, format!("{wide} is out of range for a 32-bit integer")))
}

pub(crate) fn f64_value(value: &Value, path: &Path<'_>) -> Result<f64> {
    match value {
        Value::Null => Ok(0.0),
        Value::Number(n) => n.as_f64().ok_or_else(|| error(path, format!("{n} is not a double"))),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| error(path, format!("{other:?} is not a double"))),
        },
        other => Err(unexpected(path, "a double", other)),
    }
}

/// An enum given as its number or its name; `from_name` maps a name to its number.
pub(crate) fn enumeration(value: &Value, path: &Path<'_>, from_name: fn(&str) -> Option<i32>) -> Result<i32> {
    match value {
        Value::String(name) => match from_name(name) {
            Some(number) => Ok(number),
            None => name
                .parse::<i32>()
                .map_err(|_| error(path, format!("unknown enum value {name:?}"))),
        },
        other => i32_value(other, path),
    }
}

/// A trace or span id: hex (OTLP/JSON's deviation from proto3 base64), `expected_len` bytes or empty.
pub(crate) fn id(value: &Value, path: &Path<'_>, expected_len: usize) -> Result<Vec<u8>> {
    let text = match value {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => s,
        other => return Err(unexpected(path, "a hex id string", other)),
    };
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = hex::decode(text).map_err(|e| error(path, format!("{text:?} is not a hex id: {e}")))?;
    if bytes.len() != expected_len {
        return Err(error(
            path,
            format!("id must be {} hex characters, found {}", expected_len * 2, text.len()),
        ));
    }
    Ok(bytes)
}

/// A proto3 `bytes` field: standard base64 (URL-safe accepted too).
pub(crate) fn bytes(value: &Value, path: &Path<'_>) -> Result<Vec<u8>> {
    let text = match value {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => s,
        other => return Err(unexpected(path, "a base64 string", other)),
    };
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        if let Ok(decoded) = engine.decode(text) {
            return Ok(decoded);
        }
    }
    Err(error(path, format!("{text:?} is not valid base64")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at<T>(f: impl Fn(&Value, &Path<'_>) -> Result<T>, v: Value) -> Result<T> {
        f(&v, &Path::ROOT.field("x"))
    }

    #[test]
    fn integers_accept_strings_numbers_and_null() {
        assert_eq!(
            at(u64_value, json!("1544712660300000000")).unwrap(),
            1_544_712_660_300_000_000
        );
        assert_eq!(
            at(u64_value, json!(1_544_712_660_300_000_000u64)).unwrap(),
            1_544_712_660_300_000_000
        );
        assert_eq!(at(u64_value, json!(null)).unwrap(), 0);
        assert_eq!(at(u64_value, json!(1e3)).unwrap(), 1000);
        assert_eq!(at(i64_value, json!("-7")).unwrap(), -7);
        assert!(at(u64_value, json!("-1")).is_err());
        assert!(at(u64_value, json!("soon")).unwrap_err().to_string().starts_with("x: "));
        assert!(at(u64_value, json!(1.5)).is_err());
        assert!(at(u32_value, json!(5_000_000_000u64)).is_err());
    }

    #[test]
    fn doubles_accept_special_strings() {
        assert!(at(f64_value, json!("NaN")).unwrap().is_nan());
        assert_eq!(at(f64_value, json!("Infinity")).unwrap(), f64::INFINITY);
        assert_eq!(at(f64_value, json!("-Infinity")).unwrap(), f64::NEG_INFINITY);
        assert_eq!(at(f64_value, json!("2.5")).unwrap(), 2.5);
        assert_eq!(at(f64_value, json!(3)).unwrap(), 3.0);
        assert!(at(f64_value, json!(true)).is_err());
    }

    #[test]
    fn ids_are_hex_of_the_right_length() {
        assert_eq!(at(|v, p| id(v, p, 8), json!("EEE19B7EC3C1B174")).unwrap().len(), 8);
        assert!(at(|v, p| id(v, p, 8), json!("eee19b")).is_err());
        assert!(at(|v, p| id(v, p, 8), json!("zzzzzzzzzzzzzzzz")).is_err());
        assert!(at(|v, p| id(v, p, 8), json!("")).unwrap().is_empty());
    }

    #[test]
    fn names_are_canonicalised() {
        assert_eq!(canonical_name("trace_id"), "traceId");
        assert_eq!(canonical_name("timeUnixNano"), "timeUnixNano");
        assert_eq!(canonical_name("start_time_unix_nano"), "startTimeUnixNano");
    }
}
