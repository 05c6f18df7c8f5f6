//! `${env:NAME}` expansion in every string of the document, before typing, as the Collector does.
//! `${env:NAME:-default}` supplies a default; `$$` is a literal `$`. An unset variable without a
//! default is an error naming where it was used.

use serde_json::Value;

use crate::error::{join, ConfigError};

/// Expands environment references in all strings of `value`, using `lookup` to read variables.
pub(crate) fn expand(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(text) => match expand_str(text, lookup) {
            Ok(Some(expanded)) => *text = expanded,
            Ok(None) => {}
            Err(message) => errors.push(ConfigError::new(path, message)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(item, &join(path, &format!("[{i}]")), lookup, errors);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                expand(item, &join(path, key), lookup, errors);
            }
        }
        _ => {}
    }
}

/// `Ok(None)` when the string has no reference (the common case, no allocation).
fn expand_str(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if !text.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${env:") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated ${{env:...}} in {text:?}"))?;
            let reference = &after[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            match (lookup(name), default) {
                (Some(found), _) => out.push_str(&found),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn expands_references_defaults_and_escapes() {
        let mut doc = json!({"a": {"b": ["x-${env:KEY}-y", "${env:MISSING:-fallback}", "$$5", "plain $ sign"]}});
        let mut errors = Vec::new();
        expand(&mut doc, "", &lookup, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            doc,
            json!({"a": {"b": ["x-s3cr3t-y", "fallback", "$5", "plain $ sign"]}})
        );
    }

    #[test]
    fn unset_variable_names_the_path() {
        let mut doc = json!({"exporters": {"otlp/x": {"headers": {"k": "${env:MISSING}"}}}});
        let mut errors = Vec::new();
        expand(&mut doc, "", &lookup, &mut errors);
        assert_eq!(errors[0].path, "exporters.otlp/x.headers.k");
        assert!(errors[0].message.contains("MISSING"));
    }
}
