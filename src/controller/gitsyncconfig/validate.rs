//! Step 1 of a GitSyncConfig pass: the spec checked without IO.

use std::time::Duration;

use super::super::Problem;
use crate::api::{self, Reason};
use crate::git::RepoUrl;
use crate::keys;

/// Shortest `spec.interval`: nobody hammers their git host.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Longest `spec.interval`: a day. Longer values are refused, so no arithmetic on an interval
/// can overflow (a hostile `18000000000000000000s` once crashed the process).
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Interval assumed when the spec's cannot be read.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// The spec, checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Parsed repository URL.
    pub url: RepoUrl,
    /// Check interval.
    pub interval: Duration,
    /// Pinned host keys from the spec, when given.
    pub pinned_known_hosts: Option<String>,
}

/// Checks the spec without IO.
pub fn validate(spec: &api::GitSyncConfigSpec) -> Result<Validated, Problem> {
    let url = RepoUrl::parse(&spec.repository.url)
        .map_err(|e| Problem::stalled(e.reason(), e.to_string()))?;
    check_branch_name(&spec.repository.branch)?;
    let interval = parse_interval(&spec.interval)?;
    let pinned = spec
        .repository
        .known_hosts
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            keys::validate_known_hosts(s)
                .map(|_| s.to_string())
                .map_err(|e| {
                    Problem::stalled(
                        Reason::InvalidKnownHosts,
                        format!("spec.repository.knownHosts: {e}"),
                    )
                })
        })
        .transpose()?;
    Ok(Validated {
        url,
        interval,
        pinned_known_hosts: pinned,
    })
}

/// Go-style durations (`5m`, `1h30m`, `90s`), between [`MIN_INTERVAL`] and [`MAX_INTERVAL`].
pub fn parse_interval(s: &str) -> Result<Duration, Problem> {
    let bad = |why: &str| {
        Problem::stalled(
            Reason::InvalidInterval,
            format!("spec.interval {s:?} {why}"),
        )
    };
    let d =
        humantime::parse_duration(s).map_err(|_| bad("is not a duration like 5m, 1h30m or 90s"))?;
    if d < MIN_INTERVAL {
        return Err(bad("is below the minimum of 10s"));
    }
    if d > MAX_INTERVAL {
        return Err(bad("is above the maximum of 24h"));
    }
    Ok(d)
}

/// The interval of a spec, or the default when it is invalid (the condition says so).
pub fn interval_or_default(s: &str) -> Duration {
    parse_interval(s).unwrap_or(DEFAULT_INTERVAL)
}

/// git's ref-name rules (check-ref-format), the parts that matter for a branch.
pub fn check_branch_name(b: &str) -> Result<(), Problem> {
    match ref_format_violation(b) {
        None => Ok(()),
        Some(why) => Err(Problem::stalled(
            Reason::InvalidBranch,
            format!("spec.repository.branch {b:?} is not a valid git branch name: {why}"),
        )),
    }
}

/// What makes `name` no valid branch or tag name (git's check-ref-format, the parts that
/// matter on a command line and in a ref), if anything. Pure.
pub fn ref_format_violation(name: &str) -> Option<&'static str> {
    let b = name;
    if b.is_empty() || b.starts_with('-') || b.starts_with('/') || b.ends_with('/') {
        return Some("it must not be empty or start with '-' or '/', or end with '/'");
    }
    if b.contains("..") || b.contains("//") || b.contains("@{") || b == "@" {
        return Some("it must not contain '..', '//' or '@{'");
    }
    if b.ends_with(".lock") || b.ends_with('.') || b.split('/').any(|c| c.starts_with('.')) {
        return Some("no component may start with '.', and it must not end with '.' or '.lock'");
    }
    if b.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Some("it must not contain spaces, control characters or any of ~^:?*[\\");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names() {
        for ok in ["master", "main", "release/v1", "feature_x-1"] {
            assert!(check_branch_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "x.lock", ".hidden", "a/.b", "a:b", "a~1", "/a", "a/",
        ] {
            assert_eq!(
                check_branch_name(bad).unwrap_err().reason,
                Reason::InvalidBranch,
                "{bad}"
            );
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_interval("24h").unwrap(), MAX_INTERVAL);
        for bad in [
            "1s",
            "soon",
            "25h",
            "18000000000000000000s",
            "99999999999999y",
            "",
        ] {
            assert_eq!(
                parse_interval(bad).unwrap_err().reason,
                Reason::InvalidInterval,
                "{bad}"
            );
        }
        assert_eq!(
            interval_or_default("18000000000000000000s"),
            DEFAULT_INTERVAL
        );
    }
}
