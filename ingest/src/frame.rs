//! A decoded frame as analysis receives it.

use std::sync::Arc;
use std::time::SystemTime;

use gstreamer as gst;
use serde::Serialize;

/// Where a frame's capture time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureClock {
    /// The camera's own wall clock, from RTCP sender reports.
    RtcpSenderReport,
    /// The time the frame reached pantau (no sender report yet, or not RTSP).
    Arrival,
}

/// One frame, converted for analysis (BGR, 8 bits a channel, `analysis_width` wide) and
/// still owned by GStreamer's buffer (no copy).
#[derive(Debug)]
pub struct Frame {
    pub camera_id: Arc<str>,
    /// Per camera, increasing by one for every frame handed to analysis in this process.
    pub seq: u64,
    /// Wall-clock time the camera captured the frame.
    pub capture_time: SystemTime,
    pub clock: CaptureClock,
    /// Stream position (running time) of the frame, in nanoseconds.
    pub pts_ns: Option<u64>,
    /// Index (0-based) of this frame among all frames decoded from the source, skipped ones
    /// included: frame 10 of a file analysed every 5th frame is 10 here and 2 in `seq`.
    pub source_index: Option<u64>,
    pub width: u32,
    pub height: u32,
    /// Bytes per row (at least `3 * width`).
    pub stride: usize,
    /// Size of the full-resolution stream this frame was scaled from.
    pub source_width: u32,
    pub source_height: u32,
    buffer: gst::MappedBuffer<gst::buffer::Readable>,
    data_offset: usize,
}

impl Frame {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        camera_id: Arc<str>,
        seq: u64,
        capture_time: SystemTime,
        clock: CaptureClock,
        pts_ns: Option<u64>,
        source_index: Option<u64>,
        (width, height, stride, data_offset): (u32, u32, usize, usize),
        (source_width, source_height): (u32, u32),
        buffer: gst::MappedBuffer<gst::buffer::Readable>,
    ) -> Self {
        Self {
            camera_id,
            seq,
            capture_time,
            clock,
            pts_ns,
            source_index,
            width,
            height,
            stride,
            source_width,
            source_height,
            buffer,
            data_offset,
        }
    }

    /// BGR pixels, `height` rows of `stride` bytes.
    pub fn data(&self) -> &[u8] {
        let end = self.data_offset + self.stride * self.height as usize;
        &self.buffer.as_slice()[self.data_offset..end.min(self.buffer.len())]
    }

    /// Pixel (b, g, r) at column x, row y.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = y as usize * self.stride + x as usize * 3;
        self.data().get(i..i + 3).map(|p| [p[0], p[1], p[2]])
    }
}
