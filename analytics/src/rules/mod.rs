//! Scene rules: counting lines and zones. Each rule sees every confirmed track's anchor point
//! (bottom centre of its box, where it touches the road) once per analysed frame.

pub mod line;
pub mod zone;

pub use line::{Crossing, Direction, LineCounter};
pub use zone::{ZoneEvent, ZoneEventKind, ZoneMonitor};
