//! `file`: OTLP/JSON lines, one export request per line, like the Collector's file exporter.
//! Without a `path`, each signal goes to `<data-dir>/export/<signal>.jsonl`. Files rotate by size
//! (`<stem>-<unix-millis>.jsonl`), keeping `max_backups`. Each batch is flushed and synced before
//! the exporter returns, i.e. before its WAL checkpoint moves.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sift_config::FileExporterConfig;
use sift_proto::{protobuf_to_json, SignalKind};
use sift_wal::WalEntry;

use super::{Delivery, ExportError, ExportFuture, Exporter};

struct Output {
    path: PathBuf,
    writer: BufWriter<File>,
    size: u64,
}

pub(super) struct FileExporter {
    fixed_path: Option<PathBuf>,
    default_dir: PathBuf,
    max_bytes: u64,
    max_backups: u32,
    outputs: Vec<Output>,
}

impl FileExporter {
    pub(super) fn new(config: &FileExporterConfig, data_dir: &Path) -> Self {
        FileExporter {
            fixed_path: config.path.clone(),
            default_dir: data_dir.join("export"),
            max_bytes: config.rotation.max_megabytes.saturating_mul(1 << 20),
            max_backups: config.rotation.max_backups,
            outputs: Vec::new(),
        }
    }

    fn path_for(&self, signal: SignalKind) -> PathBuf {
        match &self.fixed_path {
            Some(path) => path.clone(),
            None => self.default_dir.join(format!("{}.jsonl", signal.as_str())),
        }
    }

    fn output(&mut self, path: PathBuf) -> std::io::Result<&mut Output> {
        if let Some(i) = self.outputs.iter().position(|o| o.path == path) {
            return Ok(&mut self.outputs[i]);
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        cut_torn_line(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        self.outputs.push(Output {
            path,
            writer: BufWriter::with_capacity(1 << 20, file),
            size,
        });
        Ok(self.outputs.last_mut().expect("just pushed"))
    }

    fn write(&mut self, batch: &[WalEntry]) -> Result<(), ExportError> {
        let io = |e: std::io::Error| ExportError::retryable(format!("file exporter: {e}"));
        let mut line = String::with_capacity(64 << 10);
        let (max_bytes, max_backups) = (self.max_bytes, self.max_backups);
        for entry in batch {
            line.clear();
            protobuf_to_json(entry.signal, &entry.body, &mut line)
                .map_err(|e| ExportError::Permanent(format!("undecodable {} entry: {e}", entry.signal)))?;
            line.push('\n');
            let path = self.path_for(entry.signal);
            let output = self.output(path).map_err(io)?;
            if output.size > 0 && output.size + line.len() as u64 > max_bytes {
                rotate(output, max_backups).map_err(io)?;
            }
            output.writer.write_all(line.as_bytes()).map_err(io)?;
            output.size += line.len() as u64;
        }
        for output in &mut self.outputs {
            output.writer.flush().map_err(io)?;
            sync(output.writer.get_ref()).map_err(io)?;
        }
        Ok(())
    }
}

/// Cuts a regular file back to its last complete line: a crash in the middle
/// of a batch leaves part of a line, and the batch (never checkpointed) is written again whole, so
/// appending to the torn line would join two lines into one that is not JSON.
fn cut_torn_line(path: &Path) -> std::io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    // Only regular files: the path may be a FIFO or a terminal, which must not be opened for reading.
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    let size = meta.len();
    if !meta.is_file() || size == 0 {
        return Ok(());
    }
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut reader = &file;
    let mut at = size;
    let mut chunk = vec![0u8; 64 << 10];
    while at > 0 {
        let len = chunk.len().min(at as usize);
        reader.seek(SeekFrom::Start(at - len as u64))?;
        reader.read_exact(&mut chunk[..len])?;
        if let Some(i) = chunk[..len].iter().rposition(|&b| b == b'\n') {
            at = at - len as u64 + i as u64 + 1;
            break;
        }
        at -= len as u64;
    }
    if at < size {
        tracing::warn!(
            bytes = size - at,
            "file exporter: cutting a line left unfinished by a crash"
        );
        file.set_len(at)?;
        file.sync_data()?;
    }
    Ok(())
}

/// fsync, except for files that cannot be synced (a FIFO, `/dev/stdout`): those fail with EINVAL.
fn sync(file: &File) -> std::io::Result<()> {
    match file.sync_data() {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

/// Moves the current file aside under a timestamped name, reopens it empty, prunes old backups.
fn rotate(output: &mut Output, max_backups: u32) -> std::io::Result<()> {
    output.writer.flush()?;
    sync(output.writer.get_ref())?;
    let stem = output
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "jsonl".into());
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = output.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut backup = dir.join(format!("{stem}-{millis}.{ext}"));
    let mut n = 1;
    while backup.exists() {
        backup = dir.join(format!("{stem}-{millis}-{n}.{ext}"));
        n += 1;
    }
    fs::rename(&output.path, &backup)?;
    let file = OpenOptions::new().create(true).append(true).open(&output.path)?;
    output.writer = BufWriter::with_capacity(1 << 20, file);
    output.size = 0;
    let prefix = format!("{stem}-");
    let mut backups: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p != &output.path)
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy()[prefix.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    backups.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    while backups.len() > max_backups as usize {
        fs::remove_file(backups.remove(0))?;
    }
    Ok(())
}

impl Exporter for FileExporter {
    fn export<'a>(&'a mut self, batch: &'a [WalEntry]) -> ExportFuture<'a> {
        // File I/O blocks (the path may even be a FIFO nobody reads): keep it off the async workers.
        Box::pin(async move { tokio::task::block_in_place(|| self.write(batch)).map(|()| Delivery::default()) })
    }
}

#[cfg(test)]
mod tests {
    use sift_config::Rotation;
    use sift_proto::Signal;

    use super::*;

    fn entry(n: usize) -> WalEntry {
        let json = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{}"}}}}]}}]}}]}}"#,
            "x".repeat(n)
        );
        let request = sift_proto::Logs::decode_json(json.as_bytes()).unwrap();
        WalEntry {
            kind: sift_wal::EntryKind::Received,
            signal: SignalKind::Logs,
            pipeline: "logs".into(),
            items: 1,
            body: prost::Message::encode_to_vec(&request).into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn writes_lines_and_rotates_keeping_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileExporterConfig {
            path: Some(dir.path().join("out.jsonl")),
            rotation: Rotation {
                max_megabytes: 1,
                max_backups: 2,
            },
        };
        let mut exporter = FileExporter::new(&config, dir.path());
        let big = entry(300 << 10);
        for _ in 0..8 {
            exporter.export(std::slice::from_ref(&big)).await.unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"out.jsonl".to_owned()));
        let text = fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value["resourceLogs"].is_array());
        }
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_removed_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let config = FileExporterConfig {
            path: Some(path.clone()),
            ..FileExporterConfig::default()
        };
        let mut exporter = FileExporter::new(&config, dir.path());
        exporter.write(&[entry(1)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{\"a\":1}");
        assert_eq!(lines.len(), 2, "{text}");
        serde_json::from_str::<serde_json::Value>(lines[1]).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn default_paths_are_per_signal_under_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut exporter = FileExporter::new(&FileExporterConfig::default(), dir.path());
        exporter.export(&[entry(3)]).await.unwrap();
        let text = fs::read_to_string(dir.path().join("export/logs.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"stringValue\":\"xxx\""));
    }
}
