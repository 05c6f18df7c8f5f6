//! `status_code`: keeps traces with a span whose status is one of `status_codes`.

use std::time::Instant;

use sift_config::{StatusCodeConfig, StatusCodeName};
use sift_proto::otlp::trace::v1::status;

use super::{Evaluator, Verdict};
use crate::after_wal::tail_sampling::trace::Trace;

pub(super) struct StatusCode {
    codes: Vec<i32>,
}

impl StatusCode {
    pub(super) fn new(config: &StatusCodeConfig) -> StatusCode {
        let codes = config
            .status_codes
            .iter()
            .map(|code| match code {
                StatusCodeName::Ok => status::StatusCode::Ok as i32,
                StatusCodeName::Error => status::StatusCode::Error as i32,
                StatusCodeName::Unset => status::StatusCode::Unset as i32,
            })
            .collect();
        StatusCode { codes }
    }
}

impl Evaluator for StatusCode {
    fn evaluate(&self, trace: &Trace, _now: Instant) -> Verdict {
        let code_of =
            |s: &crate::after_wal::tail_sampling::trace::TraceSpan| s.span.status.as_ref().map_or(0, |st| st.code);
        Verdict::sampled_if(trace.spans.iter().any(|s| self.codes.contains(&code_of(s))))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{check, one, policy, trace, SpanSpec, ERROR, OK};
    use super::super::Verdict;

    #[test]
    fn keeps_traces_with_a_matching_status() {
        let p = policy(json!({"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}));
        let span = |status| SpanSpec {
            status,
            ..Default::default()
        };
        check(
            &p,
            &[
                (
                    "one error span among ok ones",
                    trace(&[span(OK), span(ERROR), span(0)]),
                    Verdict::Sampled,
                ),
                ("all ok", trace(&[span(OK), span(OK)]), Verdict::NotSampled),
                ("unset", one(span(0)), Verdict::NotSampled),
            ],
        );
        let unset =
            policy(json!({"name": "u", "type": "status_code", "status_code": {"status_codes": ["UNSET", "OK"]}}));
        check(
            &unset,
            &[
                ("unset", one(span(0)), Verdict::Sampled),
                ("error", one(span(ERROR)), Verdict::NotSampled),
            ],
        );
    }
}
