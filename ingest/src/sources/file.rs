//! `file://` sources: recorded clips for demos and replays.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::status::Problem;

pub(super) fn add(pipeline: &gst::Pipeline, path: &Path, tail: &gst::Pad) -> Result<(), Problem> {
    let src = gst::ElementFactory::make("filesrc")
        .name("src")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|_| Problem::MissingPlugin("GStreamer element 'filesrc'".into()))?;
    pipeline
        .add(&src)
        .map_err(|e| Problem::Pipeline(e.to_string()))?;
    let decode = super::decodebin(pipeline, tail)?;
    src.link(&decode)
        .map_err(|e| Problem::Pipeline(e.to_string()))?;
    Ok(())
}
