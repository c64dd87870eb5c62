//! Where a camera's frames come from: RTSP (with credentials kept out of the URL), a file or a
//! test pattern, resolved from what the config file says.

#![allow(unused_imports)]
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

#[allow(unused_imports)]
use crate::config::*;
#[allow(unused_imports)]
use crate::secret::Secret;
use crate::validation::check_range;

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RTP interleaved in the RTSP TCP connection: works through NAT and firewalls (default).
    #[default]
    Tcp,
    /// RTP over UDP: lower latency on a clean LAN, loses packets on a congested one.
    Udp,
    /// Try UDP, fall back to TCP.
    Auto,
}

/// A `videotestsrc` pattern usable in `test://` URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestPattern {
    Smpte,
    Ball,
    Snow,
    Black,
    Gradient,
}

impl TestPattern {
    const ALL: [(&'static str, TestPattern); 5] = [
        ("smpte", TestPattern::Smpte),
        ("ball", TestPattern::Ball),
        ("snow", TestPattern::Snow),
        ("black", TestPattern::Black),
        ("gradient", TestPattern::Gradient),
    ];

    /// The name `videotestsrc` knows the pattern by.
    pub fn gst_name(self) -> &'static str {
        match self {
            TestPattern::Smpte => "smpte",
            TestPattern::Ball => "ball",
            TestPattern::Snow => "snow",
            TestPattern::Black => "black",
            TestPattern::Gradient => "gradient",
        }
    }
}

/// RTSP credentials, kept out of the URL so GStreamer never echoes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// Where a camera's frames come from, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A network camera. `url` carries no credentials.
    Rtsp {
        url: Url,
        transport: Transport,
        latency_ms: u32,
        credentials: Option<Credentials>,
    },
    /// A recorded file, for replays and demos.
    File {
        path: PathBuf,
        looping: bool,
        realtime: bool,
    },
    /// A synthetic pattern, for trying pantau without a camera.
    Test {
        pattern: TestPattern,
        width: u32,
        height: u32,
        fps: u32,
    },
}

impl SourceSpec {
    /// The source as safe to print: credentials replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            SourceSpec::Rtsp {
                url, credentials, ..
            } => match credentials {
                Some(c) => {
                    let mut shown = url.clone();
                    // Setting userinfo on an rtsp URL with a host cannot fail.
                    let _ = shown.set_username(&c.username);
                    let _ = shown.set_password(Some("***"));
                    shown.to_string()
                }
                None => url.to_string(),
            },
            SourceSpec::File { path, .. } => format!("file://{}", path.display()),
            SourceSpec::Test {
                pattern,
                width,
                height,
                fps,
            } => format!(
                "test://{}?width={width}&height={height}&fps={fps}",
                pattern.gst_name()
            ),
        }
    }

    /// Short kind name: `rtsp`, `rtsps`, `file` or `test`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Rtsp { url, .. } if url.scheme() == "rtsps" => "rtsps",
            SourceSpec::Rtsp { .. } => "rtsp",
            SourceSpec::File { .. } => "file",
            SourceSpec::Test { .. } => "test",
        }
    }

    /// Live sources keep running in real time whether or not anyone keeps up.
    pub fn is_live(&self) -> bool {
        match self {
            SourceSpec::Rtsp { .. } | SourceSpec::Test { .. } => true,
            SourceSpec::File { realtime, .. } => *realtime,
        }
    }
}

pub(crate) fn resolve_test(
    path: &str,
    text: &str,
    issues: &mut ConfigIssues,
) -> Option<SourceSpec> {
    let url = match Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            issues.push(path, format!("\"{text}\" is not a valid URL ({e}); write test://smpte?width=640&height=480&fps=25"));
            return None;
        }
    };
    let name = url.host_str().unwrap_or("smpte");
    let pattern = TestPattern::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p);
    let Some(pattern) = pattern else {
        let names: Vec<_> = TestPattern::ALL.iter().map(|(n, _)| *n).collect();
        issues.push(
            path,
            format!(
                "test pattern \"{name}\" is unknown; use one of {}",
                names.join(", ")
            ),
        );
        return None;
    };
    let (mut width, mut height, mut fps) = (640u32, 480u32, 25u32);
    for (key, value) in url.query_pairs() {
        let slot = match key.as_ref() {
            "width" => &mut width,
            "height" => &mut height,
            "fps" => &mut fps,
            other => {
                issues.push(
                    path,
                    format!("test URL parameter \"{other}\" is unknown; use width, height and fps"),
                );
                continue;
            }
        };
        match value.parse::<u32>() {
            Ok(v) => *slot = v,
            Err(_) => issues.push(
                path,
                format!("test URL parameter {key}={value} is not a whole number"),
            ),
        }
    }
    let before = issues.0.len();
    check_range(issues, path, width, 16, 7680, " px wide");
    check_range(issues, path, height, 16, 4320, " px high");
    check_range(issues, path, fps, 1, 120, " fps");
    (issues.0.len() == before).then_some(SourceSpec::Test {
        pattern,
        width,
        height,
        fps,
    })
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
