//! pantau's configuration: the TOML schema (`config`), its checks (`validation`), cameras
//! (`cameras`) and their sources (`sources`), analytics, traffic (calibration, lanes, rules) and
//! outputs sections, citizen reports, secrets and the one URL-redaction function.
//!
//! The configuration is read once, validated up front with *every* problem listed with its path,
//! and turned into resolved settings (`CameraSettings`) that the stages consume. Nothing starts
//! on a config that has errors.

pub mod agencies;
pub mod analytics;
pub mod cameras;
pub mod config;
pub mod evidence;
pub mod fleet;
pub mod outputs;
pub mod reports;
pub mod secret;
pub mod sources;
pub mod traffic;
pub mod validation;

pub use config::{
    CameraConfig, CameraSettings, Config, ConfigError, ConfigIssue, ConfigIssues, Credentials,
    Decode, DetectorConfig, LineConfig, MotionGate, ReconnectSettings, SourceSpec, TestPattern,
    TrackerConfig, Transport, ZoneConfig,
};
pub use secret::{redact_url, Secret};
