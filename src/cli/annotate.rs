//! Writes an annotated video (boxes, ids, trails, lines, counts) with GStreamer:
//! BGR frames -> appsrc -> x264 -> MP4.

use std::path::Path;

use anyhow::{anyhow, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use opencv::core::Mat;
use opencv::prelude::*;
use pantau_analytics::draw::{draw, Trails};
use pantau_analytics::scene::{Scene, SceneUpdate};
use pantau_ingest::Frame;

pub struct Annotator {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    size: Option<(u32, u32)>,
    trails: Trails,
    labels: Vec<String>,
    path: std::path::PathBuf,
    /// Previous frame's position and spacing, to give each buffer a duration (the MP4 muxer
    /// needs one for the last frame).
    last_pts: Option<u64>,
    interval_ns: u64,
}

impl Annotator {
    pub fn new(path: &Path, labels: Vec<String>) -> anyhow::Result<Self> {
        let description = "appsrc name=src format=time ! videoconvert ! video/x-raw,format=I420 ! \
             x264enc speed-preset=veryfast key-int-max=60 ! h264parse ! mp4mux ! filesink name=out";
        let pipeline = gst::parse::launch(description)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("not a pipeline"))?;
        let out = pipeline.by_name("out").context("filesink")?;
        out.set_property("location", path.to_string_lossy().as_ref());
        let src = pipeline
            .by_name("src")
            .context("appsrc")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| anyhow!("not an appsrc"))?;
        src.set_property("block", true);
        Ok(Self {
            pipeline,
            src,
            size: None,
            trails: Trails::default(),
            labels,
            path: path.to_path_buf(),
            last_pts: None,
            interval_ns: 40_000_000,
        })
    }

    /// Draws `update` on a copy of `frame` and appends it to the video.
    pub fn push(
        &mut self,
        frame: &Frame,
        scene: &Scene,
        update: &SceneUpdate,
    ) -> anyhow::Result<()> {
        let (w, h) = (frame.width, frame.height);
        if self.size.is_none() {
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "BGR")
                .field("width", w as i32)
                .field("height", h as i32)
                .field("framerate", gst::Fraction::new(0, 1))
                .build();
            self.src.set_caps(Some(&caps));
            self.pipeline
                .set_state(gst::State::Playing)
                .with_context(|| format!("cannot start writing {}", self.path.display()))?;
            self.size = Some((w, h));
        }
        if self.size != Some((w, h)) {
            return Ok(()); // a size change mid-file is not supported by the writer; skip
        }
        let row = w as usize * 3;
        let mut packed = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            packed.extend_from_slice(&frame.data()[y * frame.stride..y * frame.stride + row]);
        }
        let flat = Mat::new_rows_cols_with_data(h as i32, row as i32, &packed)?;
        let mut img = flat.reshape(3, h as i32)?.try_clone()?;
        self.trails.push(update);
        let scale = w as f32 / frame.source_width.max(1) as f32;
        draw(&mut img, scale, scene, update, &self.trails, &self.labels)?;
        // GStreamer rows are 4-byte aligned.
        let stride = (row + 3) & !3;
        let data = img.data_bytes()?;
        let mut out = vec![0u8; stride * h as usize];
        for y in 0..h as usize {
            out[y * stride..y * stride + row].copy_from_slice(&data[y * row..(y + 1) * row]);
        }
        let mut buffer = gst::Buffer::from_mut_slice(out);
        if let Some(pts) = frame.pts_ns {
            if let Some(last) = self.last_pts.filter(|l| pts > *l) {
                self.interval_ns = pts - last;
            }
            self.last_pts = Some(pts);
            let b = buffer.get_mut().context("new buffer is writable")?;
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(self.interval_ns));
        }
        self.src
            .push_buffer(buffer)
            .map_err(|e| anyhow!("writing {}: {e:?}", self.path.display()))?;
        Ok(())
    }

    /// Finishes the file.
    pub fn finish(self) -> anyhow::Result<()> {
        if self.size.is_some() {
            let _ = self.src.end_of_stream();
            let bus = self.pipeline.bus().context("bus")?;
            for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
                match msg.view() {
                    gst::MessageView::Eos(_) => break,
                    gst::MessageView::Error(e) => {
                        let _ = self.pipeline.set_state(gst::State::Null);
                        return Err(anyhow!("writing {}: {}", self.path.display(), e.error()));
                    }
                    _ => {}
                }
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        Ok(())
    }
}
