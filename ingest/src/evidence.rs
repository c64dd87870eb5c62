//! The encoded stream kept for evidence: each camera's H.264/H.265 access units as they came
//! from the camera (after the parser, before the decoder; never re-encoded), in a ring from a
//! keyframe, bounded in time and in memory per camera and for all cameras together. A clip is
//! cut from the ring at keyframe boundaries and written as MP4 by GStreamer's muxer.
//!
//! ```text
//!  ... -> depayloader -> h264parse/h265parse -[probe: PacketRing]-> decoder -> ...
//!  PacketRing::clip(from, to) -> EncodedClip -> appsrc -> parser -> mp4mux -> clip.mp4
//! ```
//!
//! Packets are placed in time by the camera's capture clock: the newest analysed frame maps
//! its PTS to its capture time, and a packet's time is that plus the PTS difference, so a clip
//! asked for an event's capture time holds the frames the event was seen in.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::pipeline::lock;

/// What the rings of all cameras may hold together, in bytes.
#[derive(Debug)]
pub struct RingBudget {
    limit: usize,
    used: AtomicUsize,
}

impl RingBudget {
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            limit: limit_bytes,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes held by all rings now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }
}

/// How much one camera's ring keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingLimits {
    /// Video older than this (behind the newest packet) is let go, a whole GOP at a time.
    pub keep: Duration,
    /// The most bytes this camera holds.
    pub camera_bytes: usize,
}

/// One access unit (a frame's encoded data).
#[derive(Debug, Clone)]
struct Packet {
    /// Capture time (see the module doc).
    at: SystemTime,
    pts: Option<u64>,
    dts: Option<u64>,
    duration: Option<u64>,
    key: bool,
    buffer: gst::Buffer,
    /// The stretch of stream it belongs to: one pipeline, one format. A clip never spans two.
    run: u64,
    caps: gst::Caps,
}

/// Why no clip could be cut or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClipError {
    #[error(
        "no encoded video is kept for this camera (evidence is off, the stream is not H.264 or \
         H.265, or no keyframe has arrived yet)"
    )]
    Nothing,
    #[error(
        "the kept video covers {kept_from} to {kept_to}, not the time asked for ({from} to {to})"
    )]
    OutOfRange {
        from: String,
        to: String,
        kept_from: String,
        kept_to: String,
    },
    #[error("cannot write the MP4 {path}: {reason}")]
    Write { path: String, reason: String },
}

/// One camera's kept stream.
#[derive(Debug)]
pub(crate) struct PacketRing {
    camera: String,
    limits: RingLimits,
    budget: Arc<RingBudget>,
    packets: VecDeque<Packet>,
    bytes: usize,
    keys: usize,
    caps: Option<gst::Caps>,
    /// The current run (see [`Packet::run`]) and whether it still waits for its keyframe.
    run: u64,
    need_key: bool,
    /// Times the ring was emptied because one GOP did not fit its memory.
    overflows: u64,
}

impl PacketRing {
    pub fn new(camera: &str, limits: RingLimits, budget: Arc<RingBudget>) -> Self {
        Self {
            camera: camera.to_string(),
            limits,
            budget,
            packets: VecDeque::new(),
            bytes: 0,
            keys: 0,
            caps: None,
            run: 0,
            need_key: true,
            overflows: 0,
        }
    }

    /// A new pipeline (a reconnect): its timestamps start again, so what comes is a new run.
    /// What was kept stays: the video before a camera was cut off is what an incident needs.
    pub fn new_pipeline(&mut self) {
        self.run += 1;
        self.need_key = true;
    }

    /// Empties the ring.
    fn clear(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.packets.clear();
        self.bytes = 0;
        self.keys = 0;
        self.need_key = true;
    }

    /// Capture time of the newest packet: "now" on the camera's clock.
    pub fn newest(&self) -> Option<SystemTime> {
        self.packets.back().map(|p| p.at)
    }

    /// Bytes held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes one access unit. A change of format (new parameter sets, resolution) starts a new
    /// run: packets of two formats cannot go into one file.
    fn push(&mut self, caps: &gst::Caps, mut packet: Packet) {
        if self.caps.as_ref() != Some(caps) {
            self.caps = Some(caps.clone());
            self.new_pipeline();
        }
        if self.need_key && !packet.key {
            return; // a run starts at a keyframe
        }
        self.need_key = false;
        packet.run = self.run;
        packet.caps = caps.clone();
        let size = packet.buffer.size();
        self.keys += usize::from(packet.key);
        self.bytes += size;
        self.budget.used.fetch_add(size, Ordering::Relaxed);
        let newest = packet.at;
        self.packets.push_back(packet);
        // Old video goes first, one GOP at a time, always keeping the newest GOP.
        while self.keys > 1 {
            let second_key = self.packets.iter().skip(1).find(|p| p.key).map(|p| p.at);
            let too_old = second_key.is_some_and(|at| {
                newest.duration_since(at).unwrap_or_default() >= self.limits.keep
            });
            let too_big = self.bytes > self.limits.camera_bytes || self.budget.over();
            if !(too_old || too_big) {
                break;
            }
            self.drop_first_gop();
        }
        if self.bytes > self.limits.camera_bytes {
            // One GOP is larger than the camera's share: keep nothing rather than more.
            self.overflows += 1;
            if self.overflows == 1 || self.overflows.is_multiple_of(100) {
                tracing::warn!(
                    camera = %self.camera,
                    times = self.overflows,
                    limit_bytes = self.limits.camera_bytes,
                    "one GOP of this camera is larger than evidence.camera_mb: no evidence is \
                     kept until it fits; raise evidence.camera_mb or shorten the camera's GOP"
                );
            }
            self.clear();
        }
    }

    fn drop_first_gop(&mut self) {
        let mut first = true;
        while let Some(p) = self.packets.front() {
            if p.key && !first {
                break;
            }
            first = false;
            let size = p.buffer.size();
            self.keys -= usize::from(p.key);
            self.bytes -= size;
            self.budget.used.fetch_sub(size, Ordering::Relaxed);
            self.packets.pop_front();
        }
    }

    /// The packets from the last keyframe at or before `from` to the last packet at or before
    /// `to`. When the ring starts after `from`, the clip starts at the ring's first keyframe
    /// (its manifest says when).
    pub fn clip(&self, from: SystemTime, to: SystemTime) -> Result<EncodedClip, ClipError> {
        let (Some(first), Some(last)) = (self.packets.front(), self.packets.back()) else {
            return Err(ClipError::Nothing);
        };
        if to < first.at || from > last.at {
            return Err(ClipError::OutOfRange {
                from: pantau_events::time::format(from),
                to: pantau_events::time::format(to),
                kept_from: pantau_events::time::format(first.at),
                kept_to: pantau_events::time::format(last.at),
            });
        }
        let start = self
            .packets
            .iter()
            .rposition(|p| p.key && p.at <= from)
            .unwrap_or(0);
        let end = self
            .packets
            .iter()
            .rposition(|p| p.at <= to)
            .unwrap_or(start);
        // One run only: the clip ends where the camera reconnected or changed format.
        let run = self.packets[start].run;
        let packets: Vec<Packet> = self
            .packets
            .range(start..=end.max(start))
            .take_while(|p| p.run == run)
            .cloned()
            .collect();
        Ok(EncodedClip {
            caps: self.packets[start].caps.clone(),
            packets,
        })
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Encoded video cut from a ring, ready to be written.
#[derive(Debug, Clone)]
pub struct EncodedClip {
    caps: gst::Caps,
    packets: Vec<Packet>,
}

impl EncodedClip {
    /// Capture time of the first frame.
    pub fn start(&self) -> SystemTime {
        self.packets
            .first()
            .map_or(SystemTime::UNIX_EPOCH, |p| p.at)
    }

    /// Capture time of the last frame.
    pub fn end(&self) -> SystemTime {
        self.packets.last().map_or(SystemTime::UNIX_EPOCH, |p| p.at)
    }

    /// Access units (frames) in the clip.
    pub fn frames(&self) -> usize {
        self.packets.len()
    }

    /// Bytes of encoded video.
    pub fn bytes(&self) -> usize {
        self.packets.iter().map(|p| p.buffer.size()).sum()
    }

    /// `H.264` or `H.265`.
    pub fn codec(&self) -> &'static str {
        match self.caps.structure(0).map(|s| s.name().as_str()) {
            Some("video/x-h265") => "H.265",
            _ => "H.264",
        }
    }

    /// Width and height, when the stream says.
    pub fn size(&self) -> Option<(u32, u32)> {
        let s = self.caps.structure(0)?;
        let w = s.get::<i32>("width").ok()?;
        let h = s.get::<i32>("height").ok()?;
        Some((w.max(0) as u32, h.max(0) as u32))
    }

    /// Writes the clip as MP4 (`mp4mux`, the moov atom first so players start at once) to
    /// `path`, whole or not at all: it is written beside as `.part` and renamed. Blocks; the
    /// time it takes is that of copying the bytes.
    pub fn write_mp4(&self, path: &Path) -> Result<(), ClipError> {
        let part = path.with_extension("mp4.part");
        let result = self.mux(&part).and_then(|()| {
            std::fs::rename(&part, path).map_err(|e| ClipError::Write {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    fn mux(&self, path: &Path) -> Result<(), ClipError> {
        let fail = |reason: String| ClipError::Write {
            path: path.display().to_string(),
            reason,
        };
        let parser = match self.codec() {
            "H.265" => "h265parse",
            _ => "h264parse",
        };
        let make = |factory: &str| {
            gst::ElementFactory::make(factory)
                .build()
                .map_err(|_| fail(format!("GStreamer element '{factory}' is missing")))
        };
        let src = gst_app::AppSrc::builder()
            .caps(&self.caps)
            .format(gst::Format::Time)
            .build();
        let parse = make(parser)?;
        let mux = make("mp4mux")?;
        mux.set_property("faststart", true);
        let sink = make("filesink")?;
        sink.set_property("location", path.to_string_lossy().as_ref());
        let pipeline = gst::Pipeline::with_name("evidence-mp4");
        pipeline
            .add_many([src.upcast_ref(), &parse, &mux, &sink])
            .map_err(|e| fail(e.to_string()))?;
        gst::Element::link_many([src.upcast_ref(), &parse, &mux, &sink])
            .map_err(|e| fail(e.to_string()))?;
        let stop = |pipeline: &gst::Pipeline| {
            let _ = pipeline.set_state(gst::State::Null);
        };
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            stop(&pipeline);
            return Err(fail(e.to_string()));
        }
        // The clip's own timeline starts at 0: the first keyframe's decoding time.
        let base = self
            .packets
            .first()
            .and_then(|p| match (p.dts, p.pts) {
                (Some(d), Some(p)) => Some(d.min(p)),
                (d, p) => d.or(p),
            })
            .unwrap_or(0);
        for p in &self.packets {
            let mut buffer = p.buffer.copy();
            {
                let b = buffer.make_mut();
                let pts = p
                    .pts
                    .map(|t| gst::ClockTime::from_nseconds(t.saturating_sub(base)));
                let dts = p.dts.or(p.pts);
                b.set_pts(pts);
                b.set_dts(dts.map(|t| gst::ClockTime::from_nseconds(t.saturating_sub(base))));
                b.set_duration(p.duration.map(gst::ClockTime::from_nseconds));
            }
            if src.push_buffer(buffer).is_err() {
                break; // the error is on the bus
            }
        }
        let _ = src.end_of_stream();
        let bus = pipeline
            .bus()
            .ok_or_else(|| fail("the muxer has no bus".into()))?;
        // Copying even a large clip takes well under a second; this only guards a stuck disk.
        let limit = gst::ClockTime::from_seconds(30 + (self.bytes() / (1 << 20)) as u64);
        let outcome = match bus
            .timed_pop_filtered(limit, &[gst::MessageType::Eos, gst::MessageType::Error])
        {
            Some(m) => match m.view() {
                gst::MessageView::Eos(_) => Ok(()),
                gst::MessageView::Error(e) => Err(fail(e.error().to_string())),
                _ => Ok(()),
            },
            None => Err(fail(format!("not finished after {limit}"))),
        };
        stop(&pipeline);
        outcome
    }
}

/// Taps the parser of the camera's video inside `decodebin` and keeps what it passes to the
/// decoder in `ring`. `anchor` holds the newest analysed frame's (PTS, capture time).
pub(crate) fn tap_parser(
    pipeline: &gst::Pipeline,
    ring: Arc<Mutex<PacketRing>>,
    anchor: Arc<Mutex<Option<(u64, SystemTime)>>>,
) {
    pipeline.connect_deep_element_added(move |_, _, element| {
        let is_parser = element
            .factory()
            .is_some_and(|f| matches!(f.name().as_str(), "h264parse" | "h265parse"));
        if !is_parser {
            return;
        }
        let Some(pad) = element.static_pad("src") else {
            return;
        };
        let ring = ring.clone();
        let anchor = anchor.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(caps) = pad.current_caps() else {
                return gst::PadProbeReturn::Ok;
            };
            let pts = buffer.pts().map(|t| t.nseconds());
            let at = place(pts, *lock(&anchor));
            let packet = Packet {
                at,
                pts,
                dts: buffer.dts().map(|t| t.nseconds()),
                duration: buffer.duration().map(|t| t.nseconds()),
                key: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                buffer: buffer.clone(),
                run: 0,
                caps: caps.clone(),
            };
            lock(&ring).push(&caps, packet);
            gst::PadProbeReturn::Ok
        });
    });
}

/// A packet's capture time from its PTS and the newest frame's (PTS, capture time); the
/// arrival time while no frame has been analysed.
fn place(pts: Option<u64>, anchor: Option<(u64, SystemTime)>) -> SystemTime {
    match (pts, anchor) {
        (Some(pts), Some((at_pts, at))) if pts >= at_pts => at + Duration::from_nanos(pts - at_pts),
        (Some(pts), Some((at_pts, at))) => at
            .checked_sub(Duration::from_nanos(at_pts - pts))
            .unwrap_or(at),
        _ => SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn caps() -> gst::Caps {
        gst::Caps::builder("video/x-h264")
            .field("width", 1280i32)
            .field("height", 720i32)
            .build()
    }

    fn packet(t0: SystemTime, ms: u64, key: bool, size: usize) -> Packet {
        Packet {
            at: t0 + Duration::from_millis(ms),
            pts: Some(ms * MS),
            dts: Some(ms * MS),
            duration: Some(100 * MS),
            key,
            buffer: gst::Buffer::with_size(size).expect("buffer"),
            run: 0,
            caps: caps(),
        }
    }

    /// 10 fps, a keyframe every second.
    fn fill(ring: &mut PacketRing, t0: SystemTime, seconds: u64, size: usize) {
        for i in 0..seconds * 10 {
            ring.push(&caps(), packet(t0, i * 100, i % 10 == 0, size));
        }
    }

    fn limits(keep_s: u64, camera_bytes: usize) -> RingLimits {
        RingLimits {
            keep: Duration::from_secs(keep_s),
            camera_bytes,
        }
    }

    #[test]
    fn keeps_whole_gops_for_the_time_asked() {
        gst::init().expect("gstreamer");
        let budget = Arc::new(RingBudget::new(1 << 30));
        let mut ring = PacketRing::new("cam", limits(5, 1 << 30), budget.clone());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        fill(&mut ring, t0, 20, 1000);
        // 5 s behind the newest packet (19.9 s) is 14.9 s: the GOP from 14 s stays.
        let first = ring.packets.front().expect("packets");
        assert!(first.key);
        assert_eq!(first.at, t0 + Duration::from_secs(14));
        assert_eq!(ring.bytes(), 60 * 1000);
        assert_eq!(budget.used(), 60 * 1000);
        drop(ring);
        assert_eq!(budget.used(), 0, "a camera removed gives its memory back");
    }

    #[test]
    fn starts_at_a_keyframe_and_cuts_at_keyframes() {
        gst::init().expect("gstreamer");
        let budget = Arc::new(RingBudget::new(1 << 30));
        let mut ring = PacketRing::new("cam", limits(60, 1 << 30), budget);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        ring.push(&caps(), packet(t0, 0, false, 10)); // before any keyframe: useless
        assert!(ring.packets.is_empty());
        fill(&mut ring, t0, 10, 10);
        let clip = ring
            .clip(
                t0 + Duration::from_millis(3500),
                t0 + Duration::from_millis(6250),
            )
            .expect("clip");
        assert_eq!(clip.start(), t0 + Duration::from_secs(3));
        assert_eq!(clip.end(), t0 + Duration::from_millis(6200));
        assert_eq!(clip.frames(), 33);
        assert_eq!(clip.codec(), "H.264");
        assert_eq!(clip.size(), Some((1280, 720)));
        let gone = ring.clip(t0 + Duration::from_secs(20), t0 + Duration::from_secs(30));
        assert!(
            matches!(gone, Err(ClipError::OutOfRange { .. })),
            "{gone:?}"
        );
    }

    #[test]
    fn memory_caps_drop_the_oldest_gops() {
        gst::init().expect("gstreamer");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // Per camera: 25 kB holds two 10 kB GOPs.
        let budget = Arc::new(RingBudget::new(1 << 30));
        let mut ring = PacketRing::new("cam", limits(60, 25_000), budget);
        fill(&mut ring, t0, 10, 1000);
        assert_eq!(ring.bytes(), 20_000);
        assert_eq!(
            ring.packets.front().map(|p| p.at),
            Some(t0 + Duration::from_secs(8))
        );
        // All cameras: two rings share 30 kB; each keeps at least its newest GOP.
        let budget = Arc::new(RingBudget::new(30_000));
        let mut a = PacketRing::new("cam", limits(60, 1 << 30), budget.clone());
        let mut b = PacketRing::new("cam", limits(60, 1 << 30), budget.clone());
        fill(&mut a, t0, 10, 1000);
        fill(&mut b, t0, 10, 1000);
        assert!(budget.used() <= 30_000 + 10_000, "{}", budget.used());
        assert!(a.bytes() >= 10_000 && b.bytes() >= 10_000);
        // A GOP larger than the camera's share: nothing is kept, and that is counted.
        let mut small =
            PacketRing::new("cam", limits(60, 5_000), Arc::new(RingBudget::new(1 << 30)));
        fill(&mut small, t0, 2, 1000);
        assert!(small.overflows > 0);
        assert!(small.bytes() <= 5_000);
    }

    #[test]
    fn a_clip_never_spans_a_reconnect_or_a_new_format() {
        gst::init().expect("gstreamer");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut ring = PacketRing::new(
            "cam",
            limits(60, 1 << 30),
            Arc::new(RingBudget::new(1 << 30)),
        );
        fill(&mut ring, t0, 3, 100);
        // The camera is cut off and comes back: what was kept before stays.
        ring.new_pipeline();
        ring.push(&caps(), packet(t0, 3050, false, 100)); // no keyframe yet: dropped
        for i in 0..10 {
            ring.push(&caps(), packet(t0, 3100 + i * 100, i == 0, 100));
        }
        assert_eq!(ring.packets.len(), 40);
        let before = ring
            .clip(
                t0 + Duration::from_millis(2500),
                t0 + Duration::from_secs(5),
            )
            .expect("clip");
        assert_eq!(
            before.end(),
            t0 + Duration::from_millis(2900),
            "ends at the cut"
        );
        // Then the format changes: a new run with its own caps.
        let other = gst::Caps::builder("video/x-h265")
            .field("width", 640i32)
            .field("height", 360i32)
            .build();
        ring.push(&other, packet(t0, 4100, true, 100));
        ring.push(&other, packet(t0, 4200, false, 100));
        let after = ring
            .clip(
                t0 + Duration::from_millis(4150),
                t0 + Duration::from_secs(5),
            )
            .expect("clip");
        assert_eq!((after.codec(), after.frames()), ("H.265", 2));
        assert_eq!(after.start(), t0 + Duration::from_millis(4100));
        assert_eq!(ring.newest(), Some(t0 + Duration::from_millis(4200)));
    }

    #[test]
    fn packets_are_placed_on_the_capture_clock() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let anchor = Some((5 * 1_000_000_000, at));
        assert_eq!(
            place(Some(6 * 1_000_000_000), anchor),
            at + Duration::from_secs(1)
        );
        assert_eq!(
            place(Some(4 * 1_000_000_000), anchor),
            at - Duration::from_secs(1)
        );
    }
}
