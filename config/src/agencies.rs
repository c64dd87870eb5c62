//! `[agencies]`: command centers that share one fleet but each see their own cameras. An agency
//! (e.g. `polres`, the police; `pemkot`, city hall) owns camera groups; each camera belongs to
//! one group (`cameras[].group`); a user of an agency sees the cameras of its groups and their
//! events, incidents and history. A group owned by two agencies is shared by both.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::validation::{check_name, ConfigIssues};

/// The most agencies one fleet has.
pub const MAX_AGENCIES: usize = 32;
/// The most camera groups one agency owns.
pub const MAX_GROUPS: usize = 64;

/// One agency.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    /// Shown to operators, e.g. "Polres Lubuklinggau". Default: the agency's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The camera groups it owns (`cameras[].group`), e.g. `["polres", "shared"]`. Each is an id;
    /// at least one.
    pub groups: Vec<String>,
}

/// Every agency by id; empty: no agencies, every user sees every camera.
pub type Agencies = BTreeMap<String, AgencyConfig>;

/// The groups some agency owns.
pub fn owned_groups(agencies: &Agencies) -> BTreeSet<&str> {
    agencies
        .values()
        .flat_map(|a| a.groups.iter().map(String::as_str))
        .collect()
}

/// Checks `[agencies]` and that each camera's group is one an agency owns.
pub(crate) fn check(
    issues: &mut ConfigIssues,
    agencies: &Agencies,
    cameras: &[crate::CameraConfig],
) {
    if agencies.len() > MAX_AGENCIES {
        issues.push(
            "agencies",
            format!(
                "{} agencies; at most {MAX_AGENCIES} share one fleet",
                agencies.len()
            ),
        );
    }
    for (id, a) in agencies {
        let path = format!("agencies.{id}");
        check_name(issues, &path, id);
        if a.groups.is_empty() || a.groups.len() > MAX_GROUPS {
            issues.push(
                format!("{path}.groups"),
                format!(
                    "name 1 to {MAX_GROUPS} camera groups this agency owns, e.g. groups = [\"{id}\"]"
                ),
            );
        }
        for (i, g) in a.groups.iter().enumerate() {
            check_name(issues, &format!("{path}.groups[{i}]"), g);
        }
        if let Some(name) = &a.name {
            if name.trim().is_empty() || name.len() > 200 {
                issues.push(format!("{path}.name"), "use 1 to 200 characters");
            }
        }
    }
    let owned = owned_groups(agencies);
    for (i, c) in cameras.iter().enumerate() {
        if let Some(problem) = group_problem(agencies, &owned, c.group.as_deref()) {
            issues.push(format!("cameras[{i}].group"), problem);
        }
    }
}

/// Why a camera's `group` does not fit `[agencies]`, or `None` when it does.
pub fn camera_group_problem(agencies: &Agencies, group: Option<&str>) -> Option<String> {
    group_problem(agencies, &owned_groups(agencies), group)
}

fn group_problem(
    agencies: &Agencies,
    owned: &BTreeSet<&str>,
    group: Option<&str>,
) -> Option<String> {
    let list = || owned.iter().copied().collect::<Vec<_>>().join(", ");
    match group {
        None if agencies.is_empty() => None,
        None => Some(format!(
            "agencies are configured, so every camera names the group it belongs to (one of: {}); \
             without one no agency's users would see it",
            list()
        )),
        Some(g) if agencies.is_empty() => Some(format!(
            "group \"{g}\" is set but there is no [agencies] section owning camera groups; add \
             one or remove the group"
        )),
        Some(g) if !owned.contains(g) => Some(format!(
            "no agency owns group \"{g}\"; use one of: {} (or add it to an agency's groups)",
            list()
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agencies() -> Agencies {
        let mut a = Agencies::new();
        a.insert(
            "polres".into(),
            AgencyConfig {
                name: Some("Polres Lubuklinggau".into()),
                groups: vec!["police".into(), "shared".into()],
            },
        );
        a.insert(
            "pemkot".into(),
            AgencyConfig {
                name: None,
                groups: vec!["city".into(), "shared".into()],
            },
        );
        a
    }

    #[test]
    fn every_camera_names_a_group_some_agency_owns() {
        let a = agencies();
        assert_eq!(camera_group_problem(&a, Some("shared")), None);
        assert!(camera_group_problem(&a, Some("traffic"))
            .is_some_and(|p| p.contains("city, police, shared")));
        assert!(camera_group_problem(&a, None)
            .is_some_and(|p| p.contains("every camera names the group")));
        assert_eq!(camera_group_problem(&Agencies::new(), None), None);
        assert!(camera_group_problem(&Agencies::new(), Some("x")).is_some());
    }

    #[test]
    fn agency_ids_and_groups_are_checked() {
        let mut a = agencies();
        a.insert(
            "Bad Id".into(),
            AgencyConfig {
                name: Some(" ".into()),
                groups: vec![],
            },
        );
        let mut issues = ConfigIssues::default();
        check(&mut issues, &a, &[]);
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "agencies.Bad Id",
                "agencies.Bad Id.groups",
                "agencies.Bad Id.name"
            ]
        );
    }
}
