//! Camera health from the frames themselves: is the camera blind, blurred, frozen, moved or
//! slow? One [`HealthMonitor`] per camera looks at the analysis image a few times a second and
//! at every frame's capture time, and reports when a [`Condition`] starts (`New`) and when it
//! clears (`End`).
//!
//! Each look (every `sample_every_s`, default 0.5 s) reduces the frame to a small grey picture
//! (block means, at most 320 pixels wide), raw luma samples at the same points, and a 64x36
//! thumbnail; everything is measured on those: about half a millisecond for a 640x360 frame
//! (optimised build), some 0.1 % of a core per camera. Arrivals are counted on every frame.
//!
//! | condition      | measure (per look)                                                  | starts at                     | clears at                    | hold (start / clear) |
//! | -------------- | ------------------------------------------------------------------- | ----------------------------- | ---------------------------- | -------------------- |
//! | `blackout`     | mean luma (0-255) and contrast (its standard deviation)             | luma <= 20 and contrast <= 8  | luma >= 30 or contrast >= 14 | 5 s / 5 s            |
//! | `low_light`    | the same, when not black                                            | luma <= 50 and contrast <= 20 | luma >= 65 or contrast >= 28 | 10 s / 10 s          |
//! | `defocus`      | sharpness (variance of the Laplacian) / the camera's reference      | <= 0.3                        | >= 0.5                       | 10 s / 10 s          |
//! | `frozen`       | mean absolute difference of the raw samples from the previous look  | <= 0.25                       | >= 1.0                       | 10 s / 5 s           |
//! | `view_changed` | correlation of the edges of recent thumbnails with the reference's  | <= 0.4                        | >= 0.6                       | 10 s / 10 s          |
//! | `fps_drop`     | frames a second over `fps_window_s` (10 s) / the expected rate      | <= 0.5                        | >= 0.7                       | 10 s / 10 s          |
//!
//! A condition starts when at least `agreement` (80 %) of the looks of the last `start_s`
//! seconds say so, the newest included, and ends the same way over `clear_s`; between the two
//! thresholds a look counts for neither, so a measure hovering near a threshold cannot make a
//! condition flap. After a change the condition's window starts afresh: the next change of the
//! same condition comes no sooner than its hold time. Durations are seconds of capture time,
//! never frames.
//!
//! The references (sharpness and view) are learned over the first `reference_s` (60 s) of good
//! picture (neither dark nor dim) and then follow slow changes such as daylight (time constant
//! `adapt_s`, 900 s) while the camera is healthy; a camera that starts defocused or moved is its
//! own reference. The view is compared as a running mean of recent thumbnails (`view_smooth_s`,
//! 2 s), so passing traffic does not count as a changed view. Conditions do not pile up on one
//! cause: a dark picture (blackout or low light) says nothing about focus, stillness or the
//! view, and a blurred one nothing about the view; those neither start nor end while it lasts.
//! Frozen needs frames without any change at all: the raw samples keep the sensor's noise, so a
//! live but static scene is not frozen.
//!
//! `fps_drop` compares the arrival rate with the rate the camera was asked for (`expected_fps`,
//! the analysis rate) or, without one, with the rate it delivered over the reference period.
//! Arrivals are counted by frame sequence number, so frames dropped on the way to analysis (a
//! busy detector) still count as delivered. A gap longer than `max_gap_s` (a stall, which the
//! camera status reports) starts every window afresh.

use std::collections::{BTreeMap, VecDeque};

use opencv::core::{Mat, BORDER_REPLICATE, CV_32F};
use opencv::imgproc;
use opencv::prelude::*;

use crate::detect::ImageRef;

/// Largest width of the grey picture measures are taken on.
const GREY_WIDTH: usize = 320;
/// Thumbnail size for the view.
const THUMB_W: usize = 64;
const THUMB_H: usize = 36;
/// Rounding of time comparisons (seconds).
const EPS: f64 = 1e-6;

/// What can be wrong with a camera's picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// The picture is (nearly) black.
    Blackout,
    /// The picture is dark and flat, but not black.
    LowLight,
    /// The picture is much less sharp than the camera's own reference.
    Defocus,
    /// Frames are identical: the picture does not change at all.
    Frozen,
    /// The scene no longer looks like the reference: the camera moved or something covers it.
    ViewChanged,
    /// Frames arrive well below the expected rate.
    FpsDrop,
}

impl Condition {
    pub const ALL: [Condition; 6] = [
        Condition::Blackout,
        Condition::LowLight,
        Condition::Defocus,
        Condition::Frozen,
        Condition::ViewChanged,
        Condition::FpsDrop,
    ];

    /// The name in events (`details.condition`).
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Blackout => "blackout",
            Condition::LowLight => "low_light",
            Condition::Defocus => "defocus",
            Condition::Frozen => "frozen",
            Condition::ViewChanged => "view_changed",
            Condition::FpsDrop => "fps_drop",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A condition started or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    New,
    End,
}

/// One change of a camera's health.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthChange {
    pub condition: Condition,
    pub transition: Transition,
    /// Capture time (seconds) of the frame at which it was decided.
    pub at_s: f64,
    /// The figures that decided it (`mean_luma`, `similarity`, ...), and `duration_s` on `End`.
    pub figures: BTreeMap<&'static str, f64>,
    /// Ended because the camera stopped, not because the picture recovered.
    pub stopped: bool,
}

/// How long a condition must hold before it starts, and be gone before it ends (seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hold {
    pub start_s: f64,
    pub clear_s: f64,
}

impl Hold {
    pub const fn new(start_s: f64, clear_s: f64) -> Self {
        Self { start_s, clear_s }
    }
}

/// Where each condition starts and clears; between the two a look counts for neither.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Blackout: mean luma (0-255) at most this... Default 20.
    pub blackout_luma: f64,
    /// ...and contrast (standard deviation of luma) at most this. Default 8.
    pub blackout_contrast: f64,
    /// Blackout clears at a mean luma of at least this (default 30)...
    pub blackout_luma_clear: f64,
    /// ...or a contrast of at least this. Default 14.
    pub blackout_contrast_clear: f64,
    /// Low light: mean luma at most this (default 50) and contrast at most `low_light_contrast`.
    pub low_light_luma: f64,
    /// Default 20.
    pub low_light_contrast: f64,
    /// Low light clears at a mean luma of at least this (default 65)...
    pub low_light_luma_clear: f64,
    /// ...or a contrast of at least this. Default 28.
    pub low_light_contrast_clear: f64,
    /// Defocus: sharpness at most this share of the reference. Default 0.3.
    pub defocus_ratio: f64,
    /// Defocus clears at this share of the reference. Default 0.5.
    pub defocus_ratio_clear: f64,
    /// A reference sharpness below this is a scene with too little texture to judge focus.
    /// Default 4.
    pub min_sharpness: f64,
    /// Frozen: mean absolute luma difference from the previous look at most this. Default 0.25.
    pub frozen_difference: f64,
    /// Frozen clears at a difference of at least this. Default 1.0.
    pub frozen_difference_clear: f64,
    /// View changed: similarity (edge correlation, -1..1) to the reference at most this.
    /// Default 0.4.
    pub view_similarity: f64,
    /// View changed clears at this similarity. Default 0.6.
    pub view_similarity_clear: f64,
    /// Fps drop: arrival rate at most this share of the expected rate. Default 0.5.
    pub fps_ratio: f64,
    /// Fps drop clears at this share. Default 0.7.
    pub fps_ratio_clear: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            blackout_luma: 20.0,
            blackout_contrast: 8.0,
            blackout_luma_clear: 30.0,
            blackout_contrast_clear: 14.0,
            low_light_luma: 50.0,
            low_light_contrast: 20.0,
            low_light_luma_clear: 65.0,
            low_light_contrast_clear: 28.0,
            defocus_ratio: 0.3,
            defocus_ratio_clear: 0.5,
            min_sharpness: 4.0,
            frozen_difference: 0.25,
            frozen_difference_clear: 1.0,
            view_similarity: 0.4,
            view_similarity_clear: 0.6,
            fps_ratio: 0.5,
            fps_ratio_clear: 0.7,
        }
    }
}

/// What a [`HealthMonitor`] watches for and how patiently. Durations in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// Seconds between two looks at the pixels (arrivals are counted on every frame).
    /// Default 0.5.
    pub sample_every_s: f64,
    /// Seconds of good picture the sharpness and view references are learned from. Default 60.
    pub reference_s: f64,
    /// Time constant with which the references follow slow changes (daylight). Default 900.
    pub adapt_s: f64,
    /// Frames further apart than this (a stall) start every window afresh. Default 10.
    pub max_gap_s: f64,
    /// Share of the looks in a window that must agree to start or end a condition.
    /// Default 0.8.
    pub agreement: f64,
    /// Seconds over which the arrival rate is measured. Default 10.
    pub fps_window_s: f64,
    /// Time constant of the running mean of thumbnails the view is judged on, so that passing
    /// vehicles do not count as a changed view. Default 2.
    pub view_smooth_s: f64,
    /// The rate the camera should deliver (the analysis rate); `None`: the rate it delivered
    /// over the first `reference_s`.
    pub expected_fps: Option<f64>,
    /// Default 5 s to start, 5 s to clear.
    pub blackout: Hold,
    /// Default 10 s / 10 s.
    pub low_light: Hold,
    /// Default 10 s / 10 s.
    pub defocus: Hold,
    /// Default 10 s / 5 s.
    pub frozen: Hold,
    /// Default 10 s / 10 s.
    pub view_changed: Hold,
    /// Default 10 s / 10 s (after `fps_window_s` of history).
    pub fps_drop: Hold,
    pub thresholds: Thresholds,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            sample_every_s: 0.5,
            reference_s: 60.0,
            adapt_s: 900.0,
            max_gap_s: 10.0,
            agreement: 0.8,
            fps_window_s: 10.0,
            view_smooth_s: 2.0,
            expected_fps: None,
            blackout: Hold::new(5.0, 5.0),
            low_light: Hold::new(10.0, 10.0),
            defocus: Hold::new(10.0, 10.0),
            frozen: Hold::new(10.0, 5.0),
            view_changed: Hold::new(10.0, 10.0),
            fps_drop: Hold::new(10.0, 10.0),
            thresholds: Thresholds::default(),
        }
    }
}

impl HealthSettings {
    fn hold(&self, c: Condition) -> Hold {
        match c {
            Condition::Blackout => self.blackout,
            Condition::LowLight => self.low_light,
            Condition::Defocus => self.defocus,
            Condition::Frozen => self.frozen,
            Condition::ViewChanged => self.view_changed,
            Condition::FpsDrop => self.fps_drop,
        }
    }
}

/// What one look says about one condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence {
    On,
    Off,
    /// Between the start and clear thresholds.
    Between,
    /// Cannot be judged now (dark picture, no reference yet).
    Unknown,
}

fn band(value: f64, start: f64, clear: f64) -> Evidence {
    // Low values are bad for every measure that goes through here.
    if value <= start {
        Evidence::On
    } else if value >= clear {
        Evidence::Off
    } else {
        Evidence::Between
    }
}

/// The hysteresis of one condition: looks in a window, a start and an end.
#[derive(Debug)]
struct Judge {
    hold: Hold,
    /// When the open condition started.
    since: Option<f64>,
    looks: VecDeque<(f64, Evidence)>,
    /// Start of the unbroken history the window may look at.
    from: Option<f64>,
}

impl Judge {
    fn new(hold: Hold) -> Self {
        Self {
            hold,
            since: None,
            looks: VecDeque::new(),
            from: None,
        }
    }

    fn forget(&mut self) {
        self.looks.clear();
        self.from = None;
    }

    fn push(&mut self, t: f64, e: Evidence, agreement: f64) -> Option<Transition> {
        let from = *self.from.get_or_insert(t);
        self.looks.push_back((t, e));
        let keep = self.hold.start_s.max(self.hold.clear_s);
        while self.looks.front().is_some_and(|(s, _)| *s < t - keep - EPS) {
            self.looks.pop_front();
        }
        let (window, wanted) = match self.since {
            Some(_) => (self.hold.clear_s, Evidence::Off),
            None => (self.hold.start_s, Evidence::On),
        };
        // Decide on evidence, never because older looks aged out.
        if e != wanted || t - from + EPS < window {
            return None;
        }
        let (mut n, mut agree) = (0usize, 0usize);
        for (_, ev) in self
            .looks
            .iter()
            .rev()
            .take_while(|(s, _)| *s >= t - window - EPS)
        {
            n += 1;
            agree += usize::from(*ev == wanted);
        }
        if (agree as f64) < agreement * n as f64 {
            return None;
        }
        let change = match self.since.take() {
            Some(_) => Transition::End,
            None => {
                self.since = Some(t);
                Transition::New
            }
        };
        // The next change needs a whole window of its own.
        self.looks.clear();
        self.from = Some(t);
        Some(change)
    }
}

/// One look at a frame.
#[derive(Debug, Clone)]
struct Look {
    mean: f64,
    contrast: f64,
    sharpness: Option<f64>,
    thumb: Vec<f32>,
    thumb_size: (usize, usize),
    /// Raw (not averaged) luma at the grey picture's points: sensor noise stays in, so a live
    /// static scene is not mistaken for a frozen one.
    probe: Vec<u8>,
}

fn luma(p: &[u8]) -> u32 {
    // BT.601 weights on B, G, R.
    (29 * u32::from(p[0]) + 150 * u32::from(p[1]) + 77 * u32::from(p[2]) + 128) >> 8
}

impl Look {
    fn of(image: ImageRef<'_>) -> Option<Look> {
        let (w, h) = (image.width as usize, image.height as usize);
        if w < 8
            || h < 8
            || image.stride < 3 * w
            || image.data.len() < (h - 1) * image.stride + 3 * w
        {
            return None;
        }
        let step = w.div_ceil(GREY_WIDTH).max(1);
        let (gw, gh) = (w / step, h / step);
        let (grey, probe) = grey_and_probe(image, step, gw, gh);
        let n = grey.len() as f64;
        let mean = grey.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = grey
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let (tw, th) = (THUMB_W.min(gw), THUMB_H.min(gh));
        let mut sums = vec![0f32; tw * th];
        let mut counts = vec![0u32; tw * th];
        for y in 0..gh {
            let ty = y * th / gh;
            for x in 0..gw {
                let cell = ty * tw + x * tw / gw;
                sums[cell] += f32::from(grey[y * gw + x]);
                counts[cell] += 1;
            }
        }
        let thumb = sums
            .iter()
            .zip(&counts)
            .map(|(s, &c)| s / c.max(1) as f32)
            .collect();
        Some(Look {
            mean,
            contrast: var.sqrt(),
            // A look without a sharpness only leaves focus unjudged.
            sharpness: laplacian_variance(&grey, gw, gh).ok(),
            thumb,
            thumb_size: (tw, th),
            probe,
        })
    }
}

/// The frame reduced to `gw` x `gh` mean lumas of `step` x `step` blocks (rounded), and the
/// raw luma of each block's first pixel. Row by row over whole blocks, so the inner loops run
/// without index arithmetic or bounds checks: a look costs a fraction of a millisecond on a
/// 640 px frame.
fn grey_and_probe(image: ImageRef<'_>, step: usize, gw: usize, gh: usize) -> (Vec<u8>, Vec<u8>) {
    let mut grey = Vec::with_capacity(gw * gh);
    let mut probe = Vec::with_capacity(gw * gh);
    let area = (step * step) as u32;
    let span = gw * step * 3;
    let mut sums = vec![0u32; gw];
    for gy in 0..gh {
        sums.fill(0);
        for dy in 0..step {
            let start = (gy * step + dy) * image.stride;
            let row = &image.data[start..start + span];
            if dy == 0 {
                probe.extend(row.chunks_exact(step * 3).map(|b| luma(&b[..3]) as u8));
            }
            for (sum, block) in sums.iter_mut().zip(row.chunks_exact(step * 3)) {
                *sum += block.chunks_exact(3).map(luma).sum::<u32>();
            }
        }
        grey.extend(sums.iter().map(|&sum| ((sum + area / 2) / area) as u8));
    }
    (grey, probe)
}

/// Variance of the Laplacian: high for sharp edges, low for a blurred picture.
fn laplacian_variance(grey: &[u8], w: usize, h: usize) -> opencv::Result<f64> {
    let src = Mat::new_rows_cols_with_data(h as i32, w as i32, grey)?;
    let mut lap = Mat::default();
    imgproc::laplacian(&src, &mut lap, CV_32F, 1, 1.0, 0.0, BORDER_REPLICATE)?;
    let (mut mean, mut std) = (Mat::default(), Mat::default());
    opencv::core::mean_std_dev_def(&lap, &mut mean, &mut std)?;
    let s = *std.at::<f64>(0)?;
    Ok(s * s)
}

/// Gradient magnitude of a thumbnail: where its edges are, independent of its brightness.
fn edges(thumb: &[f32], (w, h): (usize, usize)) -> Vec<f32> {
    let mut out = Vec::with_capacity(w.saturating_sub(1) * h.saturating_sub(1));
    for y in 0..h.saturating_sub(1) {
        for x in 0..w.saturating_sub(1) {
            let v = thumb[y * w + x];
            out.push((thumb[y * w + x + 1] - v).abs() + (thumb[(y + 1) * w + x] - v).abs());
        }
    }
    out
}

/// Zero-mean normalised correlation, -1..1; 0 when either side is flat.
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let ma = a[..n].iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let mb = b[..n].iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a[..n].iter().zip(&b[..n]) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    // Flat means less than a tenth of a grey level of variation on average.
    if aa < 0.01 * n as f64 || bb < 0.01 * n as f64 {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

/// What the camera normally looks like.
#[derive(Debug, Clone)]
struct Reference {
    sharpness: f64,
    thumb: Vec<f32>,
    thumb_size: (usize, usize),
}

/// Looks collected while the reference is learned.
#[derive(Debug, Default)]
struct Learning {
    from: Option<f64>,
    sharpness: Vec<f64>,
    thumb_sum: Vec<f64>,
    thumb_size: (usize, usize),
    looks: usize,
}

/// One camera's health, from its frames.
#[derive(Debug)]
pub struct HealthMonitor {
    settings: HealthSettings,
    judges: Vec<Judge>,
    last_t: Option<f64>,
    last_look: Option<(f64, Vec<u8>)>,
    /// Since when looks did not change (for the frozen figures).
    still_since: Option<f64>,
    /// (capture time, sequence) of recent frames; the first is the newest older than the
    /// rate window.
    arrivals: VecDeque<(f64, u64)>,
    /// Start of the arrival history the learned rate is measured from.
    fps_learning: Option<(f64, u64)>,
    learned_fps: Option<f64>,
    learning: Learning,
    reference: Option<Reference>,
    /// Running mean of recent thumbnails (`view_smooth_s`).
    recent: Option<Vec<f32>>,
}

impl HealthMonitor {
    /// Changes the rate the camera should deliver (the node lowered or restored its rate).
    pub fn set_expected_fps(&mut self, fps: Option<f64>) {
        self.settings.expected_fps = fps;
    }

    pub fn new(settings: HealthSettings) -> Self {
        let judges = Condition::ALL
            .iter()
            .map(|&c| Judge::new(settings.hold(c)))
            .collect();
        Self {
            settings,
            judges,
            last_t: None,
            last_look: None,
            still_since: None,
            arrivals: VecDeque::new(),
            fps_learning: None,
            learned_fps: None,
            learning: Learning::default(),
            reference: None,
            recent: None,
        }
    }

    /// The conditions open now.
    pub fn active(&self) -> Vec<Condition> {
        Condition::ALL
            .iter()
            .copied()
            .filter(|c| self.judges[c.index()].since.is_some())
            .collect()
    }

    /// A gap or a jump back in time: windows and rates start afresh (open conditions stay).
    fn break_history(&mut self) {
        for j in &mut self.judges {
            j.forget();
        }
        self.arrivals.clear();
        self.last_look = None;
        self.still_since = None;
        self.fps_learning = None;
    }

    /// One analysed frame: its analysis image, capture time (seconds) and sequence number
    /// among the frames the camera delivered (`Frame::seq`: frames dropped before analysis
    /// still count as arrived). Returns the conditions that started or ended with it.
    pub fn frame(&mut self, image: ImageRef<'_>, at_s: f64, seq: u64) -> Vec<HealthChange> {
        if !at_s.is_finite() {
            return Vec::new();
        }
        let broken = self
            .last_t
            .is_some_and(|last| at_s < last || at_s - last > self.settings.max_gap_s)
            || self.arrivals.back().is_some_and(|&(_, s)| seq <= s);
        if broken {
            self.break_history();
        }
        self.last_t = Some(at_s);
        self.count_arrival(at_s, seq);
        let due = self
            .last_look
            .as_ref()
            .is_none_or(|(t, _)| at_s - t + EPS >= self.settings.sample_every_s);
        if !due {
            return Vec::new();
        }
        let look = Look::of(image);
        self.judge(at_s, look.as_ref())
    }

    fn count_arrival(&mut self, at_s: f64, seq: u64) {
        self.arrivals.push_back((at_s, seq));
        let window_start = at_s - self.settings.fps_window_s;
        while self
            .arrivals
            .get(1)
            .is_some_and(|(t, _)| *t <= window_start + EPS)
        {
            self.arrivals.pop_front();
        }
        if self.learned_fps.is_none() && self.settings.expected_fps.is_none() {
            let (t0, s0) = *self.fps_learning.get_or_insert((at_s, seq));
            if at_s - t0 + EPS >= self.settings.reference_s && at_s > t0 {
                self.learned_fps = Some((seq - s0) as f64 / (at_s - t0));
            }
        }
    }

    /// Frames a second over the rate window, once the history covers it.
    fn rate(&self) -> Option<f64> {
        let (&(t0, s0), &(t1, s1)) = (self.arrivals.front()?, self.arrivals.back()?);
        (t1 - t0 + EPS >= self.settings.fps_window_s && t1 > t0)
            .then(|| (s1 - s0) as f64 / (t1 - t0))
    }

    fn judge(&mut self, at_s: f64, look: Option<&Look>) -> Vec<HealthChange> {
        let th = self.settings.thresholds.clone();
        let mut evidence = [Evidence::Unknown; 6];
        let mut figures: [BTreeMap<&'static str, f64>; 6] = Default::default();

        // Light first: a dark picture says nothing about focus, stillness or the view.
        if let Some(l) = look {
            let black = if l.mean <= th.blackout_luma && l.contrast <= th.blackout_contrast {
                Evidence::On
            } else if l.mean >= th.blackout_luma_clear || l.contrast >= th.blackout_contrast_clear {
                Evidence::Off
            } else {
                Evidence::Between
            };
            let low = if black == Evidence::On {
                Evidence::Unknown
            } else if l.mean <= th.low_light_luma && l.contrast <= th.low_light_contrast {
                Evidence::On
            } else if l.mean >= th.low_light_luma_clear || l.contrast >= th.low_light_contrast_clear
            {
                Evidence::Off
            } else {
                Evidence::Between
            };
            evidence[Condition::Blackout.index()] = black;
            evidence[Condition::LowLight.index()] = low;
            for c in [Condition::Blackout, Condition::LowLight] {
                figures[c.index()] =
                    BTreeMap::from([("mean_luma", l.mean), ("contrast", l.contrast)]);
            }
        }
        let dark = [Condition::Blackout, Condition::LowLight]
            .iter()
            .any(|c| self.judges[c.index()].since.is_some() || evidence[c.index()] == Evidence::On);
        let good_light = evidence[Condition::Blackout.index()] == Evidence::Off
            && evidence[Condition::LowLight.index()] == Evidence::Off;

        let previous = self.last_look.take();
        // The view is judged on the running mean of recent looks: passing traffic averages out.
        if let Some(l) = look {
            let k = previous.as_ref().map_or(1.0, |(t, _)| {
                1.0 - (-(at_s - t) / self.settings.view_smooth_s.max(EPS)).exp()
            }) as f32;
            match &mut self.recent {
                Some(r) if r.len() == l.thumb.len() => {
                    for (v, &now) in r.iter_mut().zip(&l.thumb) {
                        *v += (now - *v) * k;
                    }
                }
                _ => self.recent = Some(l.thumb.clone()),
            }
        }
        if let Some(l) = look.filter(|_| !dark) {
            // Frozen: compared with the previous look.
            if let Some((t, probe)) = previous.as_ref().filter(|(_, p)| p.len() == l.probe.len()) {
                let diff = l
                    .probe
                    .iter()
                    .zip(probe)
                    .map(|(&a, &b)| u32::from(a.abs_diff(b)))
                    .sum::<u32>() as f64
                    / l.probe.len().max(1) as f64;
                if diff <= th.frozen_difference {
                    self.still_since.get_or_insert(*t);
                } else {
                    self.still_since = None;
                }
                evidence[Condition::Frozen.index()] =
                    band(diff, th.frozen_difference, th.frozen_difference_clear);
                figures[Condition::Frozen.index()] = BTreeMap::from([
                    ("difference", diff),
                    ("still_s", self.still_since.map_or(0.0, |s| at_s - s)),
                ]);
            }
            if self
                .reference
                .as_ref()
                .is_some_and(|r| r.thumb_size != l.thumb_size)
            {
                // The picture's shape changed (a new stream): learn it again.
                self.reference = None;
                self.learning = Learning::default();
            }
            if let Some(r) = &self.reference {
                if let Some(s) = l.sharpness.filter(|_| r.sharpness >= th.min_sharpness) {
                    let ratio = s / r.sharpness;
                    evidence[Condition::Defocus.index()] =
                        band(ratio, th.defocus_ratio, th.defocus_ratio_clear);
                    figures[Condition::Defocus.index()] = BTreeMap::from([
                        ("sharpness", s),
                        ("sharpness_reference", r.sharpness),
                        ("ratio", ratio),
                    ]);
                }
                // A blurred picture has lost the edges the view is compared on: it says
                // nothing about where the camera points.
                let blurred = self.judges[Condition::Defocus.index()].since.is_some()
                    || evidence[Condition::Defocus.index()] == Evidence::On;
                if !blurred {
                    let recent = self.recent.as_deref().unwrap_or(&l.thumb);
                    let similarity =
                        correlation(&edges(recent, l.thumb_size), &edges(&r.thumb, r.thumb_size));
                    evidence[Condition::ViewChanged.index()] =
                        band(similarity, th.view_similarity, th.view_similarity_clear);
                    figures[Condition::ViewChanged.index()] =
                        BTreeMap::from([("similarity", similarity)]);
                }
            }
        }
        if let Some(l) = look {
            self.last_look = Some((at_s, l.probe.clone()));
        }

        let expected = self.settings.expected_fps.or(self.learned_fps);
        if let (Some(rate), Some(expected)) = (self.rate(), expected.filter(|e| *e > 0.0)) {
            let ratio = rate / expected;
            evidence[Condition::FpsDrop.index()] = band(ratio, th.fps_ratio, th.fps_ratio_clear);
            figures[Condition::FpsDrop.index()] =
                BTreeMap::from([("fps", rate), ("expected_fps", expected)]);
        }

        let mut changes = Vec::new();
        for c in Condition::ALL {
            let judge = &mut self.judges[c.index()];
            let started = judge.since;
            if let Some(transition) = judge.push(at_s, evidence[c.index()], self.settings.agreement)
            {
                let mut figures = std::mem::take(&mut figures[c.index()]);
                if transition == Transition::End {
                    figures.insert("duration_s", at_s - started.unwrap_or(at_s));
                }
                changes.push(HealthChange {
                    condition: c,
                    transition,
                    at_s,
                    figures: rounded(figures),
                    stopped: false,
                });
            }
        }

        if let Some(l) = look.filter(|_| good_light) {
            let healthy = self.judges.iter().all(|j| j.since.is_none());
            let since_last = previous.map(|(t, _)| at_s - t);
            self.learn(at_s, l, &evidence, healthy, since_last);
        }
        changes
    }

    /// Learns the references over the first good looks, then lets them follow slow changes
    /// while the camera is healthy.
    fn learn(
        &mut self,
        at_s: f64,
        l: &Look,
        evidence: &[Evidence; 6],
        healthy: bool,
        since_last: Option<f64>,
    ) {
        match &mut self.reference {
            None => {
                let learning = &mut self.learning;
                let from = *learning.from.get_or_insert(at_s);
                if learning.thumb_size != l.thumb_size {
                    learning.thumb_sum = vec![0.0; l.thumb.len()];
                    learning.thumb_size = l.thumb_size;
                    learning.sharpness.clear();
                    learning.looks = 0;
                }
                for (s, &v) in learning.thumb_sum.iter_mut().zip(&l.thumb) {
                    *s += f64::from(v);
                }
                learning.looks += 1;
                learning.sharpness.extend(l.sharpness);
                if at_s - from + EPS >= self.settings.reference_s && learning.looks >= 3 {
                    let n = learning.looks as f64;
                    learning.sharpness.sort_by(f64::total_cmp);
                    let sharpness = learning
                        .sharpness
                        .get(learning.sharpness.len() / 2)
                        .copied()
                        .unwrap_or(0.0);
                    self.reference = Some(Reference {
                        sharpness,
                        thumb: learning.thumb_sum.iter().map(|s| (s / n) as f32).collect(),
                        thumb_size: learning.thumb_size,
                    });
                    self.learning = Learning::default();
                }
            }
            Some(r) if healthy => {
                let Some(dt) = since_last else { return };
                let k = (dt / self.settings.adapt_s).clamp(0.0, 1.0);
                if let Some(s) = l
                    .sharpness
                    .filter(|_| evidence[Condition::Defocus.index()] == Evidence::Off)
                {
                    r.sharpness += (s - r.sharpness) * k;
                }
                if evidence[Condition::ViewChanged.index()] == Evidence::Off {
                    let recent = self.recent.as_deref().unwrap_or(&l.thumb);
                    for (v, &now) in r.thumb.iter_mut().zip(recent) {
                        *v += (now - *v) * k as f32;
                    }
                }
            }
            Some(_) => {}
        }
    }

    /// The camera stopped: every open condition ends at the last frame's time.
    pub fn finish(&mut self) -> Vec<HealthChange> {
        let at_s = self.last_t.unwrap_or(0.0);
        let mut changes = Vec::new();
        for c in Condition::ALL {
            let judge = &mut self.judges[c.index()];
            if let Some(since) = judge.since.take() {
                judge.forget();
                changes.push(HealthChange {
                    condition: c,
                    transition: Transition::End,
                    at_s,
                    figures: rounded(BTreeMap::from([("duration_s", at_s - since)])),
                    stopped: true,
                });
            }
        }
        changes
    }
}

fn rounded(figures: BTreeMap<&'static str, f64>) -> BTreeMap<&'static str, f64> {
    figures
        .into_iter()
        .map(|(k, v)| (k, (v * 1000.0).round() / 1000.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: usize = 160;
    const H: usize = 90;

    /// What the synthetic camera shows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Shot {
        Healthy,
        /// A static scene: nothing moves, only the sensor's noise.
        Static,
        Black,
        Dim,
        Blurred,
        Frozen,
        Shifted,
        /// Healthy, one frame a second.
        Slow,
    }

    impl Shot {
        fn condition(self) -> Option<Condition> {
            match self {
                Shot::Healthy | Shot::Static => None,
                Shot::Black => Some(Condition::Blackout),
                Shot::Dim => Some(Condition::LowLight),
                Shot::Blurred => Some(Condition::Defocus),
                Shot::Frozen => Some(Condition::Frozen),
                Shot::Shifted => Some(Condition::ViewChanged),
                Shot::Slow => Some(Condition::FpsDrop),
            }
        }
    }

    /// A small deterministic generator (xorshift64*).
    #[derive(Debug)]
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in -amplitude..=amplitude.
        fn noise(&mut self, amplitude: u8) -> i32 {
            if amplitude == 0 {
                return 0;
            }
            let span = 2 * u64::from(amplitude) + 1;
            (self.next() % span) as i32 - i32::from(amplitude)
        }

        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The street: blocks of texture, seen from where the camera points.
    fn background(x: usize, y: usize) -> i32 {
        let (bx, by) = (x as u64 / 6, y as u64 / 6);
        let h =
            (bx.wrapping_mul(0x9e37_79b9) ^ by.wrapping_mul(0x85eb_ca6b)).wrapping_mul(0xc2b2_ae35);
        40 + ((h >> 16) % 160) as i32
    }

    /// A synthetic camera: its picture, clock and frame counter.
    #[derive(Debug)]
    struct Camera {
        rng: Rng,
        noise: u8,
        t: f64,
        seq: u64,
        /// Object speed, pixels a second.
        speed: f64,
        frozen: Option<Vec<u8>>,
    }

    impl Camera {
        fn new(seed: u64, noise: u8) -> Self {
            Self {
                rng: Rng(seed | 1),
                noise,
                t: 1_795_507_200.0,
                seq: 0,
                speed: 30.0,
                frozen: None,
            }
        }

        fn render(&mut self, shot: Shot) -> Vec<u8> {
            if shot == Shot::Frozen {
                if let Some(f) = &self.frozen {
                    return f.clone();
                }
            }
            let ox = (self.t * self.speed) as usize % (W + 24);
            let moving = shot != Shot::Static;
            let mut grey = vec![0i32; W * H];
            for y in 0..H {
                for x in 0..W {
                    let (sx, sy) = if shot == Shot::Shifted {
                        (x + 37, y + 23)
                    } else {
                        (x, y)
                    };
                    let object = moving && (30..46).contains(&y) && x + 24 >= ox && x < ox;
                    grey[y * W + x] = if object { 240 } else { background(sx, sy) };
                }
            }
            if shot == Shot::Blurred {
                grey = box_blur(&grey, 5);
            }
            let mut bgr = Vec::with_capacity(W * H * 3);
            for v in grey {
                let v = match shot {
                    Shot::Black => 2,
                    Shot::Dim => v / 4 + 10,
                    _ => v,
                };
                let v = (v + self.rng.noise(self.noise)).clamp(0, 255) as u8;
                bgr.extend_from_slice(&[v, v, v]);
            }
            if shot == Shot::Frozen {
                self.frozen = Some(bgr.clone());
            } else {
                self.frozen = None;
            }
            bgr
        }

        /// Feeds `seconds` of `shot` (five frames a second with jitter, one for `Slow`).
        fn show(&mut self, m: &mut HealthMonitor, shot: Shot, seconds: f64) -> Vec<HealthChange> {
            let end = self.t + seconds;
            let mut changes = Vec::new();
            while self.t < end {
                let bgr = self.render(shot);
                let image = ImageRef {
                    data: &bgr,
                    width: W as u32,
                    height: H as u32,
                    stride: W * 3,
                };
                changes.extend(m.frame(image, self.t, self.seq));
                // Now and then a frame is dropped before analysis: it still arrived.
                self.seq += 1 + u64::from(self.rng.unit() < 0.05);
                let interval = if shot == Shot::Slow { 1.0 } else { 0.2 };
                self.t += interval * (0.8 + 0.4 * self.rng.unit());
            }
            changes
        }
    }

    fn box_blur(grey: &[i32], r: usize) -> Vec<i32> {
        let pass = |src: &[i32], horizontal: bool| {
            let mut out = vec![0; W * H];
            for y in 0..H {
                for x in 0..W {
                    let (mut sum, mut n) = (0, 0);
                    for d in 0..=2 * r {
                        let (xx, yy) = if horizontal {
                            ((x + d).checked_sub(r), Some(y))
                        } else {
                            (Some(x), (y + d).checked_sub(r))
                        };
                        if let (Some(xx), Some(yy)) = (xx, yy) {
                            if xx < W && yy < H {
                                sum += src[yy * W + xx];
                                n += 1;
                            }
                        }
                    }
                    out[y * W + x] = sum / n;
                }
            }
            out
        };
        pass(&pass(grey, true), false)
    }

    /// Short times, so a test covers every condition in seconds of synthetic video.
    fn quick() -> HealthSettings {
        let hold = Hold::new(3.0, 3.0);
        HealthSettings {
            reference_s: 5.0,
            fps_window_s: 3.0,
            expected_fps: Some(5.0),
            blackout: hold,
            low_light: hold,
            defocus: hold,
            frozen: hold,
            view_changed: hold,
            fps_drop: hold,
            ..HealthSettings::default()
        }
    }

    fn summary(changes: &[HealthChange]) -> Vec<(Condition, Transition)> {
        changes
            .iter()
            .map(|c| (c.condition, c.transition))
            .collect()
    }

    #[test]
    fn a_moving_scene_with_noise_raises_nothing() {
        let mut m = HealthMonitor::new(quick());
        let mut cam = Camera::new(7, 6);
        let changes = cam.show(&mut m, Shot::Healthy, 60.0);
        assert_eq!(summary(&changes), vec![]);
    }

    #[test]
    fn a_static_scene_with_sensor_noise_is_not_frozen() {
        let mut m = HealthMonitor::new(quick());
        let mut cam = Camera::new(3, 2);
        let changes = cam.show(&mut m, Shot::Static, 40.0);
        assert_eq!(summary(&changes), vec![]);
    }

    #[test]
    fn each_condition_starts_once_and_ends_once() {
        for shot in [
            Shot::Black,
            Shot::Dim,
            Shot::Blurred,
            Shot::Frozen,
            Shot::Shifted,
            Shot::Slow,
        ] {
            let condition = shot.condition().expect("a condition");
            let mut m = HealthMonitor::new(quick());
            let mut cam = Camera::new(11, 3);
            assert_eq!(summary(&cam.show(&mut m, Shot::Healthy, 8.0)), vec![]);
            let t0 = cam.t;
            let during = cam.show(&mut m, shot, 12.0);
            assert_eq!(
                summary(&during),
                vec![(condition, Transition::New)],
                "{shot:?}"
            );
            // Held for most of its start time (fps: after its rate window too), not longer.
            let late = during[0].at_s - t0;
            assert!(
                (2.0..9.0).contains(&late),
                "{shot:?} started after {late} s"
            );
            assert_eq!(m.active(), vec![condition]);
            let after = cam.show(&mut m, Shot::Healthy, 12.0);
            assert_eq!(
                summary(&after),
                vec![(condition, Transition::End)],
                "{shot:?}"
            );
            let duration = after[0].figures["duration_s"];
            assert!(
                (8.0..20.0).contains(&duration),
                "{shot:?} lasted {duration} s"
            );
        }
    }

    #[test]
    fn figures_say_what_decided() {
        let mut m = HealthMonitor::new(quick());
        let mut cam = Camera::new(5, 2);
        cam.show(&mut m, Shot::Healthy, 8.0);
        let new = cam.show(&mut m, Shot::Black, 6.0);
        assert!(new[0].figures["mean_luma"] <= 20.0, "{:?}", new[0]);
        assert!(new[0].figures["contrast"] <= 8.0, "{:?}", new[0]);
        let new = cam.show(&mut m, Shot::Healthy, 6.0);
        assert_eq!(new[0].transition, Transition::End);
        assert!(new[0].figures["mean_luma"] >= 30.0, "{:?}", new[0]);

        let mut m = HealthMonitor::new(quick());
        cam.show(&mut m, Shot::Healthy, 8.0);
        let new = cam.show(&mut m, Shot::Blurred, 6.0);
        let f = &new[0].figures;
        assert!(f["sharpness"] < 0.3 * f["sharpness_reference"], "{f:?}");
        assert!(f["ratio"] <= 0.3, "{f:?}");
        let new = cam.show(&mut m, Shot::Slow, 10.0);
        let f = &new
            .iter()
            .find(|c| c.condition == Condition::FpsDrop)
            .expect("fps drop")
            .figures;
        assert_eq!(f["expected_fps"], 5.0);
        assert!(f["fps"] < 2.5, "{f:?}");
    }

    #[test]
    fn without_an_expected_rate_the_camera_is_its_own_reference() {
        let mut m = HealthMonitor::new(HealthSettings {
            expected_fps: None,
            ..quick()
        });
        let mut cam = Camera::new(9, 3);
        assert_eq!(summary(&cam.show(&mut m, Shot::Healthy, 10.0)), vec![]);
        let changes = cam.show(&mut m, Shot::Slow, 12.0);
        assert_eq!(
            summary(&changes),
            vec![(Condition::FpsDrop, Transition::New)]
        );
        assert!((4.5..5.8).contains(&changes[0].figures["expected_fps"]));
    }

    #[test]
    fn durations_are_seconds_not_frames() {
        // The same blackout seen at 5 and at 25 frames a second starts at the same time.
        let start = |interval: f64| {
            let mut m = HealthMonitor::new(quick());
            let bgr = vec![0u8; W * H * 3];
            let mut t = 100.0;
            let mut seq = 0;
            loop {
                let image = ImageRef {
                    data: &bgr,
                    width: W as u32,
                    height: H as u32,
                    stride: W * 3,
                };
                if let Some(c) = m.frame(image, t, seq).first() {
                    return c.at_s - 100.0;
                }
                t += interval;
                seq += 1;
            }
        };
        let (slow, fast) = (start(0.2), start(0.04));
        assert!((slow - fast).abs() <= 0.5, "{slow} s vs {fast} s");
        assert!((2.4..=3.6).contains(&slow), "{slow} s");
    }

    #[test]
    fn the_dark_says_nothing_about_focus_or_view() {
        let mut m = HealthMonitor::new(quick());
        let mut cam = Camera::new(13, 2);
        cam.show(&mut m, Shot::Healthy, 8.0);
        // A black picture is identical, unsharp and unlike the reference: only blackout.
        let changes = cam.show(&mut m, Shot::Black, 20.0);
        assert_eq!(
            summary(&changes),
            vec![(Condition::Blackout, Transition::New)]
        );
    }

    #[test]
    fn a_stopped_camera_ends_what_is_open() {
        let mut m = HealthMonitor::new(quick());
        let mut cam = Camera::new(17, 2);
        cam.show(&mut m, Shot::Healthy, 8.0);
        cam.show(&mut m, Shot::Shifted, 8.0);
        assert_eq!(m.active(), vec![Condition::ViewChanged]);
        let ended = m.finish();
        assert_eq!(
            summary(&ended),
            vec![(Condition::ViewChanged, Transition::End)]
        );
        assert!(ended[0].stopped);
        assert!(m.finish().is_empty(), "ended once");
    }

    #[test]
    fn a_stall_starts_the_windows_afresh() {
        let mut m = HealthMonitor::new(quick());
        let mut cam = Camera::new(19, 3);
        cam.show(&mut m, Shot::Healthy, 8.0);
        // Thirty seconds without frames is the camera status's business, not a rate drop.
        cam.t += 30.0;
        let changes = cam.show(&mut m, Shot::Healthy, 10.0);
        assert_eq!(summary(&changes), vec![]);
    }

    fn shots() -> impl Strategy<Value = Shot> {
        prop_oneof![
            Just(Shot::Healthy),
            Just(Shot::Static),
            Just(Shot::Black),
            Just(Shot::Dim),
            Just(Shot::Blurred),
            Just(Shot::Frozen),
            Just(Shot::Shifted),
            Just(Shot::Slow),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The row-by-row reduction gives exactly the block means and probes of the plain
        /// per-block loop it replaced, whatever the size, padding and content.
        #[test]
        fn the_grey_picture_is_the_rounded_mean_of_each_block(
            w in 8usize..700,
            h in 8usize..60,
            pad in 0usize..7,
            seed in any::<u64>(),
        ) {
            let stride = 3 * w + pad;
            let mut x = seed | 1;
            let data: Vec<u8> = (0..h * stride)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            let image = ImageRef { data: &data, width: w as u32, height: h as u32, stride };
            let step = w.div_ceil(GREY_WIDTH).max(1);
            let (gw, gh) = (w / step, h / step);
            let (grey, probe) = grey_and_probe(image, step, gw, gh);
            let area = (step * step) as u32;
            let px = |x: usize, y: usize| luma(&data[y * stride + x * 3..y * stride + x * 3 + 3]);
            for gy in 0..gh {
                for gx in 0..gw {
                    let mut sum = 0;
                    for dy in 0..step {
                        for dx in 0..step {
                            sum += px(gx * step + dx, gy * step + dy);
                        }
                    }
                    prop_assert_eq!(u32::from(grey[gy * gw + gx]), (sum + area / 2) / area);
                    prop_assert_eq!(u32::from(probe[gy * gw + gx]), px(gx * step, gy * step));
                }
            }
            prop_assert_eq!((grey.len(), probe.len()), (gw * gh, gw * gh));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the camera shows, each condition goes new, end, new, end...; a change
        /// comes no sooner than its hold time after the one before; stopping ends what is
        /// open.
        #[test]
        fn end_always_follows_new_and_nothing_flaps(
            seed in any::<u64>(),
            noise in 0u8..5,
            segments in proptest::collection::vec((shots(), 0.5f64..12.0), 1..8),
        ) {
            let settings = quick();
            let mut m = HealthMonitor::new(settings.clone());
            let mut cam = Camera::new(seed, noise);
            let mut changes = cam.show(&mut m, Shot::Healthy, 6.0);
            for (shot, seconds) in &segments {
                changes.extend(cam.show(&mut m, *shot, *seconds));
            }
            changes.extend(m.finish());
            for c in Condition::ALL {
                let mine: Vec<&HealthChange> = changes.iter().filter(|x| x.condition == c).collect();
                for (i, x) in mine.iter().enumerate() {
                    let expected = if i % 2 == 0 { Transition::New } else { Transition::End };
                    prop_assert_eq!(x.transition, expected, "{:?}: {:?}", c, summary(&changes));
                    if i > 0 && !x.stopped {
                        let hold = settings.hold(c);
                        let wait = if x.transition == Transition::New { hold.start_s } else { hold.clear_s };
                        prop_assert!(x.at_s - mine[i - 1].at_s + 1e-6 >= wait, "{:?} flapped: {:?}", c, summary(&changes));
                    }
                }
                prop_assert!(mine.len().is_multiple_of(2), "{:?} left open after finish", c);
            }
        }

        /// A healthy scene under noise, jitter and dropped frames raises nothing, and a held
        /// condition starts once and stays, without anything else.
        #[test]
        fn noise_raises_nothing_and_a_held_condition_starts_once(
            seed in any::<u64>(),
            noise in 0u8..7,
            speed in 5.0f64..80.0,
            shot in shots(),
        ) {
            let mut m = HealthMonitor::new(quick());
            let mut cam = Camera::new(seed, noise);
            cam.speed = speed;
            let healthy = cam.show(&mut m, Shot::Healthy, 20.0);
            prop_assert_eq!(summary(&healthy), vec![]);
            let noise_ok = shot != Shot::Blurred || noise < 5;
            if noise_ok {
                let held = cam.show(&mut m, shot, 20.0);
                // Without any sensor noise a static scene is identical frames: frozen.
                let condition = match shot {
                    Shot::Static if noise == 0 => Some(Condition::Frozen),
                    _ => shot.condition(),
                };
                let want: Vec<_> = condition.map(|c| (c, Transition::New)).into_iter().collect();
                prop_assert_eq!(summary(&held), want);
            }
        }
    }
}
