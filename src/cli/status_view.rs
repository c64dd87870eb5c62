//! What `run` and `demo` show: a live per-camera table on a terminal, log lines elsewhere.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pantau_ingest::{CameraStatus, Ingest, StatusChange};
use tokio::sync::broadcast::error::RecvError;

use pantau_node::Figures as Facts;

pub struct StatusView {
    ingest: Arc<Ingest>,
    facts: Facts,
    table: bool,
    recent: VecDeque<StatusChange>,
    /// Shown above the table on every refresh (e.g. the console's address and login).
    banner: Option<String>,
}

impl StatusView {
    pub fn new(ingest: Arc<Ingest>, facts: Facts, table: bool) -> Self {
        Self {
            ingest,
            facts,
            table,
            recent: VecDeque::new(),
            banner: None,
        }
    }

    pub fn with_banner(mut self, banner: Option<String>) -> Self {
        self.banner = banner;
        self
    }

    /// Refreshes until `stop` completes.
    pub async fn run_until(&mut self, stop: impl Future<Output = ()>) {
        let mut changes = self.ingest.subscribe();
        let period = if self.table {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        let mut tick = tokio::time::interval(period);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                change = changes.recv() => match change {
                    Ok(c) => {
                        if self.recent.len() == 8 {
                            self.recent.pop_front();
                        }
                        self.recent.push_back(c);
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => self.render(),
            }
        }
    }

    fn render(&self) {
        let statuses = self.ingest.statuses();
        if self.table {
            let mut out = String::from("\x1b[H\x1b[2J");
            if let Some(b) = &self.banner {
                let _ = writeln!(out, "{b}\n");
            }
            out.push_str(&table(&statuses));
            out.push_str(&self.counts());
            out.push_str("\nrecent changes:\n");
            for c in &self.recent {
                let at = humantime(c.at);
                let why = c.problem.as_ref().map(|p| p.message.as_str()).unwrap_or("");
                let _ = writeln!(
                    out,
                    "  {at}  {:<16} {:<12} {why}",
                    c.camera_id,
                    c.state.as_str()
                );
            }
            out.push_str("\nCtrl-C stops.\n");
            print!("{out}");
        } else {
            for s in &statuses {
                tracing::info!(
                    camera = %s.id,
                    state = %s.state,
                    fps = s.fps,
                    decoded = s.frames_decoded,
                    analysed = s.frames_analysed,
                    dropped = s.frames_dropped,
                    analysis_fps = s.analysis_fps_now,
                    degraded = s.degraded,
                    reconnects = s.reconnects,
                    problem = s.problem.as_ref().map(|p| p.code),
                    "status"
                );
            }
        }
    }

    /// The last table, as it stood just before shutdown.
    pub fn print_final(&self, last: &[CameraStatus]) {
        if self.table {
            print!("{}{}", table(last), self.counts());
        } else {
            for line in self.counts().lines().skip(1) {
                tracing::info!("{}", line.trim());
            }
        }
    }

    /// Live counts per camera and line.
    fn counts(&self) -> String {
        let facts = self.facts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::from("\nanalysis:\n");
        for (id, f) in facts {
            let lines: Vec<String> = f
                .lines
                .iter()
                .map(|(name, (i, o))| format!("{name} in {i} out {o}"))
                .collect();
            let _ = writeln!(
                out,
                "  {id:<16} {:>3} objects  {:>5.1} ms inference  {}",
                f.objects,
                f.inference_ms,
                lines.join(", ")
            );
        }
        out
    }
}

fn table(statuses: &[CameraStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<12} {:>6} {:>9} {:>9} {:>8} {:>6} {:>9} {:>10}  problem",
        "camera", "state", "fps", "decoded", "analysed", "dropped", "recon", "age ms", "size"
    );
    for s in statuses {
        let size = match (s.width, s.height) {
            (Some(w), Some(h)) => format!("{w}x{h}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:>6.1} {:>9} {:>9} {:>8} {:>6} {:>9} {:>10}  {}",
            s.id,
            s.state.as_str(),
            s.fps,
            s.frames_decoded,
            s.frames_analysed,
            s.frames_dropped,
            s.reconnects,
            s.last_frame_age_ms
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            size,
            match (&s.problem, s.degraded) {
                (Some(p), _) => p.message.clone(),
                (None, true) => format!(
                    "node over capacity: analysed at {:.1} of {:.1} fps",
                    s.analysis_fps_now, s.analysis_fps
                ),
                (None, false) => String::new(),
            }
        );
    }
    out
}

/// HH:MM:SS UTC.
fn humantime(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}Z",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}
