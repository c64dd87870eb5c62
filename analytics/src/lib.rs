//! pantau analytics: frames in, tracked objects and scene facts out.
//!
//! ```text
//!  Frame -> detect (letterbox, ONNX, decode, NMS) -> track (ByteTrack) -> rules (lines, zones)
//! ```

pub mod calibration;
pub mod camera;
pub mod detect;
pub mod draw;
pub mod facts;
pub mod geometry;
pub mod health;
pub mod mot;
pub mod motion;
pub mod track;

pub use detect::{Detection, ImageRef};
pub use geometry::{BBox, Point};
pub mod rules;
pub mod scene;
pub mod snapshot;
