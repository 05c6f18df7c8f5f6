//! Semantic equality of two OTLP/JSON documents, for tests that compare what went in with what came
//! out: an absent field equals its default, 64-bit integers compare equal as strings or numbers,
//! and ids compare case-insensitively.

use serde_json::Value;

fn is_default(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "0",
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_default),
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            for (key, va) in ma {
                let child = format!("{path}.{key}");
                match mb.get(key) {
                    Some(vb) => compare(va, vb, &child)?,
                    None if is_default(va) => {}
                    None => return Err(format!("{child}: {va} is missing on the right")),
                }
            }
            for (key, vb) in mb {
                if !ma.contains_key(key) && !is_default(vb) {
                    return Err(format!("{path}.{key}: {vb} is missing on the left"));
                }
            }
            Ok(())
        }
        (Value::Array(xa), Value::Array(xb)) => {
            if xa.len() != xb.len() {
                return Err(format!(
                    "{path}: {} items on the left, {} on the right",
                    xa.len(),
                    xb.len()
                ));
            }
            for (i, (va, vb)) in xa.iter().zip(xb).enumerate() {
                compare(va, vb, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::String(sa), Value::String(sb)) if sa.eq_ignore_ascii_case(sb) => Ok(()),
        _ if is_default(a) && is_default(b) => Ok(()),
        _ => match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) if x == y => Ok(()),
            _ if a == b => Ok(()),
            _ => Err(format!("{path}: {a} on the left, {b} on the right")),
        },
    }
}

/// `Ok` when the two documents mean the same OTLP data; otherwise the path of the first difference.
pub fn equivalent(left: &Value, right: &Value) -> Result<(), String> {
    compare(left, right, "$")
}
