//! Secrets (camera passwords, database URLs) that must never reach logs, errors or the API.

use std::fmt;

/// A string that prints as `***` in `Debug` and `Display`. Read it with [`Secret::expose`] only
/// where the value is handed to the thing that needs it (GStreamer, a database driver).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value. Call sites are easy to audit with `grep expose`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}

/// A URL as safe to show: `rtsp://user:secret@host/` -> `rtsp://user:***@host/`. The userinfo
/// ends at the *last* `@` before the path, so a password that itself holds `@` is hidden whole;
/// text that does not parse as a URL is handled the same way, so errors can show it.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{}", &rest[at + 1..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn the_whole_password_is_hidden_even_with_at_signs() {
        assert_eq!(redact_url("rtsp://u:p@h:554/x"), "rtsp://u:***@h:554/x");
        assert_eq!(redact_url("rtsp://u:p@ss@h/"), "rtsp://u:***@h/");
        assert_eq!(
            redact_url("rtsp://u:a@b@c@h:554/s?x=1"),
            "rtsp://u:***@h:554/s?x=1"
        );
        assert_eq!(redact_url("rtsp://h/x@y"), "rtsp://h/x@y");
        assert_eq!(redact_url("rtsp://u@h/x"), "rtsp://u@h/x");
        assert_eq!(redact_url("file:///a.mp4"), "file:///a.mp4");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
