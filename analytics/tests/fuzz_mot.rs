//! Fuzz target of the MOTChallenge reader (`pantau mot-eval --gt/--tracks`): whatever the
//! files hold, reading them, scoring one against the other and counting line crossings answer
//! without panicking or hanging, and the ratios stay ratios. Seeds are in `fuzz/corpus/mot`; the long run is in
//! `fuzz/README.md`.

#[path = "../../fuzz/mutate.rs"]
mod mutate;

use pantau_analytics::mot::{crossings, evaluate, only_frames, parse};
use proptest::prelude::*;

/// Inputs above this are cut: a few hundred rows, so scoring (cubic in the boxes of a frame)
/// stays quick.
const MAX_FILE: usize = 4 << 10;

#[rustfmt::skip]
const CSV_WORDS: &[&str] = &[
    ",", "\n", "\r\n", " ", "-", ".", "e", "0", "1", "-1", "9", "1e300", "-1e300", "NaN", "inf",
    "-inf", "18446744073709551616", "1,1,10,20,30,40,1\n", "2,1,11,21,30,40,1,-1,-1,-1\n",
    "1,2,0,0,0,0,0\n",
];

fn mot_file() -> BoxedStrategy<mutate::Input> {
    mutate::input(mutate::corpus("mot"), CSV_WORDS, MAX_FILE)
}

/// Reads both files; when both read, scores one against the other and counts crossings.
fn read_and_score(gt: Vec<u8>, tracks: Vec<u8>, min_iou: f32, line: Vec<[f32; 2]>) {
    mutate::finishes("reading and scoring MOT files", move || {
        let Ok(gt) = parse(&String::from_utf8_lossy(&gt)) else {
            return;
        };
        let _ = evaluate(&gt, &gt, min_iou);
        let _ = crossings(&gt, &line);
        let Ok(tracks) = parse(&String::from_utf8_lossy(&tracks)) else {
            return;
        };
        let m = evaluate(&gt, &tracks, min_iou);
        for (name, v) in [
            ("idf1", m.idf1),
            ("precision", m.precision),
            ("recall", m.recall),
        ] {
            assert!(
                (0.0..=1.0).contains(&v),
                "{name} {v} is not in [0, 1]: {m:?}"
            );
        }
        assert!(m.mota <= 1.0, "mota {} is above 1: {m:?}", m.mota);
        let _ = serde_json::to_string(&m);
        let odd: std::collections::BTreeSet<u64> = gt.keys().copied().step_by(2).collect();
        let _ = evaluate(
            &only_frames(&gt, &odd),
            &only_frames(&tracks, &odd),
            min_iou,
        );
    });
}

proptest! {
    #![proptest_config(mutate::config(1000))]

    #[test]
    fn mot_files(
        gt in mot_file(),
        tracks in mot_file(),
        min_iou in prop_oneof![Just(0.5f32), Just(0.0), Just(1.0), any::<f32>()],
        line in proptest::collection::vec(
            prop_oneof![
                3 => [0f32..1000.0, 0f32..1000.0],
                1 => any::<[f32; 2]>(),
            ],
            0..4,
        ),
    ) {
        read_and_score(gt.0, tracks.0, min_iou, line);
    }
}

/// Every seed, as it is, against every other.
#[test]
fn every_seed_as_it_is() {
    let seeds = mutate::corpus("mot");
    for gt in &seeds {
        for tracks in &seeds {
            read_and_score(
                gt.clone(),
                tracks.clone(),
                0.5,
                vec![[0.0, 200.0], [800.0, 200.0]],
            );
        }
    }
}
