//! Deleting clips: older than the retention days, or the oldest beyond the size limit, never
//! one a dispatcher marked "keep", never one still being written (no manifest yet and young).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The retention policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// A clip folder found on disk.
#[derive(Debug, Clone)]
struct Found {
    /// `camera/date/clip`.
    rel: String,
    path: PathBuf,
    modified: SystemTime,
    bytes: u64,
    sealed: bool,
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Swept {
    pub removed: Vec<String>,
    pub kept_by_dispatch: usize,
    pub bytes_left: u64,
}

/// A folder without a manifest this old is a clip whose writing failed: it goes too.
const UNSEALED_GRACE: Duration = Duration::from_secs(3600);

/// Applies `policy` to the clips under `root`; `kept` holds the `camera/date/clip` paths
/// marked "keep". Returns what was removed.
pub fn sweep(root: &Path, policy: Policy, kept: &HashSet<String>, now: SystemTime) -> Swept {
    let mut clips = find(root);
    let mut swept = Swept::default();
    clips.sort_by(|a, b| (a.modified, &a.rel).cmp(&(b.modified, &b.rel)));
    let mut total: u64 = clips.iter().map(|c| c.bytes).sum();
    for c in &clips {
        let age = now.duration_since(c.modified).unwrap_or_default();
        if kept.contains(&c.rel) {
            swept.kept_by_dispatch += 1;
            continue;
        }
        let expired = age > policy.max_age;
        let over = total > policy.max_bytes;
        let abandoned = !c.sealed && age > UNSEALED_GRACE;
        if !c.sealed && !abandoned {
            continue; // being written
        }
        if (expired || over || abandoned) && std::fs::remove_dir_all(&c.path).is_ok() {
            total = total.saturating_sub(c.bytes);
            swept.removed.push(c.rel.clone());
            if let Some(day) = c.path.parent() {
                let _ = std::fs::remove_dir(day); // only when empty
            }
        }
    }
    swept.bytes_left = total;
    swept
}

fn find(root: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    for camera in dirs(root) {
        for day in dirs(&camera) {
            for clip in dirs(&day) {
                let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
                let (Some(c), Some(d), Some(k)) = (name(&camera), name(&day), name(&clip)) else {
                    continue;
                };
                let files: Vec<std::fs::Metadata> = std::fs::read_dir(&clip)
                    .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).collect())
                    .unwrap_or_default();
                let modified = std::fs::metadata(&clip)
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push(Found {
                    rel: format!("{c}/{d}/{k}"),
                    sealed: clip.join(crate::MANIFEST_FILE).exists(),
                    bytes: files.iter().map(|m| m.len()).sum(),
                    path: clip,
                    modified,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(root: &Path, rel: &str, bytes: usize, sealed: bool) {
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(crate::CLIP_FILE), vec![0u8; bytes]).expect("write");
        if sealed {
            std::fs::write(dir.join(crate::MANIFEST_FILE), b"{}").expect("write");
        }
    }

    #[test]
    fn old_clips_go_kept_ones_stay() {
        let root = tempfile::tempdir().expect("tempdir");
        clip(root.path(), "cam/2026-11-01/a", 100, true);
        clip(root.path(), "cam/2026-11-01/b", 100, true);
        clip(root.path(), "cam/2026-11-02/c", 100, false);
        let kept: HashSet<String> = ["cam/2026-11-01/b".to_string()].into();
        let policy = Policy {
            max_age: Duration::from_secs(86_400),
            max_bytes: u64::MAX,
        };
        // Two days later: a expired, b kept, c is unsealed and abandoned.
        let later = SystemTime::now() + Duration::from_secs(2 * 86_400);
        let swept = sweep(root.path(), policy, &kept, later);
        assert_eq!(swept.removed, ["cam/2026-11-01/a", "cam/2026-11-02/c"]);
        assert_eq!(swept.kept_by_dispatch, 1);
        assert!(root.path().join("cam/2026-11-01/b").exists());
        assert!(
            !root.path().join("cam/2026-11-02").exists(),
            "empty days go too"
        );
    }

    #[test]
    fn the_size_limit_deletes_the_oldest_first() {
        let root = tempfile::tempdir().expect("tempdir");
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            clip(root.path(), &format!("cam/2026-11-01/{name}"), 1000, true);
            let t = SystemTime::now() - Duration::from_secs(100 - i as u64 * 10);
            let f = std::fs::File::open(root.path().join(format!("cam/2026-11-01/{name}")))
                .expect("open");
            f.set_modified(t).expect("mtime");
        }
        let policy = Policy {
            max_age: Duration::from_secs(86_400),
            max_bytes: 2100,
        };
        let young_unsealed = "cam/2026-11-01/d";
        clip(root.path(), young_unsealed, 5000, false);
        let swept = sweep(root.path(), policy, &HashSet::new(), SystemTime::now());
        // 3 x 1002 + 5000 over 2100: a, b, c go oldest first; d is being written.
        assert_eq!(
            swept.removed,
            ["cam/2026-11-01/a", "cam/2026-11-01/b", "cam/2026-11-01/c"]
        );
        assert!(root.path().join(young_unsealed).exists());
    }
}
