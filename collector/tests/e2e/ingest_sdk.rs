//! The real OpenTelemetry Python SDK exporters against a running Sift.

use std::time::Duration;

use crate::common::{count_items, eventually, file_config, Sift};

#[test]
fn python_sdk_exports_all_signals_over_grpc_and_http_and_every_item_arrives() {
    let sift = Sift::start(&file_config());
    let runs = [("grpc", "none"), ("http", "none"), ("grpc", "gzip"), ("http", "gzip")];
    let mut expected = [0u64; 3];
    let mut per_protocol = std::collections::HashMap::new();
    for (protocol, compression) in runs {
        let args = ["--traces", "25", "--logs-per-span", "2", "--compression", compression].map(String::from);
        let counts = sift.send_with_sdk(protocol, &args);
        assert_eq!(counts[0], 50, "two spans per trace");
        assert_eq!(counts[1], 50, "two logs per trace");
        assert!(counts[2] >= 4, "{counts:?}");
        for (i, n) in counts.iter().enumerate() {
            expected[i] += n;
            *per_protocol.entry((protocol, i)).or_insert(0u64) += n;
        }
    }
    let signals = ["traces", "logs", "metrics"];
    for (i, signal) in signals.iter().enumerate() {
        let arrived = eventually(Duration::from_secs(20), || {
            count_items(&sift.exported(signal), signal) as u64 >= expected[i]
        });
        assert!(arrived, "{signal}: expected {} items in the file", expected[i]);
        assert_eq!(
            count_items(&sift.exported(signal), signal) as u64,
            expected[i],
            "{signal}: no more, no less"
        );
        for protocol in ["grpc", "http"] {
            let accepted = sift.metric(&format!(
                "sift_receiver_accepted_total{{signal=\"{signal}\",protocol=\"{protocol}\"}}"
            ));
            assert_eq!(
                accepted as u64,
                per_protocol[&(protocol, i)],
                "{signal} over {protocol}"
            );
        }
        // The file is written before the exporter returns and the counter moves: allow a moment.
        let sample = format!("sift_exporter_sent_total{{exporter=\"file\",signal=\"{signal}\"}}");
        let counted = eventually(Duration::from_secs(5), || sift.metric(&sample) as u64 == expected[i]);
        assert!(counted, "{signal} exported: {}", sift.metric(&sample));
    }
    // Logs written inside spans carry their trace and span ids.
    let logs = sift.exported("logs");
    let mut with_trace = 0;
    crate::common::each(&logs[0], &["resourceLogs", "scopeLogs", "logRecords"], &mut |log| {
        if log["traceId"].as_str().is_some_and(|t| t.len() == 32)
            && log["spanId"].as_str().is_some_and(|s| s.len() == 16)
        {
            with_trace += 1;
        }
    });
    assert!(with_trace > 0);
}
