//! The zip an investigator downloads: the clip, its manifest and signature, and the node's
//! public key, flat, so `pantau evidence verify FILE.zip` checks it as it is.

use std::io::Write;
use std::path::Path;

use zip::write::SimpleFileOptions;

use crate::{EvidenceError, NodeKey, CLIP_FILE, MANIFEST_FILE, PUBLIC_KEY_FILE, SIGNATURE_FILE};

const README: &str = "pantau evidence clip\n\n\
clip.mp4       the video as the camera encoded it (not re-encoded)\n\
manifest.json  what it is: event, camera, site, node, capture times, codec, frames, SHA-256 of clip.mp4\n\
manifest.sig   Ed25519 signature (base64) of manifest.json's exact bytes\n\
node-key.pub   the recording node's public key (base64)\n\n\
Check it:  pantau evidence verify THIS.zip [--key KEY]\n\
where KEY is the node's public key as GET /api/v1/evidence/key serves it.\n";

/// Writes the export of the clip folder `dir` to `out`. The MP4 is stored (it does not
/// compress); the small files are deflated.
pub fn write_zip<W: Write + std::io::Seek>(
    dir: &Path,
    key: &NodeKey,
    out: W,
) -> Result<W, EvidenceError> {
    let fail = |e: zip::result::ZipError| EvidenceError::invalid(dir.display(), e.to_string());
    let mut zip = zip::ZipWriter::new(out);
    let stored = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let clip = dir.join(CLIP_FILE);
    zip.start_file(CLIP_FILE, stored).map_err(fail)?;
    let mut file = std::fs::File::open(&clip).map_err(|e| EvidenceError::io(&clip, e))?;
    std::io::copy(&mut file, &mut zip).map_err(|e| EvidenceError::io(&clip, e))?;
    for name in [MANIFEST_FILE, SIGNATURE_FILE] {
        let path = dir.join(name);
        let bytes = crate::manifest::read_bounded(&path, crate::manifest::MAX_MANIFEST)?;
        zip.start_file(name, deflated).map_err(fail)?;
        zip.write_all(&bytes)
            .map_err(|e| EvidenceError::io(&path, e))?;
    }
    zip.start_file(PUBLIC_KEY_FILE, deflated).map_err(fail)?;
    zip.write_all(format!("{}\n", key.public_base64()).as_bytes())
        .map_err(|e| EvidenceError::io(dir, e))?;
    zip.start_file("README.txt", deflated).map_err(fail)?;
    zip.write_all(README.as_bytes())
        .map_err(|e| EvidenceError::io(dir, e))?;
    zip.finish().map_err(fail)
}
