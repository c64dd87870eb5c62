//! `[fleet]`: several nodes sharing one database and one broker. Cameras live in the database;
//! each runs on exactly one node through a lease that its node renews.

use serde::{Deserialize, Serialize};

use crate::validation::{check_name, ConfigIssues};

/// Running as one node of a fleet.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Share cameras with the other nodes on the same `[store]`. Needs `[store]` and `[mqtt]`.
    /// Default false: this node runs every camera of its config file.
    #[serde(default)]
    pub enabled: bool,
    /// Groups this node belongs to; a camera with `run_on` runs only on nodes of one of its
    /// groups (police cameras on the police station's nodes). Each is an id.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The most cameras this node takes; 0 means no limit (an even share of the fleet).
    /// Size it with `pantau bench cameras`. Default 0.
    #[serde(default)]
    pub capacity: u32,
    /// How long a lease lasts without renewal, in seconds: a node that dies, hangs or loses the
    /// database loses its cameras after this, and the others start them. Default 5.
    /// Range 2..=60.
    #[serde(default = "default_lease_s")]
    pub lease_s: f64,
    /// The address other nodes' consoles link to for this node's API (e.g.
    /// `http://10.0.0.5:8080`); shown in `GET /api/v1/fleet`. Default: none.
    #[serde(default)]
    pub api_url: Option<String>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            groups: Vec::new(),
            capacity: 0,
            lease_s: default_lease_s(),
            api_url: None,
        }
    }
}

fn default_lease_s() -> f64 {
    5.0
}

impl FleetConfig {
    pub(crate) fn check(&self, issues: &mut ConfigIssues, has_store: bool, has_mqtt: bool) {
        if !self.lease_s.is_finite() || !(2.0..=60.0).contains(&self.lease_s) {
            issues.push(
                "fleet.lease_s",
                format!(
                    "{} is out of range: use 2 to 60 seconds (5 hands cameras over within 10 s)",
                    self.lease_s
                ),
            );
        }
        for (i, g) in self.groups.iter().enumerate() {
            check_name(issues, &format!("fleet.groups[{i}]"), g);
        }
        if self.enabled && !has_store {
            issues.push(
                "fleet.enabled",
                "a fleet shares its cameras through the database: add a [store] section \
                 (the same one on every node) or set fleet.enabled = false",
            );
        }
        if self.enabled && !has_mqtt {
            issues.push(
                "fleet.enabled",
                "a fleet's nodes see each other's events through the broker: add an [mqtt] \
                 section (the same broker on every node) or set fleet.enabled = false",
            );
        }
        if let Some(url) = &self.api_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 256 {
                issues.push(
                    "fleet.api_url",
                    format!("\"{url}\" is not an http:// or https:// address of this node's API"),
                );
            }
        }
    }

    /// How often the node renews its leases and looks for cameras to take: a fifth of the
    /// lease, so a few missed renewals are survived.
    pub fn tick(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.lease_s / 5.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_needs_store_and_broker_and_sane_lease() {
        let mut issues = ConfigIssues::default();
        let f = FleetConfig {
            enabled: true,
            lease_s: 0.5,
            groups: vec!["Polres".into()],
            api_url: Some("ftp://x".into()),
            ..FleetConfig::default()
        };
        f.check(&mut issues, false, false);
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "fleet.lease_s",
                "fleet.groups[0]",
                "fleet.enabled",
                "fleet.enabled",
                "fleet.api_url"
            ]
        );
        let mut issues = ConfigIssues::default();
        FleetConfig::default().check(&mut issues, false, false);
        assert!(issues.is_empty());
    }
}
