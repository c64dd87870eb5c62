//! Capture time and analysis rate, as small pure pieces.
//!
//! Capture time prefers the camera's own clock: an RTCP sender report maps an RTP timestamp
//! to the camera's NTP wall time, and every frame's RTP timestamp is remembered by its
//! position (PTS), so a decoded frame finds its way back to the camera clock. Until a sender
//! report arrives (and for files and test patterns) the arrival time is used.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// The mapping one RTCP sender report gives: RTP time `rtp` was NTP wall time `wall`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenderReport {
    pub wall: SystemTime,
    pub rtp: u32,
    pub clock_rate: u32,
}

impl SenderReport {
    /// Parses the sender-info part of an RTCP SR packet (RFC 3550 section 6.4.1). `packet`
    /// starts at the RTCP header; compound packets may follow and are ignored.
    pub fn parse(packet: &[u8], clock_rate: u32) -> Option<Self> {
        if packet.len() < 20 || packet[0] >> 6 != 2 || packet[1] != 200 || clock_rate == 0 {
            return None;
        }
        let word =
            |i: usize| u32::from_be_bytes([packet[i], packet[i + 1], packet[i + 2], packet[i + 3]]);
        let ntp_secs = u64::from(word(8));
        let ntp_frac = u64::from(word(12));
        let unix_secs = ntp_secs.checked_sub(NTP_UNIX_OFFSET_S)?;
        let nanos = (ntp_frac * 1_000_000_000) >> 32;
        Some(Self {
            wall: UNIX_EPOCH + Duration::from_secs(unix_secs) + Duration::from_nanos(nanos),
            rtp: word(16),
            clock_rate,
        })
    }

    /// Wall time of RTP timestamp `rtp`, handling 32-bit wrap-around (frames within about
    /// half the RTP range of the report, i.e. hours at 90 kHz).
    pub fn wall_time(&self, rtp: u32) -> SystemTime {
        let ticks = i64::from(rtp.wrapping_sub(self.rtp) as i32);
        let nanos = ticks as i128 * 1_000_000_000 / i128::from(self.clock_rate);
        if nanos >= 0 {
            self.wall + Duration::from_nanos(nanos as u64)
        } else {
            self.wall - Duration::from_nanos((-nanos) as u64)
        }
    }
}

/// Reads the timestamp field of an RTP packet.
pub fn rtp_timestamp(packet: &[u8]) -> Option<u32> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    Some(u32::from_be_bytes([
        packet[4], packet[5], packet[6], packet[7],
    ]))
}

/// Remembers which RTP timestamp each recent PTS had, so a decoded frame (which keeps its PTS
/// but loses the RTP header) can be put on the camera clock. With B-frames the jitter buffer
/// can give two frames the same PTS; such a PTS is ambiguous and [`RtpPtsMap::lookup`] says so
/// rather than guess.
#[derive(Debug, Default)]
pub struct RtpPtsMap {
    recent: VecDeque<(u64, u32)>,
}

impl RtpPtsMap {
    const KEEP: usize = 256;

    pub fn record(&mut self, pts_ns: u64, rtp: u32) {
        if self.recent.back() == Some(&(pts_ns, rtp)) {
            return; // further packets of the same frame
        }
        if self.recent.len() == Self::KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back((pts_ns, rtp));
    }

    /// The RTP timestamp of the frame at `pts_ns`, if exactly one frame had that PTS.
    pub fn lookup(&self, pts_ns: u64) -> Option<u32> {
        let mut found = None;
        for (_, rtp) in self.recent.iter().filter(|(p, _)| *p == pts_ns) {
            match found {
                None => found = Some(*rtp),
                Some(r) if r != *rtp => return None,
                Some(_) => {}
            }
        }
        found
    }

    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

/// Turns per-frame clock readings into capture times that never go backwards.
///
/// A frame whose RTP timestamp is known gets the camera's time from the sender report; the
/// difference to its arrival time is remembered (smoothed), so frames whose RTP timestamp is
/// ambiguous still get camera time as arrival plus that offset instead of jumping between
/// clocks.
///
/// A camera clock further than `max_skew` from the arrival time (a camera that says 1970 or
/// 2090) is not used: the frame is timed on arrival and [`Placed::ClockWrong`] says by how much
/// the camera was off.
#[derive(Debug)]
pub struct CaptureTimeline {
    camera_minus_arrival_s: Option<f64>,
    last: Option<SystemTime>,
    max_skew: Duration,
}

impl Default for CaptureTimeline {
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}

/// Which clock a capture time came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Placed {
    Camera,
    Arrival,
    /// The camera's clock was this many seconds off (camera minus arrival); arrival was used.
    ClockWrong(f64),
}

impl CaptureTimeline {
    pub fn new(max_skew: Duration) -> Self {
        Self {
            camera_minus_arrival_s: None,
            last: None,
            max_skew,
        }
    }

    /// `camera`: the camera's time of this frame when known; `arrival`: when it arrived.
    pub fn place(
        &mut self,
        camera: Option<SystemTime>,
        arrival: SystemTime,
    ) -> (SystemTime, Placed) {
        let skew = self.max_skew.as_secs_f64();
        let (t, placed) = match camera {
            Some(c) if signed_secs(c, arrival).abs() > skew => {
                (arrival, Placed::ClockWrong(signed_secs(c, arrival)))
            }
            Some(c) => {
                let diff = signed_secs(c, arrival);
                self.camera_minus_arrival_s = Some(match self.camera_minus_arrival_s {
                    Some(prev) => 0.9 * prev + 0.1 * diff,
                    None => diff,
                });
                (c, Placed::Camera)
            }
            None => match self.camera_minus_arrival_s {
                Some(offset) if offset.abs() <= skew => (shift(arrival, offset), Placed::Camera),
                _ => (arrival, Placed::Arrival),
            },
        };
        let t = match self.last {
            // Never backwards, but never held beyond the bound either: after a camera clock
            // far ahead, times come back to arrival.
            Some(last) if t <= last && signed_secs(last, arrival) <= skew => {
                last + Duration::from_micros(1)
            }
            _ => t,
        };
        self.last = Some(t);
        (t, placed)
    }
}

fn signed_secs(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn shift(t: SystemTime, secs: f64) -> SystemTime {
    if secs >= 0.0 {
        t + Duration::from_secs_f64(secs)
    } else {
        t - Duration::from_secs_f64(-secs)
    }
}

/// Capture times for sources without a camera clock (files, test patterns): the stream
/// position on the wall clock, anchored at the first frame. A file analysed faster than real
/// time still has its frames 40 ms apart at 25 fps, so everything that works in time (the
/// tracker, dwell, counts per minute) sees the video's own timing, exactly as from a camera.
#[derive(Debug, Default)]
pub struct MediaTimeline {
    anchor: Option<SystemTime>,
    last: Option<SystemTime>,
}

impl MediaTimeline {
    /// The capture time of the frame at stream position `position`, first seen at `now`.
    pub fn place(&mut self, position: Duration, now: SystemTime) -> SystemTime {
        let anchor = *self
            .anchor
            .get_or_insert_with(|| now.checked_sub(position).unwrap_or(now));
        let mut t = anchor + position;
        if let Some(last) = self.last {
            if t <= last {
                // The position went back (a file looped, a source restarted): carry on from
                // the last frame instead of going back in time.
                let restart = now.max(last + Duration::from_millis(1));
                self.anchor = Some(restart.checked_sub(position).unwrap_or(restart));
                t = restart;
            }
        }
        self.last = Some(t);
        t
    }
}

/// The node's analysis-rate factor, shared by every camera of an [`crate::Ingest`]: 1 while the
/// node keeps up; lower while it is over its capacity, so every camera gives up the same share
/// of its rate (fair degradation) instead of some cameras losing frames to the others.
#[derive(Debug)]
pub struct RateShare {
    /// The factor in millionths.
    factor: std::sync::atomic::AtomicU32,
}

impl Default for RateShare {
    fn default() -> Self {
        Self {
            factor: std::sync::atomic::AtomicU32::new(1_000_000),
        }
    }
}

impl RateShare {
    pub fn factor(&self) -> f64 {
        f64::from(self.factor.load(std::sync::atomic::Ordering::Relaxed)) / 1e6
    }

    /// Sets the factor, kept within 0.001..=1.
    pub fn set_factor(&self, factor: f64) {
        let f = if factor.is_nan() {
            1.0
        } else {
            factor.clamp(0.001, 1.0)
        };
        self.factor.store(
            (f * 1e6).round() as u32,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The rate `camera` is analysed at now: its own rate times the factor, never below its
    /// `min_analysis_fps` (nor above its own rate).
    pub fn fps_for(&self, camera: &pantau_config::CameraSettings) -> f64 {
        let base = camera.analysis_fps;
        let f = self.factor();
        if f >= 1.0 {
            base
        } else {
            (base * f).max(camera.min_analysis_fps.min(base))
        }
    }
}

/// Lets through frames at `fps` on average, chosen by stream position so the rate does not
/// depend on how fast frames are decoded. Resets when the position jumps back (file loop,
/// reconnect) or far ahead (gap in the stream).
///
/// A live camera's gate also has a phase: it starts (and starts again) only when the node's
/// monotonic clock is at the camera's offset within the interval, so cameras that connect
/// together (a node restart) do not all hand over their frames at the same instant, and the
/// shared detector sees a steady stream instead of bursts (lower and steadier latency).
#[derive(Debug, Clone)]
pub struct RateGate {
    interval_ns: u64,
    next_due: Option<u64>,
    fps: f64,
    /// Offset within the interval as a fraction of it, and since when the gate has been
    /// waiting for that moment (node monotonic ns).
    phase: Option<(f64, Option<u64>)>,
}

/// How close to its phase a live gate starts: wider than a frame of a 25-30 fps stream.
const PHASE_WINDOW_NS: u64 = 40_000_000;

/// Nanoseconds on the node's monotonic clock (shared by every camera, so phases compare).
pub fn node_clock_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// The phase of the `k`-th camera of a node: the golden-ratio sequence, so any number of
/// cameras are spread almost evenly over the interval.
pub fn phase_of(k: u64) -> f64 {
    (k as f64 * 0.618_033_988_749_895).fract()
}

impl RateGate {
    pub fn new(fps: f64) -> Self {
        let interval_ns = if fps > 0.0 { (1e9 / fps) as u64 } else { 0 };
        Self {
            interval_ns,
            next_due: None,
            fps,
            phase: None,
        }
    }

    /// A live camera's gate, starting at `phase` (0..1) of the interval on the node's clock.
    pub fn with_phase(mut self, phase: f64) -> Self {
        self.phase = Some((phase.rem_euclid(1.0), None));
        self
    }

    /// Whether the frame at `pts_ns` goes to analysis, the node's clock being at `now_ns`.
    pub fn admit_at(&mut self, pts_ns: u64, now_ns: u64) -> bool {
        let starting = match self.next_due {
            None => true,
            Some(due) => !(pts_ns + 2 * self.interval_ns >= due && pts_ns < due + self.interval_ns),
        };
        if let (true, Some((phase, waiting))) = (starting, self.phase.as_mut()) {
            let interval = self.interval_ns.max(1);
            let offset = (*phase * interval as f64) as u64;
            let at = (now_ns + interval - offset % interval) % interval;
            let since = *waiting.get_or_insert(now_ns);
            // Not yet its moment; never wait longer than one interval (slow streams).
            if at >= PHASE_WINDOW_NS && now_ns.saturating_sub(since) < interval {
                return false;
            }
            *waiting = None;
            self.next_due = Some(pts_ns + self.interval_ns);
            return true;
        }
        self.admit(pts_ns)
    }

    /// Changes the rate from the next admitted frame on (fair degradation).
    pub fn set_fps(&mut self, fps: f64) {
        #[allow(clippy::float_cmp)]
        if fps != self.fps {
            *self = Self {
                next_due: self.next_due,
                phase: self.phase,
                ..Self::new(fps)
            };
        }
    }

    /// Whether the frame at `pts_ns` goes to analysis.
    pub fn admit(&mut self, pts_ns: u64) -> bool {
        let slack = self.interval_ns / 2;
        match self.next_due {
            Some(due) if pts_ns + slack < due && pts_ns + 2 * self.interval_ns >= due => false,
            Some(due) if pts_ns + slack >= due && pts_ns < due + self.interval_ns => {
                self.next_due = Some(due + self.interval_ns);
                true
            }
            // First frame, position jumped back, or a gap: start again here.
            _ => {
                self.next_due = Some(pts_ns + self.interval_ns);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sr(ntp_secs: u32, ntp_frac: u32, rtp: u32) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6, 0, 0, 0, 1];
        p.extend_from_slice(&ntp_secs.to_be_bytes());
        p.extend_from_slice(&ntp_frac.to_be_bytes());
        p.extend_from_slice(&rtp.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    }

    #[test]
    fn live_gates_start_at_their_phase_and_keep_the_rate() {
        // 30 fps frames, analysed at 5 fps (200 ms), phase 0.5: starts near 100 ms of the
        // node clock's interval, then every 200 ms of stream time.
        let mut gate = RateGate::new(5.0).with_phase(0.5);
        let frame = 33_333_333u64;
        let mut admitted = Vec::new();
        for i in 0..60u64 {
            let (pts, now) = (i * frame, 1_000_000_000 + i * frame);
            if gate.admit_at(pts, now) {
                admitted.push(now % 200_000_000);
            }
        }
        assert_eq!(admitted.len(), 10, "{admitted:?}");
        // The first at the phase; then the usual schedule, one interval apart (the gate takes
        // the frame nearest each due time), so the phase holds.
        assert!(
            (100_000_000..140_000_000).contains(&admitted[0]),
            "{admitted:?}"
        );
        for at in &admitted[2..] {
            assert!(at.abs_diff(admitted[1]) < 1_000, "{admitted:?}");
        }
        // Spread: the phases of the first cameras differ by at least a tenth of the interval.
        let mut phases: Vec<f64> = (0..8).map(phase_of).collect();
        phases.sort_by(f64::total_cmp);
        assert!(phases.windows(2).all(|w| w[1] - w[0] > 0.05), "{phases:?}");
        // A slow stream (2 fps) whose frames never hit the window still starts within one
        // interval.
        let mut slow = RateGate::new(5.0).with_phase(0.5);
        let starts: Vec<bool> = (0..4u64)
            .map(|i| slow.admit_at(i * 500_000_000, 1_000_000_000 + i * 500_000_000 + 7_000_000))
            .collect();
        assert!(starts.iter().any(|s| *s), "{starts:?}");
        assert!(!starts[0]);
    }

    #[test]
    fn sender_report_maps_rtp_to_wall_time() {
        // 2026-01-01T00:00:00Z is Unix 1767225600; half a second of NTP fraction.
        let ntp = (1_767_225_600u64 + NTP_UNIX_OFFSET_S) as u32;
        let report = SenderReport::parse(&sr(ntp, 1 << 31, 90_000), 90_000).expect("SR");
        let t0 = UNIX_EPOCH + Duration::from_millis(1_767_225_600_500);
        assert_eq!(report.wall, t0);
        assert_eq!(report.wall_time(180_000), t0 + Duration::from_secs(1));
        assert_eq!(report.wall_time(0), t0 - Duration::from_secs(1));
    }

    #[test]
    fn sender_report_handles_rtp_wraparound() {
        let ntp = (1_767_225_600u64 + NTP_UNIX_OFFSET_S) as u32;
        let report = SenderReport::parse(&sr(ntp, 0, u32::MAX - 44_999), 90_000).expect("SR");
        // 90_000 ticks later the counter has wrapped to 45_000.
        assert_eq!(
            report.wall_time(45_000),
            report.wall + Duration::from_secs(1)
        );
    }

    #[test]
    fn non_sr_packets_are_rejected() {
        let mut rr = sr(1, 0, 0);
        rr[1] = 201;
        assert!(SenderReport::parse(&rr, 90_000).is_none());
        assert!(SenderReport::parse(&[0x80, 200], 90_000).is_none());
    }

    #[test]
    fn rtp_timestamp_is_read() {
        let p = [0x80, 96, 0, 1, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0];
        assert_eq!(rtp_timestamp(&p), Some(0x1234_5678));
        assert_eq!(rtp_timestamp(&p[..8]), None);
    }

    #[test]
    fn pts_map_refuses_ambiguous_pts() {
        let mut m = RtpPtsMap::default();
        m.record(1000, 90);
        m.record(1000, 90);
        assert_eq!(m.lookup(1000), Some(90));
        m.record(2000, 270);
        m.record(2000, 180); // a B-frame clamped to the same PTS
        assert_eq!(m.lookup(2000), None);
    }

    #[test]
    fn timeline_keeps_the_camera_clock_and_never_goes_back() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ms = Duration::from_millis;
        let mut tl = CaptureTimeline::default();
        // No sender report yet: arrival time.
        assert_eq!(tl.place(None, t0), (t0, Placed::Arrival));
        // Camera clock runs 300 ms behind arrival.
        assert_eq!(
            tl.place(Some(t0 + ms(100)), t0 + ms(400)),
            (t0 + ms(100), Placed::Camera)
        );
        // Unknown RTP timestamp: arrival shifted by the learned offset.
        let (t, cam) = tl.place(None, t0 + ms(600));
        assert_eq!(cam, Placed::Camera);
        assert_eq!(t, t0 + ms(300));
        // A reading that would go back is held just after the previous one.
        let (t, _) = tl.place(Some(t0 + ms(250)), t0 + ms(650));
        assert!(t > t0 + ms(300));
    }

    #[test]
    fn a_camera_clock_in_1970_or_2090_is_not_used() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let mut tl = CaptureTimeline::new(s(300));
        let (t, placed) = tl.place(Some(UNIX_EPOCH + s(5)), now);
        assert_eq!(t, now);
        assert!(matches!(placed, Placed::ClockWrong(off) if off < -1.7e9));
        let (t, placed) = tl.place(Some(now + s(64 * 365 * 86_400)), now + s(1));
        assert_eq!(t, now + s(1));
        assert!(matches!(placed, Placed::ClockWrong(off) if off > 2e9));
        // Within the bound the camera's clock is used again.
        let (t, placed) = tl.place(Some(now + s(2) + s(100)), now + s(2));
        assert_eq!((t, placed), (now + s(102), Placed::Camera));
        // A clock that jumps back by more than the bound does not hold times in the future.
        let (t, _) = tl.place(None, now + s(3));
        assert_eq!(t, now + s(103));
        let mut tl = CaptureTimeline::new(s(1));
        tl.place(Some(now + ms(900)), now);
        let (t, _) = tl.place(Some(now + s(5)), now + s(3));
        assert_eq!(t, now + s(3), "off by 2 s with a bound of 1 s: arrival");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pts_map_finds_recent_frames() {
        let mut m = RtpPtsMap::default();
        for i in 0..300u64 {
            m.record(i * 40, (i * 3600) as u32);
        }
        assert_eq!(m.lookup(299 * 40), Some(299 * 3600));
        assert_eq!(m.lookup(0), None, "old entries are forgotten");
    }

    fn admitted(source_fps: f64, target: f64, seconds: f64) -> usize {
        let mut gate = RateGate::new(target);
        let frames = (source_fps * seconds) as u64;
        (0..frames)
            .filter(|i| gate.admit((*i as f64 * 1e9 / source_fps) as u64))
            .count()
    }

    #[test]
    fn gate_hits_the_target_rate() {
        // 10 s at 5 fps: 50 frames, give or take the one at the window's edge.
        for source in [25.0, 30.0, 23.976, 10.0] {
            let n = admitted(source, 5.0, 10.0);
            assert!((50..=51).contains(&n), "{source} fps source: {n}");
        }
        assert_eq!(
            admitted(10.0, 25.0, 10.0),
            100,
            "slower source: every frame"
        );
    }

    #[test]
    fn media_time_follows_the_stream_not_the_decoder() {
        let mut m = MediaTimeline::default();
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Decoded 10x faster than real time: 40 ms of video every 4 ms.
        let times: Vec<SystemTime> = (0..5)
            .map(|i| {
                m.place(
                    Duration::from_millis(40 * i),
                    start + Duration::from_millis(4 * i),
                )
            })
            .collect();
        for w in times.windows(2) {
            assert_eq!(
                w[1].duration_since(w[0]).expect("forward"),
                Duration::from_millis(40)
            );
        }
        // The file loops: position 0 again, time goes on.
        let after = m.place(Duration::ZERO, start + Duration::from_millis(20));
        assert!(after > times[4]);
        let next = m.place(Duration::from_millis(40), start + Duration::from_millis(24));
        assert_eq!(
            next.duration_since(after).expect("forward"),
            Duration::from_millis(40)
        );
    }

    #[test]
    fn gate_restarts_after_loop_or_gap() {
        let mut gate = RateGate::new(5.0);
        assert!(gate.admit(10_000_000_000));
        assert!(gate.admit(0), "position jumped back");
        assert!(!gate.admit(40_000_000));
        assert!(gate.admit(60_000_000_000), "gap");
    }

    proptest! {
        #[test]
        fn gate_rate_is_within_one_frame_of_target(
            source in 5.0f64..60.0, target in 0.5f64..30.0, seconds in 2.0f64..30.0
        ) {
            let got = admitted(source, target, seconds) as f64;
            let expected = target.min(source) * seconds;
            prop_assert!((got - expected).abs() <= 2.0 + expected * 0.02, "got {got}, expected {expected}");
        }
    }
}
