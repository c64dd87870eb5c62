//! Evidence clips that hold up: each clip folder has the MP4 as the camera encoded it, a
//! manifest that says what it is (event, camera, site, node, capture times, codec, frames,
//! SHA-256 of the MP4) and an Ed25519 signature over the manifest's exact bytes by the node's
//! key. Anyone with the node's public key can check that neither changed
//! (`pantau evidence verify`).
//!
//! ```text
//!  <evidence.dir>/<camera>/<YYYY-MM-DD>/<clip id>/
//!      clip.mp4         the video (written by ingest, never re-encoded)
//!      manifest.json    what it is (signed as written)
//!      manifest.sig     base64 Ed25519 signature of manifest.json
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`key`] | the node's signing key: created at first start, loaded after |
//! | [`manifest`] | the manifest, sealing a clip folder |
//! | [`verify`] | checking a clip folder or an exported zip |
//! | [`export`] | the zip an investigator downloads |
//! | [`retention`] | deleting old clips, never kept ones |

pub mod export;
pub mod key;
pub mod manifest;
pub mod retention;
pub mod verify;

pub use key::NodeKey;
pub use manifest::{seal, ClipFacts, Manifest};
pub use verify::{verify, Check, Verdict};

/// The file names inside a clip folder and an export.
pub const CLIP_FILE: &str = "clip.mp4";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// Only in an export: the node's public key (base64 of the 32 key bytes).
pub const PUBLIC_KEY_FILE: &str = "node-key.pub";

/// What went wrong with evidence files.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl EvidenceError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Is `rel` a clip folder path as events carry it (`camera/YYYY-MM-DD/clip`): three plain
/// parts, nothing that could leave the evidence folder.
pub fn valid_clip_path(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 128
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_paths_stay_inside() {
        assert!(valid_clip_path("traffic/2026-12-01/01KB2Z"));
        for bad in [
            "../x/y", "a/b", "a/b/c/d", "a//c", "a/../c", "/a/b/c", "a/b/c d",
        ] {
            assert!(!valid_clip_path(bad), "{bad}");
        }
    }
}
