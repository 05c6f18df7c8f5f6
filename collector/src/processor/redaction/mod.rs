//! The `redaction` processor: Collector `redactionprocessor` semantics over every attribute list
//! of every signal (resource, scope, span, event, link, log record, data point, exemplar), plus
//! log bodies (string and structured) and nested values.
//!
//! Per key, in order: ignored keys are left alone; with an allow-list, keys not on it are removed;
//! keys matching `blocked_key_patterns` have their whole value masked; otherwise every match of
//! `blocked_values` inside the value is masked unless `allowed_values` matches it. All blocked
//! value patterns are compiled into one regex, so each value is scanned once (linear time, no
//! backtracking); only values that match are scanned again to locate and mask the matches.

mod builtin;
mod mask;

use std::collections::HashSet;

use regex::{Regex, RegexSet};
use sift_config::{BuiltinPattern, RedactionConfig, Summary, ValuePattern};
use sift_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sift_proto::Signal;

use crate::telemetry::Telemetry;
use mask::Masker;

/// What redaction did to one request (or one attribute list).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Values masked because their key is blocked.
    pub masked_keys: u64,
    /// Matches of blocked value patterns masked.
    pub masked_values: u64,
    /// Keys removed because they are not on the allow-list.
    pub removed_keys: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.masked_keys += other.masked_keys;
        self.masked_values += other.masked_values;
        self.removed_keys += other.removed_keys;
    }

    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.masked_keys + self.masked_values + self.removed_keys > 0
    }

    /// Adds the counts to `sift_redaction_applied_total{signal,kind}`.
    pub fn record(&self, signal: &str, telemetry: &Telemetry) {
        for (kind, n) in [
            ("masked_key", self.masked_keys),
            ("masked_value", self.masked_values),
            ("removed_key", self.removed_keys),
        ] {
            if n > 0 {
                telemetry.redaction_applied(signal, kind, n);
            }
        }
    }
}

/// What happened in one attribute list, for the summary attributes.
#[derive(Default)]
struct ListReport {
    counts: Counts,
    masked: Vec<String>,
    removed: Vec<String>,
}

/// The decision for one attribute key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyRule {
    /// Left alone (ignored keys, Sift's own summary attributes).
    Ignore,
    /// Not on the allow-list.
    Remove,
    /// A blocked key: the whole value is masked.
    MaskWhole,
    /// Look for blocked values inside.
    Scan,
}

/// Key decisions remembered for the length of one request: the same keys repeat on every span.
#[derive(Default)]
struct Memo {
    keys: std::collections::HashMap<String, KeyRule>,
}

/// Compiled redaction rules.
pub struct Redactor {
    allow_all_keys: bool,
    allowed_keys: HashSet<String>,
    ignored_keys: HashSet<String>,
    ignored_key_patterns: Option<RegexSet>,
    blocked_key_patterns: Option<RegexSet>,
    blocked_values: Option<Regex>,
    /// Per alternative of `blocked_values`: the built-in whose validator must accept a match.
    validators: Vec<Option<BuiltinPattern>>,
    allowed_values: Option<RegexSet>,
    redact_all_types: bool,
    masker: Masker,
    summary: Summary,
}

fn regex_set(patterns: &[String]) -> Option<RegexSet> {
    if patterns.is_empty() {
        return None;
    }
    // Validated when the config was loaded.
    RegexSet::new(patterns).ok()
}

/// Name of the capture group of the `i`th blocked value pattern.
fn group(i: usize) -> String {
    format!("sift_blocked_{i}")
}

impl Redactor {
    /// Compiles `config` (already validated: every regex compiles).
    pub fn new(config: &RedactionConfig) -> Redactor {
        let mut alternatives = Vec::with_capacity(config.blocked_values.len());
        let mut validators = Vec::with_capacity(config.blocked_values.len());
        for (i, pattern) in config.blocked_values.iter().enumerate() {
            let (source, validator) = match pattern {
                ValuePattern::Builtin(builtin) => (builtin.regex().to_owned(), Some(*builtin)),
                ValuePattern::Regex(source) => (source.clone(), None),
            };
            alternatives.push(format!("(?P<{}>{source})", group(i)));
            validators.push(validator);
        }
        let blocked_values = if alternatives.is_empty() {
            None
        } else {
            Regex::new(&alternatives.join("|")).ok()
        };
        Redactor {
            allow_all_keys: config.allow_all_keys,
            allowed_keys: config.allowed_keys.iter().cloned().collect(),
            ignored_keys: config.ignored_keys.iter().cloned().collect(),
            ignored_key_patterns: regex_set(&config.ignored_key_patterns),
            blocked_key_patterns: regex_set(&config.blocked_key_patterns),
            blocked_values,
            validators,
            allowed_values: regex_set(&config.allowed_values),
            redact_all_types: config.redact_all_types,
            masker: Masker::new(config.hash_function, config.hmac_key.as_deref()),
            summary: config.summary,
        }
    }

    /// Redacts every attribute list and log body of `request`.
    pub fn redact<S: Signal>(&self, request: &mut S::Request) -> Counts {
        let mut total = Counts::default();
        // The same keys repeat on every span of a request: decide each once.
        let mut memo = Memo::default();
        S::visit_log_bodies(request, &mut |body, attributes| {
            let mut report = ListReport::default();
            self.redact_value(body, "body", &mut memo, &mut report);
            total.add(&report.counts);
            self.summarize(attributes, &report);
        });
        S::visit_attributes(request, &mut |_site, attributes| {
            let mut report = ListReport::default();
            self.redact_list(attributes, &mut memo, &mut report);
            total.add(&report.counts);
            self.summarize(attributes, &report);
        });
        total
    }

    /// What happens to the values of `key`, whatever they are.
    fn key_rule(&self, key: &str) -> KeyRule {
        let ignored =
            self.ignored_keys.contains(key) || self.ignored_key_patterns.as_ref().is_some_and(|set| set.is_match(key));
        if key.starts_with("redaction.") || ignored {
            KeyRule::Ignore
        } else if !self.allow_all_keys && !self.allowed_keys.contains(key) {
            KeyRule::Remove
        } else if self.blocked_key_patterns.as_ref().is_some_and(|set| set.is_match(key)) {
            KeyRule::MaskWhole
        } else {
            KeyRule::Scan
        }
    }

    fn redact_list(&self, attributes: &mut Vec<KeyValue>, memo: &mut Memo, report: &mut ListReport) {
        attributes.retain_mut(|kv| {
            let rule = match memo.keys.get(&kv.key) {
                Some(rule) => *rule,
                None => {
                    let rule = self.key_rule(&kv.key);
                    memo.keys.insert(kv.key.clone(), rule);
                    rule
                }
            };
            match rule {
                KeyRule::Ignore => true,
                KeyRule::Remove => {
                    report.counts.removed_keys += 1;
                    report.removed.push(kv.key.clone());
                    false
                }
                KeyRule::MaskWhole => {
                    if let Some(value) = kv.value.as_mut().filter(|v| v.value.is_some()) {
                        let rendered = render(value);
                        value.value = Some(any_value::Value::StringValue(self.masker.mask(&rendered)));
                        report.counts.masked_keys += 1;
                        report.masked.push(kv.key.clone());
                    }
                    true
                }
                KeyRule::Scan => {
                    if let Some(value) = kv.value.as_mut() {
                        self.redact_value(value, &kv.key, memo, report);
                    }
                    true
                }
            }
        });
    }

    /// Masks blocked matches inside `value` (recursing into arrays and maps).
    fn redact_value(&self, value: &mut AnyValue, key: &str, memo: &mut Memo, report: &mut ListReport) {
        let masked_before = report.counts.masked_values;
        match value.value.as_mut() {
            None => {}
            Some(any_value::Value::StringValue(text)) => {
                if let Some((masked, n)) = self.mask_matches(text) {
                    *text = masked;
                    report.counts.masked_values += n;
                }
            }
            Some(any_value::Value::ArrayValue(array)) => {
                for item in &mut array.values {
                    self.redact_value(item, key, memo, report);
                }
            }
            Some(any_value::Value::KvlistValue(list)) => self.redact_list(&mut list.values, memo, report),
            Some(other) if self.redact_all_types => {
                let rendered = render(&AnyValue {
                    value: Some(other.clone()),
                });
                if let Some((masked, n)) = self.mask_matches(&rendered) {
                    *other = any_value::Value::StringValue(masked);
                    report.counts.masked_values += n;
                }
            }
            Some(_) => {}
        }
        if report.counts.masked_values > masked_before && !report.masked.iter().any(|k| k == key) {
            report.masked.push(key.to_owned());
        }
    }

    /// The text with every blocked, validated, not-allowed match masked, and how many; `None`
    /// when nothing is masked (the common case costs one scan).
    fn mask_matches(&self, text: &str) -> Option<(String, u64)> {
        let regex = self.blocked_values.as_ref()?;
        if !regex.is_match(text) {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut masked = 0;
        for captures in regex.captures_iter(text) {
            let Some(whole) = captures.get(0) else { continue };
            let which = (0..self.validators.len()).find(|i| captures.name(&group(*i)).is_some());
            let validator = which.and_then(|i| self.validators[i]);
            if validator.is_some_and(|builtin| !builtin::accepts(builtin, whole.as_str())) {
                continue;
            }
            if self
                .allowed_values
                .as_ref()
                .is_some_and(|set| set.is_match(whole.as_str()))
            {
                continue;
            }
            out.push_str(&text[last..whole.start()]);
            out.push_str(&self.masker.mask(whole.as_str()));
            last = whole.end();
            masked += 1;
        }
        if masked == 0 {
            return None;
        }
        out.push_str(&text[last..]);
        Some((out, masked))
    }

    /// Adds (or updates) the summary attributes on an item that was changed.
    fn summarize(&self, attributes: &mut Vec<KeyValue>, report: &ListReport) {
        if self.summary == Summary::Silent || !report.counts.changed() {
            return;
        }
        let masked = report.counts.masked_keys + report.counts.masked_values;
        add_count(attributes, "redaction.masked.count", masked);
        add_count(attributes, "redaction.redacted.count", report.counts.removed_keys);
        if self.summary == Summary::Debug {
            add_keys(attributes, "redaction.masked.keys", &report.masked);
            add_keys(attributes, "redaction.redacted.keys", &report.removed);
        }
    }
}

fn add_count(attributes: &mut Vec<KeyValue>, key: &str, n: u64) {
    if n == 0 {
        return;
    }
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    for kv in attributes.iter_mut() {
        if kv.key == key {
            if let Some(AnyValue {
                value: Some(any_value::Value::IntValue(existing)),
            }) = kv.value.as_mut()
            {
                *existing += n;
                return;
            }
        }
    }
    attributes.push(KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(n)),
        }),
        ..Default::default()
    });
}

fn add_keys(attributes: &mut Vec<KeyValue>, key: &str, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let mut all: Vec<String> = keys.to_vec();
    if let Some(existing) = attributes.iter().position(|kv| kv.key == key) {
        if let Some(AnyValue {
            value: Some(any_value::Value::StringValue(text)),
        }) = &attributes[existing].value
        {
            all.extend(text.split(',').map(str::to_owned));
        }
        attributes.remove(existing);
    }
    all.sort();
    all.dedup();
    attributes.push(KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(all.join(","))),
        }),
        ..Default::default()
    });
}

/// A value as text, for masking whole values and checking non-string ones.
fn render(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(_) => sift_proto::json::encode_any_value(value).to_string(),
    }
}

#[cfg(test)]
mod tests;
