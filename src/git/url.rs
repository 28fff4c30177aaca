//! Repository URL forms the operator accepts: scp-like `user@host:path`, `ssh://` and
//! `file://`. Everything else is refused with a message naming the accepted forms.

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
    #[error("repository URL {url:?} cannot be parsed: {why}. Use an SSH URL like git@github.com:org/repo.git or ssh://git@host:2222/org/repo.git (file:///path also works for local repositories)")]
    Invalid { url: String, why: String },
    /// A real URL form the operator does not speak.
    #[error("repository URL {url:?} uses {scheme}, which the operator does not support: it authenticates with an SSH deploy key, so use the repository's SSH URL (scp-like git@host:org/repo.git, or ssh://git@host[:port]/org/repo.git; file:///path for local repositories)")]
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
                s @ ("http" | "https" | "git" | "ftp" | "ftps") => Err(UrlError::Unsupported {
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
            RepoUrl::Ssh { original, .. } | RepoUrl::File { original, .. } => original,
        }
    }

    /// The SSH host, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            RepoUrl::Ssh { host, .. } => Some(host),
            RepoUrl::File { .. } => None,
        }
    }

    /// A key for the per-repository worker: the same repository always maps to the same key.
    pub fn identity(&self) -> String {
        match self {
            RepoUrl::Ssh {
                user,
                host,
                port,
                path,
                ..
            } => format!(
                "ssh://{user}@{}:{}/{}",
                host.to_ascii_lowercase(),
                port.unwrap_or(22),
                path.trim_start_matches('/').trim_end_matches('/')
            ),
            RepoUrl::File { path, .. } => format!("file://{path}"),
        }
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
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        let (h, after) = stripped
            .split_once(']')
            .ok_or_else(|| invalid("unclosed '[' in the host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(invalid("unexpected text after the host")),
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
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
        ),
        None => None,
    };
    check_user_host(url, user, host)?;
    Ok(RepoUrl::Ssh {
        user: user.to_string(),
        host: host.to_string(),
        port,
        path: path.to_string(),
        original: url.to_string(),
    })
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
            ("https://github.com/acme/r.git", "UnsupportedURL"),
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
    fn identity_is_stable_across_spellings() {
        let a = RepoUrl::parse("git@GitHub.com:acme/r.git")
            .unwrap()
            .identity();
        let b = RepoUrl::parse("ssh://git@github.com/acme/r.git")
            .unwrap()
            .identity();
        assert_eq!(a, b);
    }
}
