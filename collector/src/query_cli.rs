//! `sift query`: the query API from the command line. Human-readable by default (a trace is an
//! indented span tree with durations and its logs under the span that wrote them); `--json`
//! prints the API's response as is.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::{Args, Subcommand};
use serde_json::Value;

/// `sift query ...`.
#[derive(Args)]
pub struct QueryArgs {
    #[command(subcommand)]
    what: What,
    /// The query API (SPEC §4).
    #[arg(long, global = true, default_value = "http://127.0.0.1:3200")]
    server: String,
    /// Print the raw JSON response.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum What {
    /// One trace with its logs and exemplars.
    Trace {
        /// Trace id (32 hex digits).
        id: String,
    },
    /// Search traces, newest first.
    Traces {
        /// Full-text over spans: names, status messages, events, attributes.
        #[arg(long)]
        query: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// ok, error or unset.
        #[arg(long)]
        status: Option<String>,
        /// e.g. 250ms.
        #[arg(long)]
        min_duration: Option<String>,
        #[arg(long)]
        max_duration: Option<String>,
        /// key:value on span or resource attributes (repeatable).
        #[arg(long)]
        attr: Vec<String>,
        #[command(flatten)]
        window: Window,
    },
    /// Full-text log search, newest first.
    Logs {
        /// Words, "phrases", field:value, AND/OR/NOT.
        query: Option<String>,
        #[arg(long)]
        service: Option<String>,
        /// A severity name or number, e.g. warn.
        #[arg(long)]
        severity_min: Option<String>,
        #[arg(long)]
        trace_id: Option<String>,
        #[command(flatten)]
        window: Window,
    },
    /// A metric's series.
    Metrics {
        /// The metric's name.
        name: String,
        /// key:value label matcher (repeatable).
        #[arg(long = "match")]
        matchers: Vec<String>,
        /// e.g. 1m.
        #[arg(long)]
        step: Option<String>,
        /// sum, avg, min, max, rate, p50, p90, p95, p99.
        #[arg(long)]
        agg: Option<String>,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
    },
}

#[derive(Args)]
struct Window {
    /// RFC 3339 or Unix seconds.
    #[arg(long)]
    start: Option<String>,
    #[arg(long)]
    end: Option<String>,
    #[arg(long)]
    limit: Option<u32>,
}

impl Window {
    fn push(&self, params: &mut Vec<(&'static str, String)>) {
        opt(params, "start", &self.start);
        opt(params, "end", &self.end);
        opt(params, "limit", &self.limit.map(|l| l.to_string()));
    }
}

fn opt(params: &mut Vec<(&'static str, String)>, name: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        params.push((name, v.clone()));
    }
}

/// Runs the query; the error is what to print (the API's message when it answered).
pub fn run(args: QueryArgs) -> Result<String, String> {
    let mut params: Vec<(&'static str, String)> = Vec::new();
    let path = match &args.what {
        What::Trace { id } => format!("/api/v1/traces/{id}"),
        What::Traces {
            query,
            service,
            name,
            status,
            min_duration,
            max_duration,
            attr,
            window,
        } => {
            opt(&mut params, "q", query);
            opt(&mut params, "service", service);
            opt(&mut params, "name", name);
            opt(&mut params, "status", status);
            opt(&mut params, "min_duration", min_duration);
            opt(&mut params, "max_duration", max_duration);
            params.extend(attr.iter().map(|a| ("attr", a.clone())));
            window.push(&mut params);
            "/api/v1/traces".into()
        }
        What::Logs {
            query,
            service,
            severity_min,
            trace_id,
            window,
        } => {
            opt(&mut params, "q", query);
            opt(&mut params, "service", service);
            opt(&mut params, "severity_min", severity_min);
            opt(&mut params, "trace_id", trace_id);
            window.push(&mut params);
            "/api/v1/logs".into()
        }
        What::Metrics {
            name,
            matchers,
            step,
            agg,
            start,
            end,
        } => {
            params.push(("name", name.clone()));
            params.extend(matchers.iter().map(|m| ("match", m.clone())));
            opt(&mut params, "step", step);
            opt(&mut params, "agg", agg);
            opt(&mut params, "start", start);
            opt(&mut params, "end", end);
            "/api/v1/metrics".into()
        }
    };
    let url = format!("{}{path}", args.server.trim_end_matches('/'));
    let response = reqwest::blocking::Client::new()
        .get(&url)
        .query(&params)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .map_err(|e| format!("cannot reach {}: {e}", args.server))?;
    let status = response.status();
    let body: Value = response
        .json()
        .map_err(|e| format!("{url}: the answer is not JSON ({status}): {e}"))?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        return Err(format!("{status}: {message}"));
    }
    if args.json {
        return Ok(serde_json::to_string_pretty(&body).unwrap_or_default());
    }
    Ok(match args.what {
        What::Trace { .. } => trace(&body),
        What::Traces { .. } => traces(&body),
        What::Logs { .. } => logs(&body),
        What::Metrics { .. } => metrics(&body),
    })
}

fn nanos(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or(0)
}

/// `2026-11-25T20:28:59.900Z`.
fn time(t: u64) -> String {
    let secs = t / 1_000_000_000;
    let (year, month, day) = sift_proto::civil::civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        t / 1_000_000 % 1000
    )
}

fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn trace(body: &Value) -> String {
    let mut out = String::new();
    let s = &body["summary"];
    let _ = writeln!(
        out,
        "trace {}  {} {}  {}  {} spans, {} errors  ({})",
        text(&body["trace_id"]),
        text(&s["root_service"]),
        text(&s["root_name"]),
        duration(s["duration_ns"].as_u64().unwrap_or(0)),
        s["span_count"],
        s["error_count"],
        time(nanos(&s["start_time_unix_nano"])),
    );
    if let Some(sampling) = body["sampling"].as_object() {
        let _ = writeln!(
            out,
            "sampling: {} by {}",
            text(&sampling["decision"]),
            text(&sampling["policy"])
        );
    }
    let spans = body["spans"].as_array().cloned().unwrap_or_default();
    let mut children: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let ids: std::collections::HashSet<String> = spans.iter().map(|s| text(&s["span_id"])).collect();
    for span in &spans {
        let parent = text(&span["parent_span_id"]);
        let parent = if ids.contains(&parent) { parent } else { String::new() };
        children.entry(parent).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| nanos(&s["start_time_unix_nano"]));
    }
    let mut logs_by_span: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let logs = body["logs"].as_array().cloned().unwrap_or_default();
    for log in &logs {
        logs_by_span.entry(text(&log["span_id"])).or_default().push(log);
    }
    let start = nanos(&s["start_time_unix_nano"]);
    fn walk(
        out: &mut String,
        id: &str,
        depth: usize,
        children: &BTreeMap<String, Vec<&Value>>,
        logs: &BTreeMap<String, Vec<&Value>>,
        start: u64,
    ) {
        for span in children.get(id).map(Vec::as_slice).unwrap_or_default() {
            let indent = "  ".repeat(depth);
            let status = &span["status"];
            let error = if status["code"] == "ERROR" {
                format!("  ERROR {}", text(&status["message"]))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{indent}├─ {} ({}) {} +{}{error}",
                text(&span["name"]),
                text(&span["service_name"]),
                duration(span["duration_ns"].as_u64().unwrap_or(0)),
                duration(nanos(&span["start_time_unix_nano"]).saturating_sub(start)),
            );
            let span_id = text(&span["span_id"]);
            for log in logs.get(&span_id).map(Vec::as_slice).unwrap_or_default() {
                let _ = writeln!(
                    out,
                    "{indent}│    {} {} {}",
                    time(nanos(&log["time_unix_nano"])),
                    text(&log["severity_text"]),
                    text(&log["body"]),
                );
            }
            walk(out, &span_id, depth + 1, children, logs, start);
        }
    }
    walk(&mut out, "", 0, &children, &logs_by_span, start);
    let orphans: Vec<&&Value> = logs_by_span
        .iter()
        .filter(|(span, _)| !ids.contains(*span))
        .flat_map(|(_, l)| l)
        .collect();
    if !orphans.is_empty() {
        let _ = writeln!(out, "logs without a stored span:");
        for log in orphans {
            let _ = writeln!(
                out,
                "  {} {} {}",
                time(nanos(&log["time_unix_nano"])),
                text(&log["severity_text"]),
                text(&log["body"])
            );
        }
    }
    if let Some(exemplars) = body["exemplars"].as_array().filter(|e| !e.is_empty()) {
        let _ = writeln!(out, "exemplars:");
        for e in exemplars {
            let _ = writeln!(
                out,
                "  {} = {} (span {})",
                text(&e["metric"]),
                e["value"],
                text(&e["span_id"])
            );
        }
    }
    out
}

fn traces(body: &Value) -> String {
    let mut out = String::new();
    for t in body["traces"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(
            out,
            "{}  {}  {:>9}  {:>3} spans  {:>2} errors  {} {}",
            time(nanos(&t["start_time_unix_nano"])),
            text(&t["trace_id"]),
            duration(t["duration_ns"].as_u64().unwrap_or(0)),
            t["span_count"],
            t["error_count"],
            text(&t["root_service"]),
            text(&t["root_name"]),
        );
    }
    if body["partial"] == true {
        out.push_str("(partial: the scan budget ran out; narrow the time range)\n");
    }
    out
}

fn logs(body: &Value) -> String {
    let mut out = String::new();
    for l in body["logs"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(
            out,
            "{} {:<5} {} {}{}",
            time(nanos(&l["time_unix_nano"])),
            text(&l["severity_text"]),
            text(&l["service_name"]),
            text(&l["body"]),
            match l["trace_id"].as_str() {
                Some(t) if !t.is_empty() => format!("  trace={t}"),
                _ => String::new(),
            }
        );
    }
    out
}

fn metrics(body: &Value) -> String {
    let mut out = String::new();
    for s in body["series"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(out, "{}", s["labels"]);
        for p in s["points"].as_array().cloned().unwrap_or_default() {
            let _ = writeln!(out, "  {} {}", time(p[0].as_u64().unwrap_or(0) * 1_000_000_000), p[1]);
        }
    }
    out
}
