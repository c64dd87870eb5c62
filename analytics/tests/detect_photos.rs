//! The detector on known photos gives the known objects (reference: onnxruntime 1.32 in Python
//! with the same model, letterbox and NMS; see analytics/tests/photos/SOURCE.txt).

use std::path::{Path, PathBuf};

use opencv::prelude::*;
use pantau_analytics::detect::onnx::{DetectError, Detector};
use pantau_analytics::{BBox, ImageRef};
use pantau_config::DetectorConfig;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn detector(classes: &[&str]) -> Detector {
    let config = DetectorConfig {
        classes: classes.iter().map(|c| c.to_string()).collect(),
        min_score: 0.3,
        threads: 1,
        ..DetectorConfig::default()
    };
    Detector::load(&config, &root(), 1.0).expect("model loads")
}

fn detect(det: &mut Detector, photo: &str) -> Vec<(String, f32, BBox)> {
    let path = root().join("analytics/tests/photos").join(photo);
    let img = opencv::imgcodecs::imread(
        path.to_str().expect("utf-8"),
        opencv::imgcodecs::IMREAD_COLOR,
    )
    .expect("imread");
    assert!(!img.empty(), "cannot read {}", path.display());
    let (w, h) = (img.cols() as u32, img.rows() as u32);
    let data = img.data_bytes().expect("continuous");
    let (dets, _) = det
        .detect(ImageRef {
            data,
            width: w,
            height: h,
            stride: w as usize * 3,
        })
        .expect("detects");
    // What the detector reports as objects (weaker boxes are only for the tracker).
    dets.into_iter()
        .filter(|d| d.confident)
        .map(|d| (det.labels()[d.class as usize].clone(), d.score, d.bbox))
        .collect()
}

/// Every expected object is found with the same class, score within 0.02 and each box edge
/// within 3 px; nothing else above the threshold.
fn assert_matches(got: &[(String, f32, BBox)], expected: &[(&str, f32, [f32; 4])]) {
    assert_eq!(got.len(), expected.len(), "got {got:?}");
    for (class, score, b) in expected {
        let hit = got.iter().find(|(c, s, g)| {
            c == class
                && (s - score).abs() <= 0.02
                && (g.x1 - b[0]).abs() <= 3.0
                && (g.y1 - b[1]).abs() <= 3.0
                && (g.x2 - b[2]).abs() <= 3.0
                && (g.y2 - b[3]).abs() <= 3.0
        });
        assert!(hit.is_some(), "missing {class} {score} {b:?} in {got:?}");
    }
}

#[test]
fn dog_bicycle_car_truck() {
    let mut det = detector(&["dog", "bicycle", "car", "truck"]);
    let got = detect(&mut det, "yolox_dog.jpg");
    assert_matches(
        &got,
        &[
            ("dog", 0.855, [133.0, 207.0, 326.0, 543.0]),
            ("bicycle", 0.803, [52.0, 137.0, 572.0, 424.0]),
            // The model also calls the car a truck (0.306, [464, 78, 683, 173]): one vehicle,
            // one box.
            ("car", 0.798, [466.0, 78.0, 692.0, 171.0]),
        ],
    );
}

#[test]
fn freeway_under_a_gantry() {
    let mut det = detector(&["car", "truck"]);
    let got = detect(&mut det, "coco_val2017_000000001532.jpg");
    assert_matches(
        &got,
        &[
            ("car", 0.882, [0.0, 379.0, 114.0, 478.0]),
            ("car", 0.860, [225.0, 361.0, 417.0, 479.0]),
            ("truck", 0.666, [105.0, 373.0, 185.0, 436.0]),
            ("car", 0.607, [427.0, 395.0, 487.0, 451.0]),
            ("car", 0.575, [200.0, 403.0, 243.0, 428.0]),
            // "car 0.483 [105, 374, 187, 438]" is the truck again: merged into it.
            ("car", 0.392, [500.0, 389.0, 547.0, 441.0]),
        ],
    );
}

#[test]
fn class_filter_and_per_class_threshold() {
    let config = DetectorConfig {
        classes: vec!["bus".into(), "person".into()],
        min_score: 0.3,
        thresholds: [("person".to_string(), 0.5)].into_iter().collect(),
        threads: 1,
        ..DetectorConfig::default()
    };
    let mut det = Detector::load(&config, &root(), 1.0).expect("loads");
    let got = detect(&mut det, "coco_val2017_000000001584.jpg");
    assert_matches(
        &got,
        &[
            ("bus", 0.949, [131.0, 85.0, 526.0, 536.0]),
            ("bus", 0.872, [567.0, 316.0, 611.0, 400.0]),
            ("bus", 0.868, [509.0, 315.0, 569.0, 385.0]),
            ("person", 0.662, [78.0, 376.0, 99.0, 431.0]),
        ],
    );
}

#[test]
fn unusable_models_and_classes_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("pantau-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let models = root().join("models");
    // A manifest whose input size does not match the file.
    let text = std::fs::read_to_string(models.join("yolox_nano.toml"))
        .expect("manifest")
        .replace("width = 416", "width = 640")
        .replace(
            "file = \"yolox_nano.onnx\"",
            &format!("file = \"{}\"", models.join("yolox_nano.onnx").display()),
        )
        .replace(
            "labels = \"coco_labels.txt\"",
            &format!("labels = \"{}\"", models.join("coco_labels.txt").display()),
        );
    std::fs::write(dir.join("wrong.toml"), text).expect("write");
    let config = DetectorConfig {
        model: dir.join("wrong.toml"),
        ..DetectorConfig::default()
    };
    let err = Detector::load(&config, Path::new("/"), 1.0).expect_err("shape mismatch");
    let msg = err.to_string();
    assert!(matches!(err, DetectError::Contract { .. }), "{msg}");
    assert!(
        msg.contains("[1, 3, 416, 416]") && msg.contains("[1, 3, 416, 640]"),
        "{msg}"
    );

    // A damaged model file.
    std::fs::write(dir.join("broken.onnx"), b"not a model").expect("write");
    let text = std::fs::read_to_string(dir.join("wrong.toml"))
        .expect("read")
        .replace(
            &models.join("yolox_nano.onnx").display().to_string(),
            &dir.join("broken.onnx").display().to_string(),
        );
    std::fs::write(dir.join("broken.toml"), text).expect("write");
    let config = DetectorConfig {
        model: dir.join("broken.toml"),
        ..DetectorConfig::default()
    };
    let msg = Detector::load(&config, Path::new("/"), 1.0)
        .expect_err("damaged")
        .to_string();
    assert!(
        msg.contains("sha256") && msg.contains("broken.onnx"),
        "{msg}"
    );

    // Missing manifest; unknown class.
    let config = DetectorConfig {
        model: dir.join("none.toml"),
        ..DetectorConfig::default()
    };
    let msg = Detector::load(&config, Path::new("/"), 1.0)
        .expect_err("missing")
        .to_string();
    assert!(
        msg.contains("none.toml") && msg.contains("cannot read"),
        "{msg}"
    );
    let config = DetectorConfig {
        classes: vec!["tuk-tuk".into()],
        ..DetectorConfig::default()
    };
    let msg = Detector::load(&config, &root(), 1.0)
        .expect_err("class")
        .to_string();
    assert!(
        msg.contains("tuk-tuk") && msg.contains("80 labels"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
