//! A real `sift` process for end-to-end tests: started from the built binary with a config whose
//! endpoints use port 0, its actual addresses read from its JSON log, stopped with real signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SIFT: &str = env!("CARGO_BIN_EXE_sift");

/// A config with the OTLP receiver on both protocols, port 0 everywhere, and `exporters`
/// (YAML map body) used by all three pipelines as `names`.
pub fn config(exporters: &str, names: &str, extra: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{ endpoint: 127.0.0.1:0 }}\n      http: {{ endpoint: 127.0.0.1:0 }}\n\
         exporters:\n{exporters}\n\
         service:\n  pipelines:\n\
         \x20   traces: {{ receivers: [otlp], exporters: [{names}] }}\n\
         \x20   logs: {{ receivers: [otlp], exporters: [{names}] }}\n\
         \x20   metrics: {{ receivers: [otlp], exporters: [{names}] }}\n\
         query:\n  endpoint: 127.0.0.1:0\n{extra}\n"
    )
}

/// The default test config: everything to the `file` exporter.
pub fn file_config() -> String {
    config("  file: {}", "file", "")
}

pub struct Sift {
    child: Option<Child>,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    config_path: PathBuf,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub query: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Sift {
    /// Starts sift with `config` in a fresh temporary data directory.
    pub fn start(config: &str) -> Sift {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().to_path_buf();
        let mut sift = Sift::start_in(&dir, config);
        sift._temp = Some(temp);
        sift
    }

    /// Starts sift with `config` on the data directory `dir` (kept by the caller).
    pub fn start_in(dir: &Path, config: &str) -> Sift {
        let config_path = dir.join("sift-test.yaml");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&config_path, config).unwrap();
        let mut sift = Sift {
            child: None,
            dir: dir.to_path_buf(),
            _temp: None,
            config_path,
            grpc: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            query: "0.0.0.0:0".parse().unwrap(),
            logs: Arc::new(Mutex::new(Vec::new())),
        };
        sift.spawn();
        sift
    }

    fn spawn(&mut self) {
        let mut child = Command::new(SIFT)
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&self.config_path)
            .arg("--data-dir")
            .arg(&self.dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sift");
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    let _ = ready_tx.send(event);
                }
                logs.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let event = match ready_rx.recv_timeout(remaining) {
                Ok(event) => event,
                Err(_) => panic!("sift did not become ready; log:\n{}", self.log_text()),
            };
            let message = event["message"].as_str().unwrap_or("");
            if message == "listening" {
                let address: SocketAddr = event["address"].as_str().unwrap().parse().unwrap();
                match event["component"].as_str().unwrap_or("") {
                    "query" => self.query = address,
                    c if c.ends_with("/grpc") => self.grpc = address,
                    c if c.ends_with("/http") => self.http = address,
                    _ => {}
                }
            }
            if message == "sift is ready" {
                break;
            }
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sift did not exit after SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same data directory and config.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    /// POSTs a protobuf-encoded OTLP request to `path` (e.g. `/v1/traces`) of the HTTP receiver.
    pub fn post_protobuf(
        &self,
        client: &reqwest::blocking::Client,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::blocking::Response {
        client
            .post(self.http_url(path))
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .unwrap()
    }

    /// Sends telemetry with the OpenTelemetry Python SDK over `protocol` (`grpc` or `http`),
    /// `args` passed on to `send_telemetry.py`; asserts every export succeeded and returns the
    /// spans, log records and data points the SDK exported.
    pub fn send_with_sdk(&self, protocol: &str, args: &[String]) -> [u64; 3] {
        let sent = self.sdk_report(protocol, args);
        ["spans", "logs", "points"].map(|k| sent[k].as_u64().unwrap())
    }

    /// Like [`Sift::send_with_sdk`], returning the script's whole report (counts and trace ids).
    pub fn sdk_report(&self, protocol: &str, args: &[String]) -> Value {
        let endpoint = if protocol == "grpc" {
            self.grpc_url()
        } else {
            self.http_url("")
        };
        let mut all = vec![
            "--protocol".to_owned(),
            protocol.to_owned(),
            "--endpoint".to_owned(),
            endpoint,
        ];
        all.extend_from_slice(args);
        let sent = run_python("send_telemetry.py", &all);
        assert_eq!(sent["failed_exports"], 0, "{protocol} {args:?}: {sent}");
        sent
    }

    /// GETs a query API path; returns the status and the JSON body.
    pub fn query(&self, path_and_query: &str) -> (u16, Value) {
        let response = reqwest::blocking::get(self.query_url(path_and_query)).unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.query)
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The value of one sample of Sift's own metrics (0 when absent), e.g.
    /// `sift_receiver_accepted_total{signal="traces",protocol="http"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = reqwest::blocking::get(self.query_url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// `/api/v1/services` as service → (stored spans, stored log records).
    pub fn service_counts(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        let (status, body) = self.query("/api/v1/services");
        assert_eq!(status, 200, "{body}");
        body["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    (s["span_count"].as_u64().unwrap(), s["log_count"].as_u64().unwrap()),
                )
            })
            .collect()
    }

    /// Every JSON line the file exporter wrote for `signal` under the default path.
    pub fn exported(&self, signal: &str) -> Vec<Value> {
        read_lines(&self.dir.join("export").join(format!("{signal}.jsonl")))
    }
}

impl Drop for Sift {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn read_lines(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    // The exporter may be writing right now: only lines that end in a newline are complete.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line in {}: {e}", path.display())))
        .collect()
}

/// Items in OTLP/JSON requests: spans, log records or data points.
pub fn count_items(requests: &[Value], signal: &str) -> usize {
    let mut n = 0;
    for request in requests {
        match signal {
            "traces" => each(request, &["resourceSpans", "scopeSpans", "spans"], &mut |_| n += 1),
            "logs" => each(request, &["resourceLogs", "scopeLogs", "logRecords"], &mut |_| n += 1),
            _ => each(
                request,
                &["resourceMetrics", "scopeMetrics", "metrics"],
                &mut |metric| {
                    for kind in ["gauge", "sum", "histogram", "exponentialHistogram", "summary"] {
                        n += metric[kind]["dataPoints"].as_array().map_or(0, Vec::len);
                    }
                },
            ),
        }
    }
    n
}

/// Calls `f` on every element found by following `path` through nested arrays.
pub fn each(value: &Value, path: &[&str], f: &mut dyn FnMut(&Value)) {
    match path.split_first() {
        None => f(value),
        Some((key, rest)) => {
            for item in value[*key].as_array().into_iter().flatten() {
                each(item, rest, f);
            }
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// The Python interpreter of the test venv (made by `.ci/run`).
pub fn python() -> PathBuf {
    if let Ok(path) = std::env::var("SIFT_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "the OpenTelemetry Python SDK venv is missing: run .ci/run once (or set SIFT_TEST_PYTHON)"
    );
    venv
}

/// Runs `collector/tests/python/<script>` with `args`, returning its JSON output.
pub fn run_python(script: &str, args: &[String]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let output = Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}"))
}

/// Resident memory of a process in bytes (VmRSS) and its peak (VmHWM).
pub fn memory_of(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}
