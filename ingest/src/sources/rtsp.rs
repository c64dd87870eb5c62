//! `rtsp://` and `rtsps://` sources: network cameras.
//!
//! Credentials are handed to `rtspsrc` as properties, never inside the location, so GStreamer
//! messages cannot leak them. RTP timestamps are noted per PTS before depayloading, and RTCP
//! sender reports are taken from the jitter buffer, so frames can carry the camera's clock.

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use pantau_config::{Credentials, Transport};
use url::Url;

use crate::clock::{rtp_timestamp, SenderReport};
use crate::pipeline::{lock, PipelineClock};
use crate::status::Problem;

pub(super) fn add(
    pipeline: &gst::Pipeline,
    url: &Url,
    transport: Transport,
    latency_ms: u32,
    credentials: Option<&Credentials>,
    tail: &gst::Pad,
    rtp_clock: &Arc<Mutex<PipelineClock>>,
) -> Result<(), Problem> {
    let src = gst::ElementFactory::make("rtspsrc")
        .name("src")
        .property("location", url.as_str())
        .property("latency", latency_ms)
        // Fail a dead TCP connection after 10 s instead of the default 20 s; the supervisor's
        // stall timer usually reacts first.
        .property("tcp-timeout", 10_000_000u64)
        .build()
        .map_err(|_| {
            Problem::MissingPlugin("GStreamer element 'rtspsrc' (gstreamer1.0-plugins-good)".into())
        })?;
    src.set_property_from_str(
        "protocols",
        match transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Auto => "udp+udp-mcast+tcp",
        },
    );
    if let Some(c) = credentials {
        src.set_property("user-id", &c.username);
        src.set_property("user-pw", c.password.expose());
    }
    pipeline
        .add(&src)
        .map_err(|e| Problem::Pipeline(e.to_string()))?;
    let decode = super::decodebin(pipeline, tail)?;

    // RTCP sender reports arrive at the jitter buffer of the RTP manager.
    let clock_sr = rtp_clock.clone();
    src.connect("new-manager", false, move |args| {
        let Some(Ok(manager)) = args.get(1).map(|v| v.get::<gst::Element>()) else {
            return None;
        };
        let clock_sr = clock_sr.clone();
        manager.connect("new-jitterbuffer", false, move |args| {
            let Some(Ok(jb)) = args.get(1).map(|v| v.get::<gst::Element>()) else {
                return None;
            };
            let clock_sr = clock_sr.clone();
            jb.connect("handle-sync", false, move |args| {
                let Some(Ok(s)) = args.get(1).map(|v| v.get::<gst::Structure>()) else {
                    return None;
                };
                let (Ok(rate), Ok(buffer)) = (
                    s.get::<u32>("clock-rate"),
                    s.get::<gst::Buffer>("sr-buffer"),
                ) else {
                    return None;
                };
                if let Ok(map) = buffer.map_readable() {
                    if let Some(report) = SenderReport::parse(&map, rate) {
                        lock(&clock_sr).report = Some(report);
                    }
                }
                None
            });
            None
        });
        None
    });

    // The tracks the camera offers (from its SDP, before any data): once every track has its
    // pad and none of them is video, say so instead of failing on the first audio packet.
    let offered: Arc<Mutex<Vec<String>>> = Arc::default();
    let offered_select = offered.clone();
    src.connect("select-stream", false, move |args| {
        if let Some(Ok(caps)) = args.get(2).map(|v| v.get::<gst::Caps>()) {
            if let Some(kind) = super::track_kind(&caps) {
                lock(&offered_select).push(kind);
            }
        }
        Some(true.to_value())
    });
    src.connect_no_more_pads(move |src| {
        let offered = lock(&offered).clone();
        if !offered.is_empty() && !offered.iter().any(|k| k.starts_with("video")) {
            super::post_no_video(src, &offered);
        }
    });

    // Link the video RTP stream to the decoder and note each packet's RTP timestamp.
    let clock_pts = rtp_clock.clone();
    let decode_sink = decode
        .static_pad("sink")
        .ok_or_else(|| Problem::Pipeline("decodebin has no sink pad".into()))?;
    src.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|c| {
                c.structure(0).map(|s| {
                    s.get::<&str>("media")
                        .map(|m| m == "video")
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false);
        if !is_video || decode_sink.is_linked() {
            return;
        }
        let clock_pts = clock_pts.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &info.data {
                if let (Some(pts), Ok(map)) = (buffer.pts(), buffer.map_readable()) {
                    if let Some(rtp) = rtp_timestamp(&map) {
                        lock(&clock_pts).pts_map.record(pts.nseconds(), rtp);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
        if let Err(e) = pad.link(&decode_sink) {
            tracing::warn!(error = ?e, "cannot link RTSP video to the decoder");
        }
    });
    Ok(())
}
