//! The model manifest: what an ONNX detector expects and produces, so another model of the
//! same family runs without code changes.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::onnx::DetectError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// ONNX file, relative to the manifest.
    pub file: PathBuf,
    /// Expected sha256 of the file (hex), checked when present.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Class names, one per line, relative to the manifest.
    pub labels: PathBuf,
    pub input: InputSpec,
    pub output: OutputSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub pixel_order: PixelOrder,
    #[serde(default = "one")]
    pub scale: f32,
    pub letterbox: LetterboxMode,
    #[serde(default = "pad")]
    pub pad_value: u8,
    /// Whether the tensor is always `width` x `height` or cut to the picture.
    #[serde(default)]
    pub shape: InputShape,
}

/// How the input tensor's height and width are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputShape {
    /// Always the manifest's `width` x `height`; pictures of another aspect ratio are padded.
    #[default]
    Fixed,
    /// The model's height and width axes are free: the picture is scaled to fit `width` x
    /// `height` and the tensor ends at the next multiple of the largest stride past it.
    Fit,
}

fn one() -> f32 {
    1.0
}
fn pad() -> u8 {
    114
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelOrder {
    Bgr,
    Rgb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LetterboxMode {
    TopLeft,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub decoding: Decoding,
    pub strides: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoding {
    Yolox,
}

/// A manifest with its files resolved and checked.
#[derive(Debug, Clone)]
pub struct Model {
    pub manifest: Manifest,
    pub onnx_path: PathBuf,
    pub labels: Vec<String>,
}

impl Model {
    pub fn load(manifest_path: &Path) -> Result<Self, DetectError> {
        let bad = |reason: String| DetectError::Manifest {
            path: manifest_path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(manifest_path)
            .map_err(|e| bad(format!("cannot read it: {e}; set detector.model to a manifest such as models/yolox_nano.toml")))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let onnx_path = dir.join(&manifest.file);
        let bytes = std::fs::read(&onnx_path).map_err(|e| DetectError::ModelFile {
            path: onnx_path.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        if let Some(expected) = &manifest.sha256 {
            let got = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>();
            if !got.eq_ignore_ascii_case(expected) {
                return Err(DetectError::ModelFile {
                    path: onnx_path,
                    reason: format!(
                        "sha256 is {got}, the manifest expects {expected}; the file is damaged or not the model the manifest describes"
                    ),
                });
            }
        }
        let labels_path = dir.join(&manifest.labels);
        let labels: Vec<String> = std::fs::read_to_string(&labels_path)
            .map_err(|e| bad(format!("cannot read labels {}: {e}", labels_path.display())))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if labels.is_empty() {
            return Err(bad(format!(
                "labels file {} is empty",
                labels_path.display()
            )));
        }
        let i = &manifest.input;
        if i.width == 0
            || i.height == 0
            || manifest
                .output
                .strides
                .iter()
                .any(|s| *s == 0 || !i.width.is_multiple_of(*s) || !i.height.is_multiple_of(*s))
        {
            return Err(bad(format!(
                "input {}x{} must be positive and divisible by every stride {:?}",
                i.width, i.height, manifest.output.strides
            )));
        }
        Ok(Self {
            manifest,
            onnx_path,
            labels,
        })
    }

    /// The largest stride: a fitted tensor's sides are multiples of it.
    pub fn max_stride(&self) -> u32 {
        self.manifest
            .output
            .strides
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
    }

    /// Rows the output has for a `width` x `height` tensor: one per grid cell.
    pub fn anchors(&self, width: u32, height: u32) -> usize {
        self.manifest
            .output
            .strides
            .iter()
            .map(|s| ((width / s) * (height / s)) as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_count_every_grid_cell() {
        let m = Model {
            manifest: Manifest {
                name: "m".into(),
                file: "m.onnx".into(),
                sha256: None,
                labels: "l.txt".into(),
                input: InputSpec {
                    name: "images".into(),
                    width: 416,
                    height: 416,
                    pixel_order: PixelOrder::Bgr,
                    scale: 1.0,
                    letterbox: LetterboxMode::TopLeft,
                    pad_value: 114,
                    shape: InputShape::Fit,
                },
                output: OutputSpec {
                    name: "output".into(),
                    decoding: Decoding::Yolox,
                    strides: vec![8, 16, 32],
                },
            },
            onnx_path: "m.onnx".into(),
            labels: vec!["person".into()],
        };
        assert_eq!(m.anchors(416, 416), 3549);
        assert_eq!(m.anchors(416, 256), 52 * 32 + 26 * 16 + 13 * 8);
        assert_eq!(m.max_stride(), 32);
    }
}
