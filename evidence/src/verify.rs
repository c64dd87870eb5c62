//! Checking a clip: its folder on the node or the zip an investigator was given. The MP4's
//! SHA-256 and size must match the manifest, and the manifest's bytes must carry a valid
//! Ed25519 signature by the key: the one given (`--key`, as the node serves it), else the one
//! in the export, which then only proves the files belong together, and says so.

use std::io::Read;
use std::path::Path;

use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::key::{key_id, parse_public};
use crate::manifest::{hash_reader, Manifest, MAX_MANIFEST};
use crate::{EvidenceError, CLIP_FILE, MANIFEST_FILE, PUBLIC_KEY_FILE, SIGNATURE_FILE};

/// One thing checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub passed: bool,
    pub what: String,
}

/// Everything checked, and what the clip says it is.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub checks: Vec<Check>,
    pub manifest: Option<Manifest>,
    /// The key the signature was checked with came from the export itself.
    pub key_from_export: bool,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    fn check(&mut self, passed: bool, what: impl Into<String>) {
        self.checks.push(Check {
            passed,
            what: what.into(),
        });
    }
}

/// The largest clip read from an export (the rings hold far less).
const MAX_CLIP: u64 = 16 << 30;

/// The files of a clip, from a folder or a zip.
trait Files {
    fn small(&mut self, name: &str) -> Result<Option<Vec<u8>>, EvidenceError>;
    fn hash(&mut self, name: &str) -> Result<Option<(String, u64)>, EvidenceError>;
}

struct Folder<'a>(&'a Path);

impl Files for Folder<'_> {
    fn small(&mut self, name: &str) -> Result<Option<Vec<u8>>, EvidenceError> {
        let path = self.0.join(name);
        if !path.exists() {
            return Ok(None);
        }
        crate::manifest::read_bounded(&path, MAX_MANIFEST).map(Some)
    }

    fn hash(&mut self, name: &str) -> Result<Option<(String, u64)>, EvidenceError> {
        let path = self.0.join(name);
        if !path.exists() {
            return Ok(None);
        }
        crate::manifest::hash_file(&path).map(Some)
    }
}

struct Zip<'a> {
    path: &'a Path,
    archive: zip::ZipArchive<std::fs::File>,
}

impl Zip<'_> {
    fn read(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, EvidenceError> {
        let entry = match self.archive.by_name(name) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(EvidenceError::invalid(self.path.display(), e.to_string())),
        };
        let mut bytes = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| EvidenceError::io(self.path, e))?;
        if bytes.len() as u64 > limit {
            return Err(EvidenceError::invalid(
                format!("{}:{name}", self.path.display()),
                format!("larger than {limit} bytes; not a pantau evidence file"),
            ));
        }
        Ok(Some(bytes))
    }
}

impl Files for Zip<'_> {
    fn small(&mut self, name: &str) -> Result<Option<Vec<u8>>, EvidenceError> {
        self.read(name, MAX_MANIFEST)
    }

    fn hash(&mut self, name: &str) -> Result<Option<(String, u64)>, EvidenceError> {
        let entry = match self.archive.by_name(name) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(EvidenceError::invalid(self.path.display(), e.to_string())),
        };
        let mut limited = entry.take(MAX_CLIP);
        hash_reader(&mut limited)
            .map(Some)
            .map_err(|e| EvidenceError::io(self.path, e))
    }
}

/// Checks the clip folder or zip at `path`, with `key` (base64) when given. Only unreadable
/// input is an error; everything found wrong is a failed [`Check`].
pub fn verify(path: &Path, key: Option<&str>) -> Result<Verdict, EvidenceError> {
    let pinned = match key {
        Some(k) => Some(parse_public(k).ok_or_else(|| {
            EvidenceError::invalid(
                "--key",
                "not an Ed25519 public key in base64 (as /api/v1/evidence/key gives it)",
            )
        })?),
        None => None,
    };
    if path.is_dir() {
        check(&mut Folder(path), pinned)
    } else {
        let file = std::fs::File::open(path).map_err(|e| EvidenceError::io(path, e))?;
        let archive = zip::ZipArchive::new(file).map_err(|e| {
            EvidenceError::invalid(
                path.display(),
                format!("neither a clip folder nor a zip export ({e})"),
            )
        })?;
        check(&mut Zip { path, archive }, pinned)
    }
}

fn check(files: &mut dyn Files, pinned: Option<VerifyingKey>) -> Result<Verdict, EvidenceError> {
    let mut v = Verdict {
        checks: Vec::new(),
        manifest: None,
        key_from_export: false,
    };
    let Some(manifest_bytes) = files.small(MANIFEST_FILE)? else {
        v.check(false, format!("{MANIFEST_FILE} is missing"));
        return Ok(v);
    };
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            v.check(
                false,
                format!("{MANIFEST_FILE} is not a pantau manifest: {e}"),
            );
            Manifest::default()
        }
    };
    let readable = !manifest.clip_id.is_empty();
    // The video against the manifest.
    if readable && manifest.file != CLIP_FILE {
        v.check(
            false,
            format!(
                "the manifest names the video {:?}; a pantau clip's is {CLIP_FILE}",
                manifest.file
            ),
        );
    }
    if readable {
        match files.hash(CLIP_FILE)? {
            None => v.check(false, format!("{} is missing", manifest.file)),
            Some((sha, bytes)) => {
                let ok = sha == manifest.sha256 && bytes == manifest.bytes;
                v.check(
                    ok,
                    if ok {
                        format!(
                            "{}: {bytes} bytes, SHA-256 {sha} matches the manifest",
                            manifest.file
                        )
                    } else {
                        format!(
                            "{}: {bytes} bytes, SHA-256 {sha}; the manifest says {} bytes, {}: \
                             the video was changed",
                            manifest.file, manifest.bytes, manifest.sha256
                        )
                    },
                );
            }
        }
    }
    // The manifest against its signature.
    let key = match pinned {
        Some(k) => Some(k),
        None => {
            v.key_from_export = true;
            files
                .small(PUBLIC_KEY_FILE)?
                .and_then(|b| parse_public(&String::from_utf8_lossy(&b)))
                .or_else(|| parse_public(&manifest.public_key))
        }
    };
    let signature = files.small(SIGNATURE_FILE)?.and_then(|b| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8_lossy(&b).trim())
            .ok()?;
        Signature::from_slice(&bytes).ok()
    });
    match (key, signature) {
        (None, _) => v.check(
            false,
            "no public key to check the signature with; pass --key",
        ),
        (_, None) => v.check(
            false,
            format!("{SIGNATURE_FILE} is missing or not a signature"),
        ),
        (Some(key), Some(sig)) => {
            let ok = key.verify_strict(&manifest_bytes, &sig).is_ok();
            let id = key_id(&key);
            v.check(
                ok,
                if ok {
                    format!("{MANIFEST_FILE}: Ed25519 signature by key {id} is valid")
                } else {
                    format!(
                        "{MANIFEST_FILE}: the signature does not match key {id}: the manifest \
                         was changed or signed by another key"
                    )
                },
            );
            if readable && manifest.key_id != id {
                v.check(
                    false,
                    format!(
                        "the manifest names key {}, the signature was checked with key {id}",
                        manifest.key_id
                    ),
                );
            }
        }
    }
    if readable {
        v.manifest = Some(manifest);
    }
    Ok(v)
}

/// The verdict for people: what the clip is, each check, and what trust rests on.
pub fn report(v: &Verdict) -> String {
    let mut out = String::new();
    if let Some(m) = &v.manifest {
        out.push_str(&format!(
            "evidence clip {} of camera {} ({}), site {}, node {}\n  event {} ({} at {})\n  \
             frames {} to {} ({} s, {} frames, {}{})\n",
            m.clip_id,
            m.camera,
            m.camera_name,
            m.site,
            m.node,
            m.event_id,
            m.event_kind,
            m.rule,
            m.start,
            m.end,
            m.duration_s,
            m.frames,
            m.codec,
            match (m.width, m.height) {
                (Some(w), Some(h)) => format!(" {w}x{h}"),
                _ => String::new(),
            }
        ));
    }
    for c in &v.checks {
        out.push_str(&format!(
            "  {} {}\n",
            if c.passed { "ok  " } else { "FAIL" },
            c.what
        ));
    }
    if v.passed() && v.key_from_export {
        // Anyone can re-sign a changed clip with a key of their own and ship that key.
        out.push_str(
            "  note: the key came with the clip, so this only shows the files belong together; \
             pass --key with the node's key (GET /api/v1/evidence/key) to verify it\n",
        );
        out.push_str("CONSISTENT, NOT VERIFIED: no known key\n");
    } else if v.passed() {
        out.push_str("VERIFIED\n");
    } else {
        out.push_str("NOT VERIFIED\n");
    }
    out
}
