//! `--jsonl FILE`: one JSON object per published snapshot (each second),
//! the bounded figures of [`Figures`], flushed at once so a reader (a log
//! shipper, `tail -f`) sees each line as it is written.

use std::{
    fs::File,
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::sync::watch;

use super::metrics::Figures;
use crate::model::Snapshot;

/// A JSON lines file being written.
pub struct JsonLines {
    path: PathBuf,
    file: File,
    expose_keys: bool,
}

impl JsonLines {
    /// Creates (truncates) the file; keys are hashed unless `expose_keys`.
    pub fn create(path: &Path, expose_keys: bool) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: File::create(path)?,
            expose_keys,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one snapshot as a line and flushes it.
    pub fn write(&mut self, snapshot: &Snapshot) -> io::Result<()> {
        let line = serde_json::to_string(&Figures::of(snapshot, self.expose_keys))
            .map_err(io::Error::other)?;
        writeln!(self.file, "{line}")?;
        self.file.flush()
    }

    /// Writes every snapshot published on `snapshots` until the channel
    /// closes.
    pub async fn follow(mut self, mut snapshots: watch::Receiver<Arc<Snapshot>>) -> io::Result<()> {
        while snapshots.changed().await.is_ok() {
            let snapshot = snapshots.borrow_and_update().clone();
            self.write(&snapshot)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_line_per_published_snapshot() {
        let path =
            std::env::temp_dir().join(format!("mapwatch-jsonl-{}.jsonl", std::process::id()));
        let lines = JsonLines::create(&path, false).unwrap();
        let (tx, rx) = watch::channel(Arc::new(crate::view::sample_snapshot()));
        let writer = tokio::spawn(lines.follow(rx));
        for elapsed in [1.0, 2.0] {
            let mut snapshot = crate::view::sample_snapshot();
            snapshot.duration_seconds = elapsed;
            tx.send_replace(Arc::new(snapshot));
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(tx);
        writer.await.unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[1]["elapsed_seconds"], 2.0);
        assert_eq!(lines[0]["locks"][0]["lock"], "main.hotMu");
        assert_eq!(lines[0]["pid"], 7);
        assert!(lines[0]["maps"][0]["hot_keys"][0][0]
            .as_str()
            .unwrap()
            .starts_with("h:"));
    }
}
