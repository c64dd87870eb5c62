//! Multi-object tracking.

pub mod appearance;
pub mod assignment;
pub mod bytetrack;
pub mod kalman;

pub use appearance::Appearance;
pub use bytetrack::{TrackState, TrackedObject, Tracker};
