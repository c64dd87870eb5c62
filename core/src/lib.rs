//! Shared pieces of pantau: the configuration model with its validation, and small types used by
//! every stage (sources -> analytics -> sinks -> API).
//!
//! The configuration is read once, validated up front with *every* problem listed with its path,
//! and turned into resolved settings (`CameraSettings`) that the stages consume. Nothing starts
//! on a config that has errors.

pub mod analytics;
pub mod config;
pub mod outputs;
pub mod secret;

pub use config::{
    CameraConfig, CameraSettings, Config, ConfigError, ConfigIssue, ConfigIssues, Credentials,
    DetectorConfig, LineConfig, ReconnectSettings, SourceSpec, TestPattern, TrackerConfig,
    Transport, ZoneConfig,
};
pub use secret::Secret;
