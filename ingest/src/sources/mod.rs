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

/// Name of the details structure of the error a source posts when its stream has no video
/// track; the supervisor turns it into [`Problem::NoVideo`].
pub(crate) const NO_VIDEO: &str = "pantau-no-video";

/// Posts the error that says the stream has no video track, only `carries` (e.g. "audio
/// (OPUS)"). Without it the camera would fail later and vaguely: data on the unlinked track
/// stops the pipeline as "not-linked", or nothing arrives before the connect timeout.
pub(crate) fn post_no_video(element: &gst::Element, carries: &[String]) {
    let carries = carries.join(", ");
    tracing::debug!(carries, "the stream has no video track");
    let details = gst::Structure::builder(NO_VIDEO)
        .field("carries", &carries)
        .build();
    let message =
        gst::message::Error::builder(gst::StreamError::WrongType, "the stream has no video track")
            .src(element)
            .details(details)
            .build();
    let _ = element.post_message(message);
}

/// What a track is, for people: "audio" for `audio/x-raw`, "audio (OPUS)" for an RTP track
/// (whose caps say `media` and `encoding-name`).
pub(crate) fn track_kind(caps: &gst::CapsRef) -> Option<String> {
    let s = caps.structure(0)?;
    if let Ok(media) = s.get::<&str>("media") {
        return Some(match s.get::<&str>("encoding-name") {
            Ok(encoding) => format!("{media} ({encoding})"),
            Err(_) => media.to_string(),
        });
    }
    Some(s.name().split('/').next().unwrap_or_default().to_string())
}

/// A `decodebin` that links its first raw video pad to `tail` and ignores everything else
/// (audio tracks, metadata). When it has exposed all its tracks and none is video, it says
/// so (a file or stream with only audio).
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
    decodebin.connect_no_more_pads(|decodebin| {
        let kinds: Vec<String> = decodebin
            .src_pads()
            .iter()
            .filter_map(|p| track_kind(&p.current_caps().unwrap_or_else(|| p.query_caps(None))))
            .collect();
        // A video track left undecoded is a missing decoder; decodebin reports that itself.
        if !kinds.is_empty() && !kinds.iter().any(|k| k == "video") {
            post_no_video(decodebin, &kinds);
        }
    });
    Ok(decodebin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_are_named_by_media_and_encoding() {
        gst::init().expect("gstreamer");
        let rtp = gst::Caps::builder("application/x-rtp")
            .field("media", "audio")
            .field("encoding-name", "OPUS")
            .build();
        assert_eq!(track_kind(&rtp).as_deref(), Some("audio (OPUS)"));
        let raw = gst::Caps::builder("audio/x-raw").build();
        assert_eq!(track_kind(&raw).as_deref(), Some("audio"));
        assert_eq!(track_kind(&gst::Caps::new_empty()), None);
    }
}
