//! Test cameras and test material made with GStreamer, shared by the stream tests.
// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use pantau_config::{CameraSettings, Config};

/// Camera settings through the same parser and validation as a config file: `ingest` is the
/// body of its `[ingest]` section (and what follows it, such as `[ingest.reconnect]`).
pub fn camera(ingest: &str, id: &str, url: &str) -> CameraSettings {
    let text = format!("[ingest]\n{ingest}\n[[cameras]]\nid = \"{id}\"\nurl = \"{url}\"\n");
    let config = Config::parse(&text).expect("test config parses");
    let valid = config
        .validate(Path::new("/"), &|_| None)
        .expect("test config is valid");
    valid.cameras.into_iter().next().expect("one camera")
}

/// The GStreamer elements of `elements` this machine lacks.
pub fn missing(elements: &[&str]) -> Vec<String> {
    elements
        .iter()
        .filter(|e| gst::ElementFactory::find(e).is_none())
        .map(|e| e.to_string())
        .collect()
}

/// Runs a GStreamer pipeline to its end (material for the streams).
pub fn run_to_end(description: &str) {
    let pipeline = gst::parse::launch(description).expect("material pipeline parses");
    pipeline
        .set_state(gst::State::Playing)
        .expect("material pipeline starts");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("cannot make test material: {}", e.error()),
            _ => {}
        }
    }
    pipeline
        .set_state(gst::State::Null)
        .expect("material pipeline stops");
}
