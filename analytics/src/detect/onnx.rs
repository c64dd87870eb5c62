//! The detector: ONNX Runtime session (loaded dynamically), preprocessing and decoding, with
//! the model's contract checked at load time.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use pantau_config::DetectorConfig;

use super::decode::{clip, decode_yolox, nms, nms_kinds, yolox_grid, ClassFilter};
use super::model::{InputShape, Model};
use super::preprocess::Letterbox;
use super::{DetectTimings, Detection, ImageRef};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("model file {path}: {reason}")]
    ModelFile { path: PathBuf, reason: String },
    #[error("ONNX Runtime library {path}: {reason}; run `make setup` or set detector.onnxruntime / ORT_DYLIB_PATH")]
    Runtime { path: PathBuf, reason: String },
    #[error("model {path} does not fit its manifest: {reason}")]
    Contract { path: PathBuf, reason: String },
    #[error("detector.classes: {0}")]
    Classes(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("preprocessing failed: {0}")]
    Preprocess(String),
}

/// The ONNX Runtime library to load: config, then `ORT_DYLIB_PATH`, then the set-up location.
pub fn runtime_path(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(".deps/onnxruntime/libonnxruntime.so.1.32.0");
    if local.exists() {
        return local;
    }
    // A cargo build inside the repository: look up from the executable for `.deps/`.
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .map(|dir| dir.join(&local))
                .find(|candidate| candidate.exists())
        })
        .unwrap_or(local)
}

/// A relative model path starts at `base` (the config file's folder); when nothing is there,
/// the folders above the executable are tried, so a repository build finds `models/`.
pub fn model_path(model: &Path, base: &Path) -> PathBuf {
    if model.is_absolute() {
        return model.to_path_buf();
    }
    let direct = base.join(model);
    if direct.exists() {
        return direct;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().map(|d| d.join(model)).find(|p| p.exists()))
        .unwrap_or(direct)
}

static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process (ONNX Runtime allows one environment per process).
fn runtime(path: &Path) -> Result<&'static Environment, DetectError> {
    let result = RUNTIME.get_or_init(|| {
        if !path.exists() {
            return Err("file not found".to_string());
        }
        let builder = ort::init_from(path).map_err(|e| e.to_string())?;
        builder
            .with_name("pantau")
            .build()
            .map_err(|e| e.to_string())
    });
    result.as_ref().map_err(|reason| DetectError::Runtime {
        path: path.to_path_buf(),
        reason: reason.clone(),
    })
}

/// Tensor sizes a detector keeps buffers for: one per aspect ratio among its cameras.
const MAX_CANVASES: usize = 8;

/// The buffers of one tensor size.
#[derive(Debug)]
struct Canvas {
    /// Width and height of the tensor.
    size: (u32, u32),
    grid: Vec<(f32, f32, f32)>,
    letterbox: Letterbox,
    input: Vec<f32>,
}

impl Canvas {
    fn new(model: &Model, (width, height): (u32, u32)) -> Result<Self, DetectError> {
        let m = &model.manifest;
        Ok(Self {
            size: (width, height),
            grid: yolox_grid(width, height, &m.output.strides),
            letterbox: Letterbox::new(width, height, m.input.pad_value)
                .map_err(|e| DetectError::Preprocess(e.to_string()))?,
            input: Vec::new(),
        })
    }
}

/// One loaded model with its buffers. Not shared between threads: see [`super::service`].
#[derive(Debug)]
pub struct Detector {
    session: Session,
    model: Model,
    /// Buffers per tensor size, the most recently added last.
    canvases: Vec<Canvas>,
    /// Which classes are wanted, their thresholds and the tracker's floor.
    filter: ClassFilter,
    /// NMS kind per class id (vehicle classes share one).
    kinds: Vec<u16>,
    nms_iou: f32,
}

impl Detector {
    /// Loads the model named by `config.model` (relative paths start at `base`). Boxes of
    /// wanted classes are kept down to `floor` (the tracker's `low_score`), marked confident
    /// from their class's threshold up.
    pub fn load(config: &DetectorConfig, base: &Path, floor: f32) -> Result<Self, DetectError> {
        let manifest_path = model_path(&config.model, base);
        let model = Model::load(&manifest_path)?;
        let thresholds = class_thresholds(config, &model.labels)?;
        let floor = thresholds
            .iter()
            .flatten()
            .fold(floor, |f, t| f.min(*t))
            .max(0.01);
        let env = runtime(&runtime_path(config.onnxruntime.as_deref()))?;
        let contract = |reason: String| DetectError::Contract {
            path: model.onnx_path.clone(),
            reason,
        };
        let session = Session::builder(env)
            .map_err(|e| contract(e.to_string()))?
            .with_intra_threads(config.threads)
            .map_err(|e| contract(e.to_string()))?
            // Idle intra-op threads would spin for a while after every run, taking the cores
            // the cameras' decoders need; they sleep instead.
            .with_intra_op_spinning(false)
            .map_err(|e| contract(e.to_string()))?
            .with_inter_op_spinning(false)
            .map_err(|e| contract(e.to_string()))?
            .commit_from_file(&model.onnx_path)
            .map_err(|e| DetectError::ModelFile {
                path: model.onnx_path.clone(),
                reason: format!("ONNX Runtime cannot load it: {e}"),
            })?;
        let m = &model.manifest;
        let (w, h) = (m.input.width, m.input.height);
        let classes = 5 + model.labels.len() as i64;
        let (want_in, want_out) = match m.input.shape {
            InputShape::Fixed => (
                [1, 3, i64::from(h), i64::from(w)],
                [1, model.anchors(w, h) as i64, classes],
            ),
            // -1: a named axis, whatever size the tensor has.
            InputShape::Fit => ([1, 3, -1, -1], [1, -1, classes]),
        };
        let fit_hint = |reason: String| {
            match m.input.shape {
            InputShape::Fixed => reason,
            InputShape::Fit => format!(
                "{reason}; the manifest says shape = \"fit\" (free height and width): for a model with a fixed input set shape = \"fixed\""
            ),
        }
        };
        check_outlet(session.inputs(), &m.input.name, &want_in, "input")
            .map_err(|r| contract(fit_hint(r)))?;
        check_outlet(session.outputs(), &m.output.name, &want_out, "output")
            .map_err(|r| contract(fit_hint(r)))?;
        let mut detector = Self {
            session,
            canvases: Vec::new(),
            filter: ClassFilter { thresholds, floor },
            kinds: nms_kinds(&model.labels),
            nms_iou: config.nms_iou,
            model,
        };
        // The first run at a size plans memory and takes longer than the rest: do it now, not
        // on a camera's first frame (where it would look like the node falling behind), for
        // the square and the usual camera shapes (16:9, 4:3).
        let shapes = match detector.model.manifest.input.shape {
            InputShape::Fixed => vec![(w, h)],
            InputShape::Fit => vec![(w, h), (w, (w * 9 / 16).max(1)), (w, (w * 3 / 4).max(1))],
        };
        for (w, h) in shapes {
            let blank = vec![0u8; (w * h * 3) as usize];
            detector.detect(ImageRef {
                data: &blank,
                width: w,
                height: h,
                stride: w as usize * 3,
            })?;
        }
        Ok(detector)
    }

    /// One detector per worker of the inference service (`detector.workers`).
    pub fn load_workers(
        config: &DetectorConfig,
        base: &Path,
        floor: f32,
    ) -> Result<Vec<Self>, DetectError> {
        (0..config.worker_count())
            .map(|_| Self::load(config, base, floor))
            .collect()
    }

    pub fn labels(&self) -> &[String] {
        &self.model.labels
    }

    pub fn model_name(&self) -> &str {
        &self.model.manifest.name
    }

    /// The model's largest input, width and height in pixels: ingest scales frames to fit it.
    pub fn input_size(&self) -> (u32, u32) {
        let input = &self.model.manifest.input;
        (input.width, input.height)
    }

    /// The tensor a `width` x `height` picture goes into: the input box, or for a model of
    /// free size the picture scaled to fit the box with at least one largest stride of
    /// padding after it, each side a multiple of that stride and at most the box's (a
    /// 416x234 frame: 416x288, where the square was 416x416). The padding keeps what the
    /// model sees at the picture's edge as in the square letterbox it is tuned on: without
    /// it, identities on PETS09 came out differently (IDF1 0.726 / 0.759 at every frame / 5
    /// fps against 0.711 / 0.792 in the square, 0.771 / 0.791 with it; MOTA the same).
    pub fn tensor_size(&self, width: u32, height: u32) -> (u32, u32) {
        let (bw, bh) = self.input_size();
        if self.model.manifest.input.shape == InputShape::Fixed || width == 0 || height == 0 {
            return (bw, bh);
        }
        let r = (bw as f32 / width as f32).min(bh as f32 / height as f32);
        let stride = self.model.max_stride();
        let side = |s: u32, max: u32| {
            let scaled = ((s as f32 * r).round() as u32).max(1);
            if scaled >= max {
                return max;
            }
            ((scaled + stride).div_ceil(stride) * stride).min(max)
        };
        (side(width, bw), side(height, bh))
    }

    /// The buffers for a tensor size, made on first use; the oldest size is forgotten past
    /// [`MAX_CANVASES`].
    fn canvas(&mut self, size: (u32, u32)) -> Result<usize, DetectError> {
        if let Some(i) = self.canvases.iter().position(|c| c.size == size) {
            return Ok(i);
        }
        if self.canvases.len() >= MAX_CANVASES {
            self.canvases.remove(0);
        }
        self.canvases.push(Canvas::new(&self.model, size)?);
        Ok(self.canvases.len() - 1)
    }

    /// Detects objects in a BGR image; boxes are in the image's pixels.
    pub fn detect(
        &mut self,
        img: ImageRef<'_>,
    ) -> Result<(Vec<Detection>, DetectTimings), DetectError> {
        let t0 = Instant::now();
        let size = self.tensor_size(img.width, img.height);
        let index = self.canvas(size)?;
        let m = &self.model.manifest;
        let canvas = &mut self.canvases[index];
        let ratio = canvas
            .letterbox
            .run(img, m.input.pixel_order, m.input.scale, &mut canvas.input)
            .map_err(|e| DetectError::Preprocess(e.to_string()))?;
        let t1 = Instant::now();
        let shape = [1usize, 3, size.1 as usize, size.0 as usize];
        let tensor = TensorRef::from_array_view((shape, canvas.input.as_slice()))
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![m.input.name.as_str() => tensor])
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let t2 = Instant::now();
        let (_, raw) = outputs[m.output.name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let row = 5 + self.model.labels.len();
        if raw.len() != canvas.grid.len() * row {
            return Err(DetectError::Inference(format!(
                "the model gave {} values for a {}x{} input, expected {} rows of {row}",
                raw.len(),
                size.0,
                size.1,
                canvas.grid.len()
            )));
        }
        let mut candidates = Vec::new();
        decode_yolox(
            raw,
            &canvas.grid,
            self.model.labels.len(),
            ratio,
            &self.filter,
            &mut candidates,
        );
        let kinds = &self.kinds;
        let kind = |c: u16| kinds.get(c as usize).copied().unwrap_or(c);
        let mut dets = nms(candidates, self.nms_iou, &kind);
        clip(&mut dets, img.width as f32, img.height as f32);
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
        Ok((
            dets,
            DetectTimings {
                preprocess_ms: ms(t0, t1),
                inference_ms: ms(t1, t2),
                postprocess_ms: ms(t2, t3),
            },
        ))
    }
}

/// Checks the model manifest, its files and the configured classes without starting ONNX
/// Runtime (for `pantau check-config`).
pub fn check(config: &DetectorConfig, base: &Path) -> Result<Model, DetectError> {
    let model = Model::load(&model_path(&config.model, base))?;
    class_thresholds(config, &model.labels)?;
    Ok(model)
}

/// Per class id: the configured threshold for wanted classes, `None` for the rest.
fn class_thresholds(
    config: &DetectorConfig,
    labels: &[String],
) -> Result<Vec<Option<f32>>, DetectError> {
    let unknown: Vec<&str> = config
        .classes
        .iter()
        .chain(config.thresholds.keys())
        .filter(|c| !labels.contains(c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let sample: Vec<&str> = labels.iter().take(8).map(String::as_str).collect();
        return Err(DetectError::Classes(format!(
            "{} not among the model's {} labels (e.g. {}, ...)",
            unknown.join(", "),
            labels.len(),
            sample.join(", ")
        )));
    }
    Ok(labels
        .iter()
        .map(|l| config.classes.contains(l).then(|| config.threshold(l)))
        .collect())
}

fn check_outlet(
    outlets: &[ort::value::Outlet],
    name: &str,
    want: &[i64],
    what: &str,
) -> Result<(), String> {
    let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
    let Some(o) = outlets.iter().find(|o| o.name() == name) else {
        return Err(format!(
            "it has no {what} named \"{name}\" (it has {names:?}); expected {what} \"{name}\" of shape {want:?}"
        ));
    };
    let shape: Vec<i64> = o
        .dtype()
        .tensor_shape()
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let fits = shape.len() == want.len()
        && shape
            .iter()
            .zip(want)
            .all(|(got, w)| *got == *w || *got < 0);
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{what} \"{name}\" has shape {shape:?}; expected {want:?}"
        ))
    }
}
