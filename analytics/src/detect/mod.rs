//! Object detection: a model manifest ([`model`]), letterbox preprocessing ([`preprocess`]),
//! output decoding and NMS ([`decode`]), the ONNX Runtime session ([`onnx`]) and the service
//! that shares one session fairly between cameras ([`service`]).

pub mod decode;
pub mod model;
pub mod onnx;
pub mod preprocess;
pub mod service;

use serde::Serialize;

use crate::geometry::BBox;

/// One detected object, in the pixel coordinates of the image given to the detector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub bbox: BBox,
    pub score: f32,
    /// Class id (index into the model's labels).
    pub class: u16,
    /// The score reached the class's `detector.min_score` (or `thresholds` entry): the object
    /// is reported and may start a track. Weaker boxes only help the tracker follow objects it
    /// already has.
    pub confident: bool,
}

/// A borrowed BGR image: `height` rows of `stride` bytes.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
}

impl<'a> From<&'a pantau_ingest::Frame> for ImageRef<'a> {
    /// The analysis image of a decoded frame.
    fn from(f: &'a pantau_ingest::Frame) -> Self {
        ImageRef {
            data: f.data(),
            width: f.width,
            height: f.height,
            stride: f.stride,
        }
    }
}

/// Milliseconds spent in each step of one detection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DetectTimings {
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
}
