//! Fuzz targets of the configuration: the TOML parser and validator, and the `NAME=x1,y1,...`
//! lines and zones of `pantau replay`. Whatever the input, they answer (a value or an error)
//! without panicking or hanging. Seeds are in `fuzz/corpus/config` and `fuzz/corpus/line`; the
//! long run is in `fuzz/README.md`.

#[path = "../../fuzz/mutate.rs"]
mod mutate;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use pantau_config::analytics::{parse_named_points, validate_scene};
use pantau_config::{Config, LineConfig, ZoneConfig};
use proptest::prelude::*;
use proptest::sample::Index;

/// Inputs above this are cut: the example config is 9 KiB.
const MAX_CONFIG: usize = 16 << 10;

/// Pieces of TOML and of pantau's schema, for random inputs and insertions.
#[rustfmt::skip]
const TOML_WORDS: &[&str] = &[
    "\n", " = ", "[", "]", "[[", "]]", "{", "}", ",", ".", "\"", "'", "\"\"\"", "'''", "#",
    "\\u0000", "\\", "true", "false", "nan", "-inf", "0", "-1", "1e308", "0x10",
    "1979-05-27T07:32:00Z", "[node]", "[ingest]", "[ingest.reconnect]", "[detector]",
    "[detector.thresholds]", "[tracker]", "[mqtt]", "[store]", "[outbox]", "[snapshots]",
    "[embedded]", "[api]", "[[cameras]]", "[[cameras.lines]]", "[[cameras.zones]]", "id", "url",
    "name", "points", "polygon", "directions", "hysteresis_px", "severity", "analysis_fps",
    "analysis_width", "stall_timeout_s", "connect_timeout_s", "max_clock_skew_s", "password",
    "password_env", "username", "lost_frames", "lost_s", "cors_origins", "listen", "rtsp://",
    "rtsps://", "file://", "test://", "u:p@", "?fps=", "&width=", "%40", "%", "[api.limits]",
    "media_dirs", "trusted_proxies", "camera_env_prefix", "sub_url", "decode", "\"sub\"",
    "motion_gate", "motion_refresh_s", "motion_threshold", "decoder_threads", "decoder_nice",
    "fair_degradation", "min_analysis_fps", "workers", "threads",
];

/// Values that often break validators, to splice into valid keys.
#[rustfmt::skip]
const TOML_VALUES: &[&str] = &[
    "nan", "+nan", "-nan", "inf", "+inf", "-inf", "-0.0", "0", "-1", "1", "0.0001", "1e308",
    "1.8e308", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "4294967295", "4294967296", "65535", "65536", "255", "256", "true", "\"\"", "\" \"",
    "\"\\u0000\"", "\"a\\nb\"", "[]", "[[]]", "[[0, 0]]", "[[nan, inf], [-inf, 1e308]]",
    "[[0, 0], [0, 0], [0, 0]]", "{}", "{ in = \"\", out = \"\" }", "1979-05-27T07:32:00Z",
    "07:32:00", "\"rtsp://u:p@h/x\"", "\"rtsp://:@/\"", "\"rtsps://[::1]:99999/x\"",
    "\"file://\"", "\"file:///\"", "\"file:///dev/null\"", "\"file://.\"", "\"file://..\"",
    "\"test://\"", "\"test://ball?fps=0&width=99999999999\"", "\"test://smpte?=&&\"",
    "\"%zz%4\"", "\"0.0.0.0:0\"", "\"[::1]:65536\"", "\"drop_oldest\"", "\"reject_new\"",
    "\"warning\"", "\"auto\"",
];

/// A TOML value: an interesting one, or a random number or string.
fn toml_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::sample::select(TOML_VALUES).prop_map(String::from),
        1 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(|v| toml::Value::Float(v).to_string()),
        1 => "\\PC{0,24}".prop_map(|s| toml::Value::String(s).to_string()),
        1 => "[a-z:/?&=%@.]{0,24}".prop_map(|s| toml::Value::String(s).to_string()),
    ]
    .boxed()
}

/// Seeds with the values of 1 or 2 of their `key = value` lines replaced by [`toml_value`]s.
fn toml_spliced(seeds: Arc<Vec<Vec<u8>>>) -> BoxedStrategy<mutate::Input> {
    (
        any::<Index>(),
        proptest::collection::vec((any::<Index>(), toml_value()), 1..3),
    )
        .prop_map(move |(seed, splices)| {
            let text = String::from_utf8_lossy(&seeds[seed.index(seeds.len())]).into_owned();
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            let keyed: Vec<usize> = (0..lines.len())
                .filter(|i| {
                    let line = lines[*i].trim_start();
                    line.starts_with(|c: char| c.is_ascii_alphabetic()) && line.contains('=')
                })
                .collect();
            if !keyed.is_empty() {
                for (at, value) in splices {
                    let i = keyed[at.index(keyed.len())];
                    let key = lines[i].split('=').next().unwrap_or_default().to_string();
                    lines[i] = format!("{key}= {value}");
                }
            }
            let mut out = lines.join("\n").into_bytes();
            out.truncate(MAX_CONFIG);
            mutate::Input(out)
        })
        .boxed()
}

/// `fuzz/corpus/config`, and the example and demo configs where they are (so these seeds follow
/// every change to the schema).
fn config_seeds() -> Vec<Vec<u8>> {
    let mut seeds = mutate::corpus("config");
    for file in ["example.toml", "demo.toml", "fleet.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        seeds.push(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    seeds
}

/// The folder relative paths resolve against: it holds the `clip.mp4` the seeds name.
fn base() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One folder for every run (not one per process, which nothing would remove).
        let dir = std::env::temp_dir().join("pantau-fuzz-config");
        std::fs::create_dir_all(&dir).expect("base folder");
        std::fs::write(dir.join("clip.mp4"), b"not really a video").expect("clip");
        dir
    })
}

/// Environment variables whose name starts with `PANTAU_FUZZ` are set, others are not.
fn env(name: &str) -> Option<String> {
    name.starts_with("PANTAU_FUZZ").then(|| "fuzz".to_string())
}

/// Parses and, when it parses, validates; what parses also serializes and reads back (the API
/// keeps cameras in a TOML file that must load at the next start).
fn parse_and_validate(input: Vec<u8>) {
    mutate::finishes("parsing and validating the config", move || {
        let text = String::from_utf8_lossy(&input);
        let Ok(config) = Config::parse(&text) else {
            return;
        };
        let saved = toml::to_string(&config).expect("a parsed config serializes");
        if let Err(e) = Config::parse(&saved) {
            panic!("a parsed config does not read back: {e}\n{saved}");
        }
        match config.validate(base(), &env) {
            Ok(valid) => {
                for camera in &valid.cameras {
                    let _ = camera.source.redacted();
                    let _ = camera.reconnect.delay(1000, 1.0);
                }
            }
            Err(issues) => {
                assert!(!issues.is_empty(), "an error without a problem");
                let _ = issues.to_string();
            }
        }
    });
}

/// Parses a `--line`/`--zone` argument and checks what it gives, as `pantau replay` does.
fn parse_points(input: Vec<u8>) {
    mutate::finishes("parsing a --line argument", move || {
        let text = String::from_utf8_lossy(&input);
        let Ok((name, points)) = parse_named_points(&text) else {
            return;
        };
        let line = LineConfig {
            name: name.clone(),
            points: points.clone(),
            directions: None,
            hysteresis_px: 6.0,
        };
        let zone = ZoneConfig::watch(&name, points, Default::default());
        let _ = validate_scene("replay", &[line], &[zone]).to_string();
    });
}

proptest! {
    #![proptest_config(mutate::config(1000))]

    #[test]
    fn config_parse_and_validate(input in mutate::input(config_seeds(), TOML_WORDS, MAX_CONFIG)) {
        parse_and_validate(input.0);
    }

    #[test]
    fn config_values_spliced_into_valid_keys(input in toml_spliced(Arc::new(config_seeds()))) {
        parse_and_validate(input.0);
    }

    #[test]
    fn line_argument(input in mutate::input(
        mutate::corpus("line"),
        &["=", ",", ", ", "-", ".", "e", "1", "0", "NaN", "inf", "1e39", "16384", "a", "_"],
        512,
    )) {
        parse_points(input.0);
    }
}

/// Every seed, as it is, every time (the random cases may not pick them all).
#[test]
fn every_seed_as_it_is() {
    for seed in config_seeds() {
        parse_and_validate(seed);
    }
    for seed in mutate::corpus("line") {
        parse_points(seed);
    }
}
