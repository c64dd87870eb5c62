//! The manifest of a clip and sealing a clip folder: hash the MP4, write the manifest, sign
//! its bytes.

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{EvidenceError, NodeKey, CLIP_FILE, MANIFEST_FILE, SIGNATURE_FILE};

/// The manifest's format name and version.
pub const FORMAT: &str = "pantau-evidence/1";

/// What a clip is. Written as pretty JSON; the signature covers those exact bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The clip's id (the id of the event that asked for it).
    pub clip_id: String,
    /// The event the clip was made for.
    pub event_id: String,
    /// Every event whose incident the clip covers (the first is `event_id`).
    pub events: Vec<String>,
    /// The event's kind and rule, e.g. `stopped_vehicle` in `lane-1`.
    pub event_kind: String,
    pub rule: String,
    pub camera: String,
    pub camera_name: String,
    pub site: String,
    /// The node that recorded and signed it.
    pub node: String,
    /// The time asked for (RFC 3339): the event's capture time minus `pre_s`, plus `post_s`.
    pub requested_from: String,
    pub requested_to: String,
    /// Capture times of the first and last frame in the clip (RFC 3339, the camera's clock
    /// where it sends RTCP sender reports).
    pub start: String,
    pub end: String,
    pub duration_s: f64,
    /// `H.264` or `H.265`, as the camera sent it (not re-encoded).
    pub codec: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frames: u64,
    /// The video file in the folder, its size and SHA-256 (hex).
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    /// When the node sealed the clip.
    pub created_at: String,
    /// The signing key: its id and the public key (base64). Trust comes from comparing it with
    /// the node's key served at `/api/v1/evidence/key`, not from this copy.
    pub key_id: String,
    pub public_key: String,
}

/// What the node knows of a clip when it seals it.
#[derive(Debug, Clone)]
pub struct ClipFacts {
    pub clip_id: String,
    pub event_id: String,
    pub events: Vec<String>,
    pub event_kind: String,
    pub rule: String,
    pub camera: String,
    pub camera_name: String,
    pub site: String,
    pub node: String,
    pub requested: (SystemTime, SystemTime),
    pub start: SystemTime,
    pub end: SystemTime,
    pub codec: String,
    pub size: Option<(u32, u32)>,
    pub frames: u64,
}

/// SHA-256 (hex) and length of a file, read in pieces.
pub fn hash_file(path: &Path) -> Result<(String, u64), EvidenceError> {
    let mut file = std::fs::File::open(path).map_err(|e| EvidenceError::io(path, e))?;
    hash_reader(&mut file).map_err(|e| EvidenceError::io(path, e))
}

pub(crate) fn hash_reader(r: &mut impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((crate::hex(&hasher.finalize()), total))
}

/// Seals the clip folder `dir` (which holds [`CLIP_FILE`]): writes the manifest and its
/// signature, each whole or not at all. Returns the manifest's bytes and the signature.
pub fn seal(
    dir: &Path,
    facts: &ClipFacts,
    key: &NodeKey,
) -> Result<(Manifest, Vec<u8>, String), EvidenceError> {
    let (sha256, bytes) = hash_file(&dir.join(CLIP_FILE))?;
    let t = pantau_events::time::format;
    let manifest = Manifest {
        format: FORMAT.into(),
        clip_id: facts.clip_id.clone(),
        event_id: facts.event_id.clone(),
        events: facts.events.clone(),
        event_kind: facts.event_kind.clone(),
        rule: facts.rule.clone(),
        camera: facts.camera.clone(),
        camera_name: facts.camera_name.clone(),
        site: facts.site.clone(),
        node: facts.node.clone(),
        requested_from: t(facts.requested.0),
        requested_to: t(facts.requested.1),
        start: t(facts.start),
        end: t(facts.end),
        duration_s: round3(
            facts
                .end
                .duration_since(facts.start)
                .unwrap_or_default()
                .as_secs_f64(),
        ),
        codec: facts.codec.clone(),
        width: facts.size.map(|s| s.0),
        height: facts.size.map(|s| s.1),
        frames: facts.frames,
        file: CLIP_FILE.into(),
        bytes,
        sha256,
        created_at: t(SystemTime::now()),
        key_id: key.id(),
        public_key: key.public_base64(),
    };
    let mut json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| EvidenceError::invalid(dir.display(), e.to_string()))?;
    json.push(b'\n');
    let signature = key.sign(&json);
    // The manifest last: its presence means the clip is sealed (the API and retention look
    // for it).
    write_whole(
        &dir.join(SIGNATURE_FILE),
        format!("{signature}\n").as_bytes(),
    )?;
    write_whole(&dir.join(MANIFEST_FILE), &json)?;
    Ok((manifest, json, signature))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Writes beside and renames, so a reader never sees half a file.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), EvidenceError> {
    let part = path.with_extension("part");
    std::fs::write(&part, bytes)
        .and_then(|()| std::fs::rename(&part, path))
        .map_err(|e| EvidenceError::io(path, e))
}

/// Reads a clip folder's manifest (bounded: a manifest is a few kB).
pub fn read(dir: &Path) -> Result<Manifest, EvidenceError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = read_bounded(&path, MAX_MANIFEST)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EvidenceError::invalid(path.display(), e.to_string()))
}

/// The largest manifest or signature file read.
pub(crate) const MAX_MANIFEST: u64 = 64 * 1024;

pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, EvidenceError> {
    let file = std::fs::File::open(path).map_err(|e| EvidenceError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| EvidenceError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(EvidenceError::invalid(
            path.display(),
            format!("larger than {limit} bytes; not a pantau evidence file"),
        ));
    }
    Ok(bytes)
}
