//! `test://` sources: a live synthetic pattern, to try pantau without a camera.

use gstreamer as gst;
use gstreamer::prelude::*;
use pantau_config::TestPattern;

use crate::status::Problem;

pub(super) fn add(
    pipeline: &gst::Pipeline,
    pattern: TestPattern,
    width: u32,
    height: u32,
    fps: u32,
    tail: &gst::Pad,
) -> Result<(), Problem> {
    let src = gst::ElementFactory::make("videotestsrc")
        .name("src")
        .property("is-live", true)
        .build()
        .map_err(|_| Problem::MissingPlugin("GStreamer element 'videotestsrc'".into()))?;
    src.set_property_from_str("pattern", pattern.gst_name());
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("framerate", gst::Fraction::new(fps as i32, 1))
        .build();
    let filter = gst::ElementFactory::make("capsfilter")
        .name("src-caps")
        .property("caps", caps)
        .build()
        .map_err(|_| Problem::MissingPlugin("GStreamer element 'capsfilter'".into()))?;
    pipeline
        .add_many([&src, &filter])
        .map_err(|e| Problem::Pipeline(e.to_string()))?;
    src.link(&filter)
        .map_err(|e| Problem::Pipeline(e.to_string()))?;
    let out = filter
        .static_pad("src")
        .ok_or_else(|| Problem::Pipeline("capsfilter has no src pad".into()))?;
    out.link(tail)
        .map_err(|e| Problem::Pipeline(format!("cannot link test pattern: {e:?}")))?;
    Ok(())
}
