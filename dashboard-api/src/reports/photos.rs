//! Report photos: only JPEG and PNG, size-limited, with their metadata removed (EXIF with GPS,
//! XMP, IPTC, comments, PNG text and eXIf chunks) by dropping those segments byte for byte, so
//! the picture itself is never re-encoded; then decoded whole, so what is kept is an image.

use std::io::Cursor;

/// What a photo turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoKind {
    Jpeg,
    Png,
}

impl PhotoKind {
    pub fn extension(self) -> &'static str {
        match self {
            PhotoKind::Jpeg => "jpg",
            PhotoKind::Png => "png",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PhotoKind::Jpeg => "image/jpeg",
            PhotoKind::Png => "image/png",
        }
    }

    /// By the file name's extension, as stored.
    pub fn of_file(name: &str) -> Option<Self> {
        if name.ends_with(".jpg") {
            Some(PhotoKind::Jpeg)
        } else if name.ends_with(".png") {
            Some(PhotoKind::Png)
        } else {
            None
        }
    }
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Largest width or height of a photo, pixels.
const MAX_SIDE: u32 = 16_384;
/// Memory one decoding may take.
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// The photo without its metadata, checked to decode: its kind and bytes, or why not.
pub fn clean(data: &[u8]) -> Result<(PhotoKind, Vec<u8>), String> {
    let (kind, stripped) = if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        (PhotoKind::Jpeg, strip_jpeg(data)?)
    } else if data.starts_with(&PNG_SIGNATURE) {
        (PhotoKind::Png, strip_png(data)?)
    } else {
        return Err("is not a JPEG or PNG file".into());
    };
    decodes(kind, &stripped)?;
    Ok((kind, stripped))
}

/// Decodes the whole picture (within bounds of size and memory).
pub fn decodes(kind: PhotoKind, data: &[u8]) -> Result<(u32, u32), String> {
    let format = match kind {
        PhotoKind::Jpeg => image::ImageFormat::Jpeg,
        PhotoKind::Png => image::ImageFormat::Png,
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(data), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let picture = reader
        .decode()
        .map_err(|e| format!("does not decode as {}: {e}", kind.content_type()))?;
    Ok((picture.width(), picture.height()))
}

/// A JPEG without APP1 (EXIF, XMP), APP3 to APP13 (IPTC, Photoshop), APP15 and comments;
/// JFIF (APP0), ICC profiles (APP2) and Adobe's colour transform (APP14) stay, as the picture's
/// colours need them. Nothing after the end marker is kept.
pub fn strip_jpeg(data: &[u8]) -> Result<Vec<u8>, String> {
    let broken = |what: &str| format!("is a broken JPEG ({what})");
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut i = 2;
    loop {
        if data.get(i) != Some(&0xFF) {
            return Err(broken("no marker where one must be"));
        }
        // Any number of 0xFF may pad a marker.
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = data.get(i) else {
            return Err(broken("it ends before its end marker"));
        };
        i += 1;
        match marker {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                return Ok(out);
            }
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&[0xFF, marker]);
                continue;
            }
            _ => {}
        }
        let len = match data.get(i..i + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err(broken("it ends inside a segment")),
        };
        let Some(segment) = data.get(i..i + len).filter(|_| len >= 2) else {
            return Err(broken("a segment runs past its end"));
        };
        let body = &segment[2..];
        let keep = match marker {
            0xE0 => body.starts_with(b"JFIF\0") || body.starts_with(b"JFXX\0"),
            0xE2 => body.starts_with(b"ICC_PROFILE\0"),
            0xEE => body.starts_with(b"Adobe"),
            0xE1 | 0xE3..=0xED | 0xEF | 0xFE => false,
            _ => true,
        };
        if keep {
            out.extend_from_slice(&[0xFF, marker]);
            out.extend_from_slice(segment);
        }
        i += len;
        if marker == 0xDA {
            // The scan's entropy-coded data runs to the next marker: a 0xFF that is not
            // stuffing (0xFF00), a restart marker or padding.
            let start = i;
            loop {
                match (data.get(i), data.get(i + 1)) {
                    (Some(0xFF), Some(0x00 | 0xD0..=0xD7)) => i += 2,
                    (Some(0xFF), Some(0xFF)) => i += 1,
                    (Some(0xFF), Some(_)) => break,
                    (Some(_), _) => i += 1,
                    (None, _) => return Err(broken("it ends inside its picture data")),
                }
            }
            out.extend_from_slice(&data[start..i]);
        }
    }
}

/// A PNG with only the chunks that make the picture: the critical ones and transparency,
/// colour (gamma, chromaticities, sRGB, ICC profile, significant bits), background and pixel
/// size. Text (tEXt, zTXt, iTXt), EXIF (eXIf), time and every other ancillary chunk go;
/// nothing after IEND is kept.
pub fn strip_png(data: &[u8]) -> Result<Vec<u8>, String> {
    const KEEP: [&[u8; 4]; 12] = [
        b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
        b"bKGD", b"pHYs",
    ];
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&PNG_SIGNATURE);
    let mut i = PNG_SIGNATURE.len();
    loop {
        let Some(head) = data.get(i..i + 8) else {
            return Err("is a broken PNG (it ends before IEND)".into());
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        // Length, type, data and CRC.
        let end = i
            .checked_add(12)
            .and_then(|n| n.checked_add(len))
            .filter(|&end| end <= data.len())
            .ok_or_else(|| "is a broken PNG (a chunk runs past its end)".to_string())?;
        // An unknown critical chunk (upper-case first letter) stays: the decoder refuses it.
        if KEEP.iter().any(|k| k.as_slice() == kind) || kind[0].is_ascii_uppercase() {
            out.extend_from_slice(&data[i..end]);
        }
        i = end;
        if kind == b"IEND" {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Vec<u8> {
        let picture =
            image::RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 * 8, y as u8 * 10, 90]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&picture)
            .expect("encode");
        out
    }

    fn png() -> Vec<u8> {
        let picture =
            image::RgbaImage::from_fn(8, 8, |x, y| image::Rgba([x as u8, y as u8, 3, 255]));
        let mut out = Vec::new();
        picture
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encode");
        out
    }

    /// `segment` (marker and body) inserted right after the JPEG's SOI.
    fn with_segment(jpeg: &[u8], marker: u8, body: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn jpeg_metadata_goes_and_the_picture_stays() {
        let plain = jpeg();
        let mut exif = b"Exif\0\0MM\0*GPSLatitude -3.2945 GPSLongitude 102.8614".to_vec();
        exif.resize(300, 7);
        let tagged = with_segment(
            &with_segment(&plain, 0xE1, &exif),
            0xFE,
            b"taken by Budi at home",
        );
        let mut tagged = with_segment(&tagged, 0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>");
        tagged.extend_from_slice(b"trailing secrets");
        let (kind, clean) = clean(&tagged).expect("clean");
        assert_eq!(kind, PhotoKind::Jpeg);
        for gone in [&b"Exif"[..], b"GPS", b"Budi", b"xmpmeta", b"trailing"] {
            assert!(
                !contains(&clean, gone),
                "{:?} left",
                String::from_utf8_lossy(gone)
            );
        }
        assert_eq!(decodes(kind, &clean).expect("decodes"), (32, 24));
        assert!(clean.len() <= plain.len(), "nothing added");
    }

    #[test]
    fn png_text_and_exif_chunks_go() {
        let plain = png();
        // After IHDR (8 + 25 bytes): a tEXt and an eXIf chunk (CRCs are not checked here).
        let mut tagged = plain[..33].to_vec();
        for (kind, body) in [(&b"tEXt"[..], &b"Author\0Budi"[..]), (b"eXIf", b"MM\0*GPS")] {
            tagged.extend_from_slice(&(body.len() as u32).to_be_bytes());
            tagged.extend_from_slice(kind);
            tagged.extend_from_slice(body);
            tagged.extend_from_slice(&[0, 0, 0, 0]);
        }
        tagged.extend_from_slice(&plain[33..]);
        let (kind, clean) = clean(&tagged).expect("clean");
        assert_eq!(kind, PhotoKind::Png);
        assert!(!contains(&clean, b"Budi") && !contains(&clean, b"eXIf"));
        assert_eq!(clean, plain, "exactly the picture's own chunks");
    }

    #[test]
    fn what_is_not_an_image_is_refused_with_a_reason() {
        let mut cut = jpeg();
        cut.truncate(cut.len() / 2);
        let mut bad_png = png();
        bad_png.truncate(40);
        let cases: [(&[u8], &str); 5] = [
            (b"hello", "not a JPEG or PNG"),
            (b"%PDF-1.7", "not a JPEG or PNG"),
            (&cut, "broken JPEG"),
            (&bad_png, "broken PNG"),
            // A JPEG header followed by garbage: structure fine, no picture.
            (&[0xFF, 0xD8, 0xFF, 0xD9], "does not decode"),
        ];
        for (data, why) in cases {
            let e = clean(data).expect_err("refused");
            assert!(e.contains(why), "{e}");
        }
    }
}
