//! Multi-object tracking.

pub mod assignment;
pub mod bytetrack;
pub mod kalman;

pub use bytetrack::{TrackState, TrackedObject, Tracker};
