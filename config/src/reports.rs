//! Citizen reports: what integrations (citizen apps) may send to `POST /api/v1/reports`, where
//! their photos are kept, which cameras a report is matched to, and how status changes are
//! sent back to the app's callback URL.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigIssues;
use crate::validation::check_range;

/// The `[reports]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// Take reports at `POST /api/v1/reports`. Default true (integrations still need a key,
    /// made by an admin; without one nobody can send a report).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Folder for report photos, relative to the config file. Default `var/reports`.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Cameras within this many metres of a report whose view covers it are matched to it.
    /// Default 150. Range 1..=5000.
    #[serde(default = "default_match_radius")]
    pub match_radius_m: f64,
    /// Photos one report may carry. Default 4. Range 0..=16.
    #[serde(default = "default_max_photos")]
    pub max_photos: u32,
    /// Largest photo, in KiB of the decoded file (JPEG or PNG). Default 4096. Range
    /// 16..=32768.
    #[serde(default = "default_photo_max_kb")]
    pub photo_max_kb: u32,
    /// Reports one integration key may send per minute; more get 429 with `Retry-After`.
    /// Default 60. Range 1..=10000.
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    /// Longest report text, in characters. Default 4000. Range 1..=100000.
    #[serde(default = "default_max_text")]
    pub max_text_chars: u32,
    /// A report's `time` may be at most this far ahead of the server's clock (a phone's clock
    /// is rarely exact). Default 300. Range 0..=86400.
    #[serde(default = "default_max_future")]
    pub max_future_s: u32,
    /// A report older than this is refused (apps that were offline send late; the event
    /// store keeps 400 days). Default 30. Range 1..=365.
    #[serde(default = "default_max_age_days")]
    pub max_age_days: u32,
    /// Seconds a callback POST may take, connecting included. Default 10. Range 1..=120.
    #[serde(default = "default_callback_timeout")]
    pub callback_timeout_s: u32,
    /// First wait before a failed callback is tried again; it doubles with each failure.
    /// Default 5. Range 1..=3600.
    #[serde(default = "default_retry_initial")]
    pub callback_retry_initial_s: u32,
    /// Longest wait between tries of one callback. Default 600. Range
    /// callback_retry_initial_s..=86400.
    #[serde(default = "default_retry_max")]
    pub callback_retry_max_s: u32,
    /// A callback not acknowledged this many hours after it was made is given up: kept in the
    /// database as dead and logged. Default 168 (7 days). Range 1..=8760.
    #[serde(default = "default_max_age_h")]
    pub callback_max_age_h: u32,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: default_dir(),
            match_radius_m: default_match_radius(),
            max_photos: default_max_photos(),
            photo_max_kb: default_photo_max_kb(),
            rate_per_minute: default_rate(),
            max_text_chars: default_max_text(),
            max_future_s: default_max_future(),
            max_age_days: default_max_age_days(),
            callback_timeout_s: default_callback_timeout(),
            callback_retry_initial_s: default_retry_initial(),
            callback_retry_max_s: default_retry_max(),
            callback_max_age_h: default_max_age_h(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_dir() -> PathBuf {
    PathBuf::from("var/reports")
}
fn default_match_radius() -> f64 {
    150.0
}
fn default_max_photos() -> u32 {
    4
}
fn default_photo_max_kb() -> u32 {
    4096
}
fn default_rate() -> u32 {
    60
}
fn default_max_text() -> u32 {
    4000
}
fn default_max_future() -> u32 {
    300
}
fn default_max_age_days() -> u32 {
    30
}
fn default_callback_timeout() -> u32 {
    10
}
fn default_retry_initial() -> u32 {
    5
}
fn default_retry_max() -> u32 {
    600
}
fn default_max_age_h() -> u32 {
    168
}

impl ReportsConfig {
    pub(crate) fn check(&self, issues: &mut ConfigIssues) {
        let p = |f: &str| format!("reports.{f}");
        check_range(
            issues,
            &p("match_radius_m"),
            self.match_radius_m,
            1.0,
            5000.0,
            " m",
        );
        check_range(issues, &p("max_photos"), self.max_photos, 0, 16, "");
        check_range(
            issues,
            &p("photo_max_kb"),
            self.photo_max_kb,
            16,
            32_768,
            " KiB",
        );
        check_range(
            issues,
            &p("rate_per_minute"),
            self.rate_per_minute,
            1,
            10_000,
            "",
        );
        check_range(
            issues,
            &p("max_text_chars"),
            self.max_text_chars,
            1,
            100_000,
            "",
        );
        check_range(
            issues,
            &p("max_future_s"),
            self.max_future_s,
            0,
            86_400,
            " s",
        );
        check_range(issues, &p("max_age_days"), self.max_age_days, 1, 365, "");
        check_range(
            issues,
            &p("callback_timeout_s"),
            self.callback_timeout_s,
            1,
            120,
            " s",
        );
        check_range(
            issues,
            &p("callback_retry_initial_s"),
            self.callback_retry_initial_s,
            1,
            3600,
            " s",
        );
        check_range(
            issues,
            &p("callback_retry_max_s"),
            self.callback_retry_max_s,
            self.callback_retry_initial_s.max(1),
            86_400,
            " s",
        );
        check_range(
            issues,
            &p("callback_max_age_h"),
            self.callback_max_age_h,
            1,
            8760,
            " h",
        );
        if self.dir.as_os_str().is_empty() {
            issues.push(
                p("dir"),
                "give a folder for report photos, e.g. var/reports",
            );
        }
    }

    /// The largest request body a report can need: every photo at its largest, base64
    /// (4 bytes for 3), the text (4 bytes a character at most, escaped JSON up to 6) and
    /// 64 KiB for the rest.
    pub fn max_body_bytes(&self) -> usize {
        let photos = self.max_photos as usize * self.photo_max_kb as usize * 1024;
        photos.div_ceil(3) * 4 + self.max_text_chars as usize * 6 + (64 << 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_body_fits_every_photo() {
        let c = ReportsConfig::default();
        let mut issues = ConfigIssues::default();
        c.check(&mut issues);
        assert!(issues.is_empty(), "{issues}");
        assert!(c.max_body_bytes() > 4 * 4096 * 1024 * 4 / 3);
        assert!(c.max_body_bytes() < 23 << 20);
    }

    #[test]
    fn every_bad_value_is_named() {
        let c = ReportsConfig {
            match_radius_m: f64::NAN,
            max_photos: 17,
            callback_retry_initial_s: 60,
            callback_retry_max_s: 30,
            dir: PathBuf::new(),
            ..ReportsConfig::default()
        };
        let mut issues = ConfigIssues::default();
        c.check(&mut issues);
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "reports.match_radius_m",
                "reports.max_photos",
                "reports.callback_retry_max_s",
                "reports.dir"
            ]
        );
    }
}
