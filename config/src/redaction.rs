//! `processors.redaction`: the Collector's `redactionprocessor` settings, plus Sift's built-in
//! value patterns (`$credit_card`, `$email`, ...), validated once (every regex compiles, every
//! `$name` exists, `hmac_sha256` has a key).

use serde::Deserialize;

use crate::error::ConfigError;

/// How masked values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashFunction {
    /// Replace with `****`.
    #[default]
    None,
    /// Replace with the hex SHA-256 of the value (joinable, but guessable for small domains).
    Sha256,
    /// Replace with the hex HMAC-SHA-256 of the value under `hmac_key` (joinable, not reversible).
    HmacSha256,
}

/// What the processor records on each item it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Summary {
    /// Nothing.
    #[default]
    Silent,
    /// `redaction.masked.count`, `redaction.redacted.count`.
    Info,
    /// The counts and the keys (`redaction.masked.keys`, `redaction.redacted.keys`).
    Debug,
}

/// A built-in value pattern, usable as `$name` in `blocked_values`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinPattern {
    /// Payment card numbers (13–19 digits, optional spaces or dashes) that pass the Luhn check.
    CreditCard,
    /// E-mail addresses.
    Email,
    /// JSON Web Tokens (`eyJ...`.`eyJ...`.`...`).
    Jwt,
    /// `Bearer <token>` credentials.
    BearerToken,
    /// AWS access key ids (`AKIA...`, `ASIA...`).
    AwsAccessKey,
    /// IPv4 addresses.
    Ipv4,
    /// US social security numbers (`123-45-6789`, excluding impossible ones).
    UsSsn,
}

impl BuiltinPattern {
    /// Every built-in, for listing.
    pub const ALL: [BuiltinPattern; 7] = [
        BuiltinPattern::CreditCard,
        BuiltinPattern::Email,
        BuiltinPattern::Jwt,
        BuiltinPattern::BearerToken,
        BuiltinPattern::AwsAccessKey,
        BuiltinPattern::Ipv4,
        BuiltinPattern::UsSsn,
    ];

    /// The `$name` used in config.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinPattern::CreditCard => "$credit_card",
            BuiltinPattern::Email => "$email",
            BuiltinPattern::Jwt => "$jwt",
            BuiltinPattern::BearerToken => "$bearer_token",
            BuiltinPattern::AwsAccessKey => "$aws_access_key",
            BuiltinPattern::Ipv4 => "$ipv4",
            BuiltinPattern::UsSsn => "$us_ssn",
        }
    }

    /// The regular expression that finds candidates (a validator may still reject a candidate).
    pub fn regex(self) -> &'static str {
        match self {
            BuiltinPattern::CreditCard => r"(?-u:\b)\d(?:[ -]?\d){12,18}(?-u:\b)",
            BuiltinPattern::Email => {
                r"(?-u:\b)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?-u:\b)"
            }
            BuiltinPattern::Jwt => r"(?-u:\b)eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
            BuiltinPattern::BearerToken => r"(?i)(?-u:\b)bearer\s+[A-Za-z0-9._~+/=-]{8,}",
            BuiltinPattern::AwsAccessKey => r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
            BuiltinPattern::Ipv4 => {
                r"(?-u:\b)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?-u:\b)"
            }
            BuiltinPattern::UsSsn => r"(?-u:\b)\d{3}-\d{2}-\d{4}(?-u:\b)",
        }
    }

    /// Parses `$name`.
    pub fn parse(text: &str) -> Option<BuiltinPattern> {
        BuiltinPattern::ALL.into_iter().find(|p| p.name() == text)
    }
}

/// One entry of `blocked_values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePattern {
    /// `$name`.
    Builtin(BuiltinPattern),
    /// A regular expression (Rust `regex` syntax: linear time, no backtracking).
    Regex(String),
}

/// `processors.redaction` as written.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedactionConfig {
    allow_all_keys: Option<bool>,
    #[serde(default)]
    allowed_keys: Vec<String>,
    #[serde(default)]
    ignored_keys: Vec<String>,
    #[serde(default)]
    ignored_key_patterns: Vec<String>,
    #[serde(default)]
    blocked_key_patterns: Vec<String>,
    #[serde(default)]
    blocked_values: Vec<String>,
    #[serde(default)]
    allowed_values: Vec<String>,
    #[serde(default)]
    redact_all_types: bool,
    #[serde(default)]
    hash_function: HashFunction,
    hmac_key: Option<String>,
    #[serde(default)]
    summary: Summary,
}

/// `processors.redaction`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RedactionConfig {
    /// Keep every key (true unless `allowed_keys` is given and `allow_all_keys` is not true).
    pub allow_all_keys: bool,
    /// When `allow_all_keys` is false: the only keys kept; all others are removed (fail-closed).
    pub allowed_keys: Vec<String>,
    /// Keys never touched.
    pub ignored_keys: Vec<String>,
    /// Regexes of keys never touched.
    pub ignored_key_patterns: Vec<String>,
    /// Regexes of keys whose whole value is masked.
    pub blocked_key_patterns: Vec<String>,
    /// Patterns whose matches inside values are masked.
    pub blocked_values: Vec<ValuePattern>,
    /// Regexes of matches that are kept even though a blocked pattern found them.
    pub allowed_values: Vec<String>,
    /// Check non-string values too (rendered as text).
    pub redact_all_types: bool,
    /// How masked values are written.
    pub hash_function: HashFunction,
    /// Key for `hmac_sha256`.
    pub hmac_key: Option<String>,
    /// What is recorded on changed items.
    pub summary: Summary,
}

fn check_regexes(path: &str, field: &str, patterns: &[String], errors: &mut Vec<ConfigError>) {
    for (i, pattern) in patterns.iter().enumerate() {
        if let Err(e) = regex::Regex::new(pattern) {
            errors.push(ConfigError::new(
                format!("{path}.{field}[{i}]"),
                format!("invalid regex: {e}"),
            ));
        }
    }
}

impl RedactionConfig {
    /// Validates the raw settings found at `path`.
    pub(crate) fn validate(raw: RawRedactionConfig, path: &str) -> Result<RedactionConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        check_regexes(path, "ignored_key_patterns", &raw.ignored_key_patterns, &mut errors);
        check_regexes(path, "blocked_key_patterns", &raw.blocked_key_patterns, &mut errors);
        check_regexes(path, "allowed_values", &raw.allowed_values, &mut errors);
        let mut blocked_values = Vec::with_capacity(raw.blocked_values.len());
        for (i, value) in raw.blocked_values.iter().enumerate() {
            if value.starts_with('$') {
                match BuiltinPattern::parse(value) {
                    Some(builtin) => blocked_values.push(ValuePattern::Builtin(builtin)),
                    None => {
                        let known: Vec<&str> = BuiltinPattern::ALL.iter().map(|p| p.name()).collect();
                        errors.push(ConfigError::new(
                            format!("{path}.blocked_values[{i}]"),
                            format!("unknown built-in pattern {value:?} (known: {})", known.join(", ")),
                        ));
                    }
                }
            } else {
                match regex::Regex::new(value) {
                    Ok(_) => blocked_values.push(ValuePattern::Regex(value.clone())),
                    Err(e) => errors.push(ConfigError::new(
                        format!("{path}.blocked_values[{i}]"),
                        format!("invalid regex: {e}"),
                    )),
                }
            }
        }
        if raw.hash_function == HashFunction::HmacSha256 && raw.hmac_key.as_deref().is_none_or(str::is_empty) {
            errors.push(ConfigError::new(
                format!("{path}.hmac_key"),
                "hash_function hmac_sha256 needs a key (e.g. hmac_key: ${env:SIFT_REDACTION_KEY})",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RedactionConfig {
            allow_all_keys: raw.allow_all_keys.unwrap_or(raw.allowed_keys.is_empty()),
            allowed_keys: raw.allowed_keys,
            ignored_keys: raw.ignored_keys,
            ignored_key_patterns: raw.ignored_key_patterns,
            blocked_key_patterns: raw.blocked_key_patterns,
            blocked_values,
            allowed_values: raw.allowed_values,
            redact_all_types: raw.redact_all_types,
            hash_function: raw.hash_function,
            hmac_key: raw.hmac_key,
            summary: raw.summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_regex_compiles_and_parses_back() {
        for pattern in BuiltinPattern::ALL {
            regex::Regex::new(pattern.regex()).unwrap();
            assert_eq!(BuiltinPattern::parse(pattern.name()), Some(pattern));
        }
    }
}
