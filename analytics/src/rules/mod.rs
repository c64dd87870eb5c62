//! Scene rules: counting lines, zones and the traffic and incident rules ([`traffic`]). Each rule sees every confirmed track's anchor point
//! (bottom centre of its box, where it touches the road) once per analysed frame.

pub mod line;
pub mod traffic;
pub mod zone;

pub use line::{Crossing, Direction, LineCounter};
pub use traffic::{Phase, TrafficEvent, TrafficKind, TrafficRules, TrafficSetup};
pub use zone::{ZoneEvent, ZoneEventKind, ZoneMonitor};
