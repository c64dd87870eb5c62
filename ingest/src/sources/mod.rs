//! Camera sources: each adds its elements to a pipeline and links its decoded raw video to the
//! common tail (`pipeline.rs`). One file per kind of source.

mod file;
mod rtsp;
mod test_pattern;

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use pantau_config::SourceSpec;

use crate::pipeline::PipelineClock;
use crate::status::Problem;

/// Adds the source for `spec` to `pipeline`, linking decoded video to `tail`.
pub(crate) fn add(
    pipeline: &gst::Pipeline,
    spec: &SourceSpec,
    tail: &gst::Pad,
    rtp_clock: &Arc<Mutex<PipelineClock>>,
) -> Result<(), Problem> {
    match spec {
        SourceSpec::Rtsp {
            url,
            transport,
            latency_ms,
            credentials,
        } => rtsp::add(
            pipeline,
            url,
            *transport,
            *latency_ms,
            credentials.as_ref(),
            tail,
            rtp_clock,
        ),
        SourceSpec::File { path, .. } => file::add(pipeline, path, tail),
        SourceSpec::Test {
            pattern,
            width,
            height,
            fps,
        } => test_pattern::add(pipeline, *pattern, *width, *height, *fps, tail),
    }
}

/// A `decodebin` that links its first raw video pad to `tail` and ignores everything else
/// (audio tracks, metadata).
pub(crate) fn decodebin(
    pipeline: &gst::Pipeline,
    tail: &gst::Pad,
) -> Result<gst::Element, Problem> {
    let decodebin = gst::ElementFactory::make("decodebin")
        .name("decode")
        .build()
        .map_err(|_| Problem::MissingPlugin("GStreamer element 'decodebin'".into()))?;
    pipeline
        .add(&decodebin)
        .map_err(|e| Problem::Pipeline(e.to_string()))?;
    let tail = tail.clone();
    decodebin.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/x-raw"));
        if is_video && !tail.is_linked() {
            if let Err(e) = pad.link(&tail) {
                tracing::warn!(error = ?e, "cannot link decoded video");
            }
        }
    });
    Ok(decodebin)
}
