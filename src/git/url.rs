//! Repository URL forms the operator accepts: scp-like `user@host:path`, `ssh://`, `https://`
//! (credentials from `spec.repository.auth`, never in the URL) and `file://`. Everything else
//! is refused with a message naming the accepted forms.

use std::fmt;

/// A parsed repository URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoUrl {
    /// Over SSH.
    Ssh {
        /// SSH user (`git` on most hosts; the key id on AWS CodeCommit).
        user: String,
        /// Host name or IP address.
        host: String,
        /// Port, only with `ssh://` URLs.
        port: Option<u16>,
        /// Path on the server, as given.
        path: String,
        /// The URL as given, passed to git unchanged.
        original: String,
    },
    /// Over HTTPS (smart HTTP), authenticated with `spec.repository.auth`.
    Https {
        /// Host name or IP address.
        host: String,
        /// Port, when given.
        port: Option<u16>,
        /// Path on the server, starting with `/`.
        path: String,
        /// The URL as given (it holds no credentials: those are refused).
        original: String,
    },
    /// A local repository (mirrors, tests).
    File {
        /// Absolute path.
        path: String,
        /// The URL as given.
        original: String,
    },
}

/// Why a URL was refused; the message says which forms work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL in any form.
    #[error("repository URL {url:?} cannot be parsed: {why}. Use an SSH URL like git@github.com:org/repo.git or ssh://git@host:2222/org/repo.git, or an HTTPS URL like https://github.com/org/repo.git with spec.repository.auth (file:///path for local repositories, when the operator runs with --allow-file-urls)")]
    Invalid { url: String, why: String },
    /// A real URL form the operator does not speak.
    #[error("repository URL {url:?} uses {scheme}, which the operator does not support: use the repository's SSH URL (scp-like git@host:org/repo.git, or ssh://git@host[:port]/org/repo.git, with a deploy key) or its HTTPS URL (https://host[:port]/org/repo.git, with a token or GitHub App in spec.repository.auth; plain http:// would send the token in clear); file:///path for local repositories, with --allow-file-urls")]
    Unsupported { url: String, scheme: String },
}

impl UrlError {
    /// Condition reason.
    pub fn reason(&self) -> crate::api::Reason {
        match self {
            UrlError::Invalid { .. } => crate::api::Reason::InvalidURL,
            UrlError::Unsupported { .. } => crate::api::Reason::UnsupportedURL,
        }
    }
}

impl RepoUrl {
    /// Parses and checks a repository URL.
    pub fn parse(input: &str) -> Result<RepoUrl, UrlError> {
        // Messages quote the URL: credentials a user put in it never go with them.
        Self::parse_raw(input).map_err(|e| match e {
            UrlError::Invalid { url, why } => UrlError::Invalid {
                url: redact_userinfo(&url),
                why,
            },
            UrlError::Unsupported { url, scheme } => UrlError::Unsupported {
                url: redact_userinfo(&url),
                scheme,
            },
        })
    }

    fn parse_raw(input: &str) -> Result<RepoUrl, UrlError> {
        let url = input.trim();
        let invalid = |why: &str| UrlError::Invalid {
            url: url.to_string(),
            why: why.to_string(),
        };
        if url.is_empty() {
            return Err(invalid("it is empty"));
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid("it contains whitespace or control characters"));
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "ssh" | "git+ssh" | "ssh+git" => parse_ssh_url(url, rest),
                "file" => {
                    if !rest.starts_with('/') {
                        return Err(invalid(
                            "file:// URLs need an absolute path (file:///srv/repo.git)",
                        ));
                    }
                    Ok(RepoUrl::File {
                        path: rest.to_string(),
                        original: url.to_string(),
                    })
                }
                "https" => parse_https_url(url, rest),
                s @ ("http" | "git" | "ftp" | "ftps") => Err(UrlError::Unsupported {
                    url: url.to_string(),
                    scheme: format!("{s}://"),
                }),
                _ => Err(invalid("unknown scheme")),
            };
        }
        if url.contains("::") && !url.contains('@') {
            return Err(UrlError::Unsupported {
                url: url.to_string(),
                scheme: "a git remote helper (<transport>::<address>)".into(),
            });
        }
        if url.starts_with('/') || url.starts_with('.') {
            return Err(UrlError::Unsupported {
                url: url.to_string(),
                scheme: "a plain local path".into(),
            });
        }
        parse_scp_like(url)
    }

    /// The URL to hand to git.
    pub fn as_git_url(&self) -> &str {
        match self {
            RepoUrl::Ssh { original, .. }
            | RepoUrl::Https { original, .. }
            | RepoUrl::File { original, .. } => original,
        }
    }

    /// The SSH host, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            RepoUrl::Ssh { host, .. } => Some(host),
            RepoUrl::Https { .. } | RepoUrl::File { .. } => None,
        }
    }

    /// Whether git reaches it over HTTPS (credentials from `spec.repository.auth`).
    pub fn is_https(&self) -> bool {
        matches!(self, RepoUrl::Https { .. })
    }

    /// `https://host[:port]` of an HTTPS URL, as given: what git's credential config is
    /// scoped to, so the token is offered to this host only (never to a proxy).
    pub fn https_origin(&self) -> Option<String> {
        let RepoUrl::Https { original, .. } = self else {
            return None;
        };
        let rest = original.split_once("://")?.1;
        let authority = rest.split('/').next()?;
        Some(format!("https://{authority}"))
    }

    /// Host and port of an HTTPS URL (443 when not given).
    pub fn https_host(&self) -> Option<(&str, u16)> {
        match self {
            RepoUrl::Https { host, port, .. } => Some((host, port.unwrap_or(443))),
            _ => None,
        }
    }

    /// The repository path without leading `/` and trailing `.git` (`org/repo`): how forge
    /// APIs and GitHub App installations name it.
    pub fn repo_path(&self) -> String {
        let path = match self {
            RepoUrl::Ssh { path, .. }
            | RepoUrl::Https { path, .. }
            | RepoUrl::File { path, .. } => path,
        };
        let collapsed = collapse_slashes(path);
        let trimmed = collapsed.trim_start_matches('/');
        trimmed.strip_suffix(".git").unwrap_or(trimmed).to_string()
    }

    /// The repository as the server resolves it, as a canonical URL of it: the key of its
    /// worker and of its mirror directory, so two spellings of one repository share them and
    /// two repositories never do. User as given, host lowercased, the port explicit (22), and
    /// the path as git sends it to the server: scp-like paths are relative to the user's home
    /// (`git@h:x.git` is `ssh://git@h:22/~/x.git`), `ssh://` paths absolute unless they start
    /// with `/~`. Repeated and trailing slashes are dropped; nothing else is guessed (`x` and
    /// `x.git` stay apart: telling them apart costs a second mirror, merging them could mix
    /// two repositories).
    pub fn identity(&self) -> String {
        match self {
            RepoUrl::Ssh {
                user,
                host,
                port,
                path,
                ..
            } => format!(
                "ssh://{user}@{}:{}{}",
                bracket_v6(&host.to_ascii_lowercase()),
                port.unwrap_or(22),
                server_path(path)
            ),
            RepoUrl::Https {
                host, port, path, ..
            } => format!(
                "https://{}:{}{}",
                bracket_v6(&host.to_ascii_lowercase()),
                port.unwrap_or(443),
                collapse_slashes(path)
            ),
            RepoUrl::File { path, .. } => format!("file://{}", collapse_slashes(path)),
        }
    }
}

/// IPv6 addresses keep their brackets, so the port stays unambiguous.
fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The path the server resolves, as the path of an `ssh://` URL meaning the same: `/abs`,
/// `/~/rel` (the user's home) or `/~user/rel` (another user's).
fn server_path(path: &str) -> String {
    // git (connect.c) drops the first character when the second is `~`: `ssh://h/~u/x` and
    // `h:/~u/x` reach the server as `~u/x`. Byte 1 being `~` makes byte 0 ASCII.
    let sent = if path.as_bytes().get(1) == Some(&b'~') {
        &path[1..]
    } else {
        path
    };
    if sent.starts_with('/') {
        let absolute = collapse_slashes(sent);
        // `/~…` would read as a home directory; `/./~…` is the same absolute path.
        return match absolute.strip_prefix("/~") {
            Some(rest) => format!("/./~{rest}"),
            None => absolute,
        };
    }
    // `x` and `~/x` are both relative to the home directory, where ssh sessions start.
    let relative = sent.strip_prefix("~/").unwrap_or(sent);
    if relative.starts_with('~') {
        format!("/{}", collapse_slashes(relative))
    } else {
        format!("/~/{}", collapse_slashes(relative))
    }
}

/// `a//b/` as `a/b` (a leading `/` kept): one directory either way on the server.
fn collapse_slashes(path: &str) -> String {
    let absolute = path.starts_with('/');
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_git_url())
    }
}

fn check_user_host(url: &str, user: &str, host: &str) -> Result<(), UrlError> {
    let invalid = |why: String| UrlError::Invalid {
        url: url.to_string(),
        why,
    };
    if user.is_empty() {
        return Err(invalid(
            "it names no SSH user; add it before the host, usually git@ (e.g. git@github.com:org/repo.git)".into(),
        ));
    }
    if user.starts_with('-') || host.starts_with('-') {
        return Err(invalid("user and host must not start with '-'".into()));
    }
    if host.is_empty() {
        return Err(invalid("it names no host".into()));
    }
    let ok_host = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if !host.chars().all(ok_host) {
        return Err(invalid(format!("{host:?} is not a valid host name")));
    }
    if !user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    {
        return Err(invalid(format!("{user:?} is not a valid SSH user name")));
    }
    Ok(())
}

fn parse_ssh_url(url: &str, rest: &str) -> Result<RepoUrl, UrlError> {
    let invalid = |why: &str| UrlError::Invalid {
        url: url.to_string(),
        why: why.to_string(),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Err(invalid("it names no repository path")),
    };
    if path.len() <= 1 {
        return Err(invalid("it names no repository path"));
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", authority),
    };
    let (host, port) = split_host_port(hostport).map_err(invalid)?;
    check_user_host(url, user, host)?;
    Ok(RepoUrl::Ssh {
        user: user.to_string(),
        host: host.to_string(),
        port,
        path: path.to_string(),
        original: url.to_string(),
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        let (h, after) = stripped.split_once(']').ok_or("unclosed '[' in the host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("unexpected text after the host"),
        };
        (h, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("the port is not a number from 1 to 65535")?,
        ),
        None => None,
    };
    Ok((host, port))
}

/// `https://host[:port]/path`, without userinfo, query or fragment.
fn parse_https_url(url: &str, rest: &str) -> Result<RepoUrl, UrlError> {
    let invalid = |why: &str| UrlError::Invalid {
        url: redact_userinfo(url),
        why: why.to_string(),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Err(invalid("it names no repository path")),
    };
    if authority.contains('@') {
        return Err(invalid(
            "it carries credentials; remove them from the URL and put them in the Secret named by spec.repository.auth.secretRef (keys username and password), where they stay secret",
        ));
    }
    if path.len() <= 1 || collapse_slashes(path) == "/" {
        return Err(invalid("it names no repository path"));
    }
    if path.contains(['?', '#', '\\']) {
        return Err(invalid(
            "the path must not hold '?', '#' or '\\' (give the plain clone URL)",
        ));
    }
    let (host, port) = split_host_port(authority).map_err(invalid)?;
    check_user_host(url, "git", host)?;
    Ok(RepoUrl::Https {
        host: host.to_string(),
        port,
        path: path.to_string(),
        original: url.to_string(),
    })
}

/// `url` with any `user:password@` of its authority replaced by `***@`, for messages.
pub fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn parse_scp_like(url: &str) -> Result<RepoUrl, UrlError> {
    let invalid = |why: &str| UrlError::Invalid {
        url: url.to_string(),
        why: why.to_string(),
    };
    let (user, rest) = match url.split_once('@') {
        Some((u, r)) => (u, r),
        None => ("", url),
    };
    let (host, path) = if let Some(stripped) = rest.strip_prefix('[') {
        let (h, after) = stripped
            .split_once(']')
            .ok_or_else(|| invalid("unclosed '[' in the host"))?;
        let p = after
            .strip_prefix(':')
            .ok_or_else(|| invalid("expected ':' after the host"))?;
        (h, p)
    } else {
        rest.split_once(':').ok_or_else(|| {
            invalid(
                "expected user@host:path (scp-like), ssh://user@host[:port]/path or file:///path",
            )
        })?
    };
    if host.contains('/') {
        return Err(invalid(
            "expected user@host:path (scp-like), ssh://user@host[:port]/path or file:///path",
        ));
    }
    if path.is_empty() {
        return Err(invalid("it names no repository path"));
    }
    if path.starts_with('-') {
        return Err(invalid("the path must not start with '-'"));
    }
    check_user_host(url, user, host)?;
    Ok(RepoUrl::Ssh {
        user: user.to_string(),
        host: host.to_string(),
        port: None,
        path: path.to_string(),
        original: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(u: &str) -> (String, String, Option<u16>, String) {
        match RepoUrl::parse(u).unwrap() {
            RepoUrl::Ssh {
                user,
                host,
                port,
                path,
                ..
            } => (user, host, port, path),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_seed_host_form_parses() {
        assert_eq!(
            ssh("git@github.com:acme/tooljet-apps.git"),
            (
                "git".into(),
                "github.com".into(),
                None,
                "acme/tooljet-apps.git".into()
            )
        );
        assert_eq!(
            ssh("git@gitlab.com:group/sub/repo.git").3,
            "group/sub/repo.git"
        );
        assert_eq!(ssh("git@bitbucket.org:ws/repo.git").1, "bitbucket.org");
        assert_eq!(
            ssh(
                "ssh://APKAEIBAERJR2EXAMPLE@git-codecommit.us-east-2.amazonaws.com/v1/repos/MyRepo"
            ),
            (
                "APKAEIBAERJR2EXAMPLE".into(),
                "git-codecommit.us-east-2.amazonaws.com".into(),
                None,
                "/v1/repos/MyRepo".into()
            )
        );
        assert_eq!(
            ssh("git@ssh.dev.azure.com:v3/org/project/repo").3,
            "v3/org/project/repo"
        );
        assert_eq!(
            ssh("ssh://git@gitea.internal:2222/org/repo.git"),
            (
                "git".into(),
                "gitea.internal".into(),
                Some(2222),
                "/org/repo.git".into()
            )
        );
        assert_eq!(ssh("ssh://git@[::1]:2222/r.git").1, "::1");
        assert_eq!(ssh("git@[::1]:r.git").1, "::1");
        assert!(matches!(
            RepoUrl::parse("file:///srv/repo.git").unwrap(),
            RepoUrl::File { .. }
        ));
    }

    #[test]
    fn refusals_name_the_accepted_forms() {
        for (u, reason) in [
            ("https://tok@github.com/acme/r.git", "InvalidURL"),
            ("https://github.com", "InvalidURL"),
            ("http://h/r.git", "UnsupportedURL"),
            ("git://h/r.git", "UnsupportedURL"),
            ("/srv/repo.git", "UnsupportedURL"),
            ("ext::sh -c evil", "InvalidURL"),
            ("github.com:acme/r.git", "InvalidURL"),
            ("git@-oProxyCommand=x:r.git", "InvalidURL"),
            ("ssh://git@host:99999/r.git", "InvalidURL"),
            ("ssh://git@host", "InvalidURL"),
            ("git@host:", "InvalidURL"),
            ("not a url", "InvalidURL"),
            ("", "InvalidURL"),
            ("file://relative/path", "InvalidURL"),
            ("foo://x/y", "InvalidURL"),
        ] {
            let err = RepoUrl::parse(u).unwrap_err();
            assert_eq!(err.reason(), reason, "{u}: {err}");
            assert!(err.to_string().contains("ssh://"), "{u}: {err}");
        }
        assert_eq!(
            RepoUrl::parse("transport::addr").unwrap_err().reason(),
            "UnsupportedURL"
        );
    }

    #[test]
    fn https_urls_parse_without_credentials() {
        let u = RepoUrl::parse("https://GitHub.com/acme/apps.git").unwrap();
        assert!(u.is_https());
        assert_eq!(u.https_host(), Some(("GitHub.com", 443)));
        assert_eq!(u.identity(), "https://github.com:443/acme/apps.git");
        assert_eq!(u.repo_path(), "acme/apps");
        assert_eq!(u.host(), None, "no SSH host: no key-type check");
        let p = RepoUrl::parse("https://127.0.0.1:8443//g/sub/r/").unwrap();
        assert_eq!(p.identity(), "https://127.0.0.1:8443/g/sub/r");
        assert_eq!(p.repo_path(), "g/sub/r");
        assert_eq!(
            RepoUrl::parse("https://[::1]:9/r.git").unwrap().identity(),
            "https://[::1]:9/r.git"
        );
        for bad in [
            "https://x-access-token:ghs_secret@github.com/acme/r.git",
            "https://user@github.com/acme/r.git",
        ] {
            let e = RepoUrl::parse(bad).unwrap_err();
            assert_eq!(e.reason(), "InvalidURL");
            assert!(!e.to_string().contains("ghs_secret"), "{e}");
            assert!(e.to_string().contains("spec.repository.auth"), "{e}");
        }
        for bad in [
            "https://h/r?x=1",
            "https://h/r#f",
            "https://-h/r",
            "https://h:0/r",
        ] {
            assert_eq!(
                RepoUrl::parse(bad).unwrap_err().reason(),
                "InvalidURL",
                "{bad}"
            );
        }
        assert_eq!(
            RepoUrl::parse("http://h/r.git").unwrap_err().reason(),
            "UnsupportedURL"
        );
        assert_eq!(redact_userinfo("https://a:b@h/x@y"), "https://***@h/x@y");
        assert_eq!(
            RepoUrl::parse("https://H:8443/a/b.git")
                .unwrap()
                .https_origin()
                .as_deref(),
            Some("https://H:8443")
        );
        // Refused forms never quote credentials either.
        for bad in [
            "http://bot:ghp_secret@h/r.git",
            "ftp://u:ghp_secret@h/r",
            "foo://u:ghp_secret@h/r",
        ] {
            let e = RepoUrl::parse(bad).unwrap_err();
            assert!(!e.to_string().contains("ghp_secret"), "{e}");
        }
    }

    #[test]
    fn identity_is_the_repository_as_the_server_resolves_it() {
        let id = |u: &str| RepoUrl::parse(u).unwrap().identity();
        // Host case, the default port and slashes do not make another repository.
        assert_eq!(
            id("ssh://git@github.com:22/acme/r.git"),
            id("ssh://git@GitHub.COM/acme/r.git")
        );
        assert_eq!(
            id("ssh://git@github.com/acme/r.git"),
            "ssh://git@github.com:22/acme/r.git"
        );
        assert_eq!(
            id("ssh://git@h//acme//r.git/"),
            id("ssh://git@h/acme/r.git")
        );
        assert_eq!(id("git@H:acme/r.git"), id("git@h:acme/r.git/"));
        // scp-like paths are relative to the home directory, ssh:// paths absolute.
        assert_ne!(id("git@h:x.git"), id("ssh://git@h/x.git"));
        assert_eq!(id("git@h:x.git"), "ssh://git@h:22/~/x.git");
        assert_eq!(id("git@h:x.git"), id("ssh://git@h/~/x.git"));
        assert_eq!(id("git@h:x.git"), id("git@h:~/x.git"));
        assert_eq!(id("git@h:/srv/x.git"), id("ssh://git@h/srv/x.git"));
        assert_eq!(id("git@h:~bob/x.git"), "ssh://git@h:22/~bob/x.git");
        assert_eq!(id("git@h:~bob/x.git"), id("ssh://git@h/~bob/x.git"));
        assert_ne!(id("git@h:~bob/x.git"), id("git@h:x.git"));
        // Another port, user or path is another repository.
        assert_ne!(id("ssh://git@h:2222/x.git"), id("ssh://git@h/x.git"));
        assert_ne!(id("ssh://git@h/x.git"), id("ssh://gitlab@h/x.git"));
        assert_ne!(id("ssh://git@h/x.git"), id("ssh://git@h/x"));
        assert_ne!(id("ssh://git@h/X.git"), id("ssh://git@h/x.git"));
        assert_eq!(
            id("ssh://git@[::1]:2222/r.git"),
            "ssh://git@[::1]:2222/r.git"
        );
        assert_eq!(id("git@[::1]:r.git"), "ssh://git@[::1]:22/~/r.git");
        assert_eq!(id("file:///srv//r.git/"), "file:///srv/r.git");
        // An absolute path that begins with `~` is no home directory.
        assert_eq!(id("ssh://git@h//~/x.git"), "ssh://git@h:22/./~/x.git");
        assert_ne!(id("ssh://git@h//~/x.git"), id("git@h:x.git"));
    }
}
