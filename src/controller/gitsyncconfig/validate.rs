//! Step 1 of a GitSyncConfig pass: the spec checked without network IO (a `file://` path is
//! resolved on the local filesystem).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::super::{Options, Problem};
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

/// Checks the spec against the operator's `options` (which URLs it accepts).
pub fn validate(spec: &api::GitSyncConfigSpec, options: &Options) -> Result<Validated, Problem> {
    let url = RepoUrl::parse(&spec.repository.url)
        .map_err(|e| Problem::stalled(e.reason(), e.to_string()))?;
    check_file_url(&url, options)?;
    check_auth(&url, spec)?;
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

/// HTTPS needs `spec.repository.auth` (the operator makes no deploy key for it); SSH and
/// file URLs must not have it (they would silently ignore it).
fn check_auth(url: &RepoUrl, spec: &api::GitSyncConfigSpec) -> Result<(), Problem> {
    let auth = spec.repository.auth.as_ref();
    if url.is_https() && auth.is_none() {
        return Err(Problem::stalled(
            Reason::InvalidSpec,
            format!("spec.repository.url {url} is an HTTPS URL, which needs credentials: set spec.repository.auth.secretRef to a Secret with keys username and password (a token with read and write access to the repository), or githubAppID, githubAppInstallationID and githubAppPrivateKey (a GitHub App); or use the repository's SSH URL and a deploy key"),
        ));
    }
    if !url.is_https() && auth.is_some() {
        return Err(Problem::stalled(
            Reason::InvalidSpec,
            format!("spec.repository.auth applies to HTTPS URLs only, but spec.repository.url {url} is not one: SSH repositories authenticate with the deploy key (spec.deployKey). Remove spec.repository.auth, or use the repository's https:// URL"),
        ));
    }
    if url.is_https()
        && spec
            .repository
            .known_hosts
            .as_deref()
            .is_some_and(|k| !k.trim().is_empty())
    {
        return Err(Problem::stalled(
            Reason::InvalidSpec,
            format!("spec.repository.knownHosts pins SSH host keys, but spec.repository.url {url} is an HTTPS URL, which is verified by its TLS certificate (a private CA goes in the credentials Secret under caFile): remove spec.repository.knownHosts"),
        ));
    }
    Ok(())
}

/// `file://` URLs only with `--allow-file-urls`, and never into the data directory (the
/// operator's own mirrors and key files), however the path is spelled: `..`, symlinks and
/// percent-escapes are resolved first.
fn check_file_url(url: &RepoUrl, options: &Options) -> Result<(), Problem> {
    let RepoUrl::File { path, .. } = url else {
        return Ok(());
    };
    if !options.allow_file_urls {
        return Err(Problem::stalled(
            Reason::FileURLNotAllowed,
            format!("spec.repository.url {url} is a file:// URL, which this operator does not accept: use the repository's SSH URL (git@host:org/repo.git or ssh://git@host:port/org/repo.git); for tests and local setups, the operator can be started with --allow-file-urls"),
        ));
    }
    let data = resolve(&options.data_dir);
    let inside = [path.clone(), percent_decoded(path)]
        .iter()
        .any(|p| resolve(Path::new(p)).starts_with(&data));
    if inside {
        return Err(Problem::stalled(
            Reason::FileURLNotAllowed,
            format!("spec.repository.url {url} points into the operator's data directory ({}), which holds its own mirrors and key files: refused even with --allow-file-urls; use a repository outside it", options.data_dir.display()),
        ));
    }
    Ok(())
}

/// `path` made absolute with symlinks and `..` resolved as the kernel does, one component at
/// a time (a `..` after a symlink leaves the symlink's target); components that do not exist
/// are taken as they are.
fn resolve(path: &Path) -> PathBuf {
    let absolute = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    let mut out = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(c) => {
                out.push(c);
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `%XX` escapes decoded, as git and gix do for URL paths; anything else kept as it is.
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    fn spec(url: &str) -> api::GitSyncConfigSpec {
        serde_json::from_value(serde_json::json!({
            "repository": {"url": url},
            "tooljet": {"url": "http://t", "workspace": "w", "credentialsSecretRef": {"name": "c"}}
        }))
        .unwrap()
    }

    #[test]
    fn file_urls_need_the_flag_and_never_reach_the_data_dir() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let outside = root.path().join("repos/apps.git");
        std::fs::create_dir_all(data.join("mirrors/abc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let link = root.path().join("repos/sneaky");
        std::os::unix::fs::symlink(data.join("mirrors"), &link).unwrap();
        let mut options = Options {
            data_dir: data.clone(),
            ..Options::default()
        };
        let url = |p: &Path| format!("file://{}", p.display());
        let refused = |u: &str, o: &Options| validate(&spec(u), o).unwrap_err();

        let p = refused(&url(&outside), &options);
        assert_eq!(p.reason, Reason::FileURLNotAllowed);
        assert!(
            p.stalled && p.message.contains("--allow-file-urls"),
            "{}",
            p.message
        );

        options.allow_file_urls = true;
        assert!(validate(&spec(&url(&outside)), &options).is_ok());
        assert!(validate(&spec("git@github.com:acme/apps.git"), &options).is_ok());
        let dotdot = root.path().join("repos/../data/mirrors/abc");
        let escaped = format!("file://{}", root.path().join("%64ata/mirrors").display());
        for inside in [
            url(&data.join("mirrors/abc")),
            url(&data),
            url(&dotdot),
            url(&link.join("abc")),
            url(&link.join("not-yet/../abc")),
            url(&data.join("not-yet/x.git")),
            escaped,
        ] {
            let p = refused(&inside, &options);
            assert_eq!(p.reason, Reason::FileURLNotAllowed, "{inside}");
            assert!(
                p.message.contains("data directory"),
                "{inside}: {}",
                p.message
            );
        }
        // A sibling whose name merely starts like the data directory is outside it.
        let sibling = root.path().join("data-other/apps.git");
        assert!(validate(&spec(&url(&sibling)), &options).is_ok());
    }

    #[test]
    fn https_needs_auth_and_ssh_refuses_it() {
        let o = Options::default();
        let p = validate(&spec("https://github.com/acme/apps.git"), &o).unwrap_err();
        assert_eq!(p.reason, Reason::InvalidSpec);
        assert!(p.stalled && p.message.contains("spec.repository.auth.secretRef"));
        let mut with_auth = spec("https://github.com/acme/apps.git");
        with_auth.repository.auth = Some(api::RepositoryAuth {
            secret_ref: api::SecretRef {
                name: "creds".into(),
            },
        });
        assert!(validate(&with_auth, &o).unwrap().url.is_https());
        with_auth.repository.known_hosts = Some("h ssh-ed25519 AAAA".into());
        assert!(validate(&with_auth, &o)
            .unwrap_err()
            .message
            .contains("knownHosts"));
        let mut ssh = spec("git@github.com:acme/apps.git");
        ssh.repository.auth = with_auth.repository.auth.clone();
        let p = validate(&ssh, &o).unwrap_err();
        assert_eq!(p.reason, Reason::InvalidSpec);
        assert!(p.message.contains("deploy key"), "{}", p.message);
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
