//! Clients of git hosts' REST APIs: GitHub App installation tokens (HTTPS git as an App) and
//! pull/merge requests on GitHub, GitLab and Gitea/Forgejo (pull-request mode).
//!
//! Every call has a deadline and a body limit; no message carries a token; a self-hosted CA
//! is trusted in addition to the system roots; plain http only to loopback hosts.

mod error;
mod gitea;
mod github;
pub mod github_app;
mod gitlab;
mod http;

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use url::Url;
use zeroize::Zeroizing;

use http::{Reply, Transport};

use error::status_error;
pub use error::{ForgeError, ForgeErrorKind};
pub use github_app::{
    AppCredentials, AppTokenError, AppTokenErrorKind, AppTokens, InstallationToken,
};

/// Listings are walked at most this many pages, so a host answering "next" forever cannot keep
/// a reconcile busy.
pub const MAX_PAGES: u32 = 50;

/// Which host's API a repository lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// github.com or GitHub Enterprise Server.
    GitHub,
    /// gitlab.com or a self-managed GitLab.
    GitLab,
    /// Gitea or Forgejo (same API).
    Gitea,
}

impl Provider {
    /// What the host calls a pull request.
    fn noun(self) -> &'static str {
        match self {
            Provider::GitLab => "merge request",
            Provider::GitHub | Provider::Gitea => "pull request",
        }
    }

    /// Largest page the host serves (GitHub and GitLab 100; Gitea's default
    /// `MAX_RESPONSE_ITEMS` 50).
    fn max_page_size(self) -> u32 {
        match self {
            Provider::GitHub | Provider::GitLab => 100,
            Provider::Gitea => 50,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::GitHub => "GitHub",
            Provider::GitLab => "GitLab",
            Provider::Gitea => "Gitea",
        })
    }
}

/// Where a pull request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrState {
    /// Open (GitLab `opened`, and `locked` while a merge is under way).
    Open,
    /// Merged into the base.
    Merged,
    /// Closed without merging.
    Closed,
}

/// A pull request (GitLab: merge request), as much as the operator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub/Gitea `number`, GitLab `iid`.
    pub number: u64,
    /// The web page (what status shows a user), not the API URL.
    pub url: String,
    /// Open, merged or closed.
    pub state: PrState,
    /// Source branch.
    pub head_branch: String,
    /// Target branch.
    pub base_branch: String,
    /// The commit the merge made on the base (only once merged).
    pub merge_commit: Option<String>,
}

/// The API base a repository's host serves when the user gave none: github.com ->
/// `https://api.github.com`; any other GitHub host -> `https://host[:port]/api/v3`; GitLab ->
/// `https://host[:port]/api/v4`; Gitea/Forgejo -> `https://host[:port]/api/v1`. `port` is
/// the HTTPS port (443 is left out).
pub fn default_api_base(provider: Provider, host: &str, port: Option<u16>) -> String {
    let host = host.trim().trim_end_matches('.');
    let port = port.filter(|p| *p != 443);
    if provider == Provider::GitHub
        && port.is_none()
        && (host.eq_ignore_ascii_case("github.com") || host.eq_ignore_ascii_case("www.github.com"))
    {
        return "https://api.github.com".into();
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let authority = match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    let prefix = match provider {
        Provider::GitHub => "api/v3",
        Provider::GitLab => "api/v4",
        Provider::Gitea => "api/v1",
    };
    format!("https://{authority}/{prefix}")
}

/// A pull request as a listing shows it, with whether its head lives in the same repository
/// (a fork's branch of the same name is not ours).
pub(crate) struct Listed {
    pub pr: PullRequest,
    pub same_repo: bool,
}

/// A client of one repository's pull requests on one host; build it once and keep it (it
/// holds one HTTP client with its connection pool).
pub struct ForgeClient {
    provider: Provider,
    base: Url,
    host: String,
    repo: String,
    token: Zeroizing<String>,
    http: reqwest::Client,
    timeout: Duration,
    page_size: u32,
}

impl fmt::Debug for ForgeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgeClient")
            .field("provider", &self.provider)
            .field("base", &self.base.as_str())
            .field("repo", &self.repo)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

impl ForgeClient {
    /// A client for `repo_path` (`owner/name`; GitLab `group/sub/name`) at `api_base`
    /// (see [`default_api_base`]), authenticating with `token` (surrounding whitespace, as a
    /// Secret written with `echo` has, is dropped). `ca_pem` is trusted besides the system
    /// roots; `timeout` bounds each request.
    pub fn new(
        provider: Provider,
        api_base: &str,
        repo_path: &str,
        token: Zeroizing<String>,
        ca_pem: Option<&str>,
        timeout: Duration,
    ) -> Result<ForgeClient, ForgeError> {
        let config = |detail: String| ForgeError::Config { provider, detail };
        let base = http::parse_api_base(api_base).map_err(config)?;
        let repo = normalise_repo_path(provider, repo_path).map_err(config)?;
        let token = Zeroizing::new(token.trim().to_string());
        if token.is_empty() {
            return Err(config("the token is empty".into()));
        }
        if http::sensitive(&token).is_none() || token.chars().any(char::is_whitespace) {
            return Err(config(
                "the token contains characters not allowed in an HTTP header (spaces, line breaks or non-ASCII)".into(),
            ));
        }
        let http = http::build_client(ca_pem, timeout).map_err(config)?;
        Ok(ForgeClient {
            provider,
            host: http::host_label(&base),
            base,
            repo,
            token,
            http,
            timeout,
            page_size: provider.max_page_size(),
        })
    }

    /// Listings ask for `n` items a page (clamped to 1 ..= the host's maximum, which is the
    /// default); for hosts configured with a lower limit, and for tests.
    pub fn with_page_size(mut self, n: u32) -> ForgeClient {
        self.page_size = n.clamp(1, self.provider.max_page_size());
        self
    }

    /// Which host this client talks to.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The open PR from `head` into `base` (same repository), if any; paginated listings
    /// are walked to the end, at most [`MAX_PAGES`] pages.
    pub async fn find_open(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let action = format!("listing the open {}s", self.provider.noun());
        for page in 1..=MAX_PAGES {
            let (segments, query) = match self.provider {
                Provider::GitHub => github::list(&self.repo, head, base, page, self.page_size),
                Provider::GitLab => gitlab::list(&self.repo, head, base, page, self.page_size),
                Provider::Gitea => gitea::list(&self.repo, page, self.page_size),
            };
            let reply = self
                .call(Method::GET, &segments, &query, None, &action)
                .await?;
            let reply = self.check(reply, &action)?;
            let items = match self.provider {
                Provider::GitHub => github::parse_list(&reply.body),
                Provider::GitLab => gitlab::parse_list(&reply.body),
                Provider::Gitea => gitea::parse_list(&reply.body),
            }
            .map_err(|detail| self.unexpected(&action, Some(reply.status), detail))?;
            let count = items.len();
            if let Some(found) = items.into_iter().find(|l| {
                l.same_repo
                    && l.pr.state == PrState::Open
                    && l.pr.head_branch == head
                    && l.pr.base_branch == base
            }) {
                return Ok(Some(found.pr));
            }
            if !has_next_page(&reply.headers, page, count, self.page_size) {
                return Ok(None);
            }
        }
        Err(self.unexpected(
            &action,
            None,
            format!(
                "more than {MAX_PAGES} pages of open {}s",
                self.provider.noun()
            ),
        ))
    }

    /// Opens a PR from `head` into `base`; when the host answers that one already exists for
    /// this head (GitHub 422 "A pull request already exists", GitLab 409, Gitea 409), returns
    /// that existing one instead, never a second PR.
    pub async fn open(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, ForgeError> {
        let action = format!("opening a {} from {head} into {base}", self.provider.noun());
        let (segments, json) = match self.provider {
            Provider::GitHub => github::open(&self.repo, head, base, title, body),
            Provider::GitLab => gitlab::open(&self.repo, head, base, title, body),
            Provider::Gitea => gitea::open(&self.repo, head, base, title, body),
        };
        let reply = self
            .call(Method::POST, &segments, &[], Some(&json), &action)
            .await?;
        if (reply.status == 409 || reply.status == 422) && {
            let m = self.message(&reply).to_ascii_lowercase();
            m.contains("already exist")
        } {
            tracing::info!(provider = %self.provider, host = %self.host, repo = %self.repo, head, base, "a pull request already exists; using it");
            if let Some(pr) = self.find_open(head, base).await? {
                return Ok(pr);
            }
            if self.provider == Provider::GitLab {
                if let Some(iid) = gitlab::existing_iid(&self.message(&reply)) {
                    return self.get(iid).await;
                }
            }
            return Err(ForgeError::Invalid {
                provider: self.provider,
                host: self.host.clone(),
                action,
                status: reply.status,
                message: format!(
                    "{} (but no open one from {head} into {base} is listed)",
                    self.message(&reply)
                ),
            });
        }
        let reply = self.check(reply, &action)?;
        let pr = self.parse_one(&reply, &action)?;
        tracing::info!(provider = %self.provider, host = %self.host, repo = %self.repo, number = pr.number, url = %pr.url, "opened a pull request");
        Ok(pr)
    }

    /// The PR `number` (GitLab: iid), whatever its state.
    pub async fn get(&self, number: u64) -> Result<PullRequest, ForgeError> {
        let action = format!("reading {} {number}", self.provider.noun());
        let segments = match self.provider {
            Provider::GitHub => github::one(&self.repo, number),
            Provider::GitLab => gitlab::one(&self.repo, number),
            Provider::Gitea => gitea::one(&self.repo, number),
        };
        let reply = self
            .call(Method::GET, &segments, &[], None, &action)
            .await?;
        let reply = self.check(reply, &action)?;
        self.parse_one(&reply, &action)
    }

    /// Sets the title and body (GitLab: description) of PR `number`.
    pub async fn update(
        &self,
        number: u64,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, ForgeError> {
        let action = format!("updating {} {number}", self.provider.noun());
        let (method, segments, json) = match self.provider {
            Provider::GitHub => (
                Method::PATCH,
                github::one(&self.repo, number),
                github::update(title, body),
            ),
            Provider::GitLab => (
                Method::PUT,
                gitlab::one(&self.repo, number),
                gitlab::update(title, body),
            ),
            Provider::Gitea => (
                Method::PATCH,
                gitea::one(&self.repo, number),
                gitea::update(title, body),
            ),
        };
        let reply = self
            .call(method, &segments, &[], Some(&json), &action)
            .await?;
        let reply = self.check(reply, &action)?;
        self.parse_one(&reply, &action)
    }

    fn parse_one(&self, reply: &Reply, action: &str) -> Result<PullRequest, ForgeError> {
        match self.provider {
            Provider::GitHub => github::parse_one(&reply.body),
            Provider::GitLab => gitlab::parse_one(&reply.body),
            Provider::Gitea => gitea::parse_one(&reply.body),
        }
        .map_err(|detail| self.unexpected(action, Some(reply.status), detail))
    }

    /// One request with the host's auth header; any status comes back as a [`Reply`].
    async fn call(
        &self,
        method: Method,
        segments: &[String],
        query: &[(&str, String)],
        json: Option<&Value>,
        action: &str,
    ) -> Result<Reply, ForgeError> {
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let url = http::join(&self.base, &segs);
        let (name, value) = match self.provider {
            Provider::GitHub => ("authorization", format!("Bearer {}", self.token.as_str())),
            Provider::GitLab => ("private-token", self.token.to_string()),
            Provider::Gitea => ("authorization", format!("token {}", self.token.as_str())),
        };
        let value = Zeroizing::new(value);
        let auth = http::sensitive(&value).ok_or_else(|| ForgeError::Config {
            provider: self.provider,
            detail: "the token is not a valid header value".into(),
        })?;
        let accept = match self.provider {
            Provider::GitHub => "application/vnd.github+json",
            Provider::GitLab | Provider::Gitea => "application/json",
        };
        let mut req = self
            .http
            .request(method.clone(), url)
            .header(name, auth)
            .header(reqwest::header::ACCEPT, accept);
        if self.provider == Provider::GitHub {
            req = req.header("X-GitHub-Api-Version", "2022-11-28");
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(j) = json {
            req = req.json(j);
        }
        tracing::debug!(provider = %self.provider, host = %self.host, %method, path = %segments.join("/"), "forge API request");
        match http::send(req, self.timeout).await {
            Ok(r) => Ok(r),
            Err(Transport::Timeout) => Err(ForgeError::Timeout {
                provider: self.provider,
                host: self.host.clone(),
                action: action.to_string(),
                after: self.timeout,
            }),
            Err(Transport::Failed(detail)) => Err(ForgeError::Unreachable {
                provider: self.provider,
                host: self.host.clone(),
                action: action.to_string(),
                detail: http::quote(&detail, &[self.token.as_str()]),
            }),
            Err(Transport::TooLarge) => Err(self.unexpected(
                action,
                None,
                format!("the answer is larger than {} bytes", http::MAX_BODY),
            )),
        }
    }

    fn message(&self, reply: &Reply) -> String {
        http::host_message(&reply.body, &[self.token.as_str()])
    }

    /// Passes a 2xx through; maps anything else to its error.
    fn check(&self, reply: Reply, action: &str) -> Result<Reply, ForgeError> {
        if (200..300).contains(&reply.status) {
            return Ok(reply);
        }
        Err(status_error(
            self.provider,
            &self.host,
            &self.repo,
            action,
            reply.status,
            self.message(&reply),
        ))
    }

    fn unexpected(&self, action: &str, status: Option<u16>, detail: String) -> ForgeError {
        ForgeError::Unexpected {
            provider: self.provider,
            host: self.host.clone(),
            action: action.to_string(),
            status,
            detail: http::quote(&detail, &[self.token.as_str()]),
        }
    }
}

/// Whether a listing has a page after `page`: the `Link` header's `rel="next"` (GitHub,
/// GitLab, Gitea), else GitLab's `X-Next-Page`, else Gitea's `X-Total-Count`, else a full page.
fn has_next_page(
    headers: &reqwest::header::HeaderMap,
    page: u32,
    count: usize,
    per_page: u32,
) -> bool {
    if headers.contains_key(reqwest::header::LINK) {
        return http::link_has_next(headers);
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
    };
    if let Some(next) = header("x-next-page") {
        return !next.is_empty();
    }
    if let Some(total) = header("x-total-count").and_then(|t| t.parse::<u64>().ok()) {
        return u64::from(page) * u64::from(per_page) < total;
    }
    count > 0 && count >= per_page as usize
}

/// `owner/name` (GitLab: any depth), without surrounding slashes or `.git`.
fn normalise_repo_path(provider: Provider, path: &str) -> Result<String, String> {
    let p = path.trim().trim_matches('/');
    let p = p.strip_suffix(".git").unwrap_or(p);
    let parts: Vec<&str> = p.split('/').collect();
    let ok = parts
        .iter()
        .all(|s| !s.is_empty() && *s != "." && *s != "..")
        && match provider {
            Provider::GitLab => parts.len() >= 2,
            Provider::GitHub | Provider::Gitea => parts.len() == 2,
        };
    if ok {
        Ok(p.to_string())
    } else {
        Err(format!(
            "the repository path {path:?} is not of the form {}",
            match provider {
                Provider::GitLab => "group/name (or group/subgroup/name)",
                Provider::GitHub | Provider::Gitea => "owner/name",
            }
        ))
    }
}

/// `owner`, `name` of an `owner/name` path (checked by [`normalise_repo_path`]).
pub(crate) fn owner_name(repo: &str) -> (&str, &str) {
    repo.split_once('/').unwrap_or((repo, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}

    /// The clients and their futures can be kept in shared state and spawned on.
    #[test]
    fn clients_and_futures_are_send() {
        let c = ForgeClient::new(
            Provider::GitLab,
            "https://gl.example.com/api/v4",
            "g/r",
            Zeroizing::new("t".into()),
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        send_sync(&c);
        send(&c.find_open("a", "b"));
        send(&c.open("a", "b", "t", "b"));
        send(&c.get(1));
        send(&c.update(1, "t", "b"));
        let tokens = AppTokens::new(Duration::from_secs(1));
        send_sync(&tokens);
        let creds = AppCredentials {
            api_base: "https://api.github.com".into(),
            app_id: "1".into(),
            installation_id: "2".into(),
            private_key_pem: Zeroizing::new(String::new()),
            ca_pem: None,
        };
        send(&tokens.token(&creds, None));
    }

    #[test]
    fn default_api_bases() {
        assert_eq!(
            default_api_base(Provider::GitHub, "github.com", None),
            "https://api.github.com"
        );
        assert_eq!(
            default_api_base(Provider::GitHub, "GitHub.com", Some(443)),
            "https://api.github.com"
        );
        assert_eq!(
            default_api_base(Provider::GitHub, "ghe.example.com", None),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            default_api_base(Provider::GitHub, "ghe.example.com", Some(8443)),
            "https://ghe.example.com:8443/api/v3"
        );
        assert_eq!(
            default_api_base(Provider::GitLab, "gitlab.com", None),
            "https://gitlab.com/api/v4"
        );
        assert_eq!(
            default_api_base(Provider::GitLab, "git.corp", Some(8443)),
            "https://git.corp:8443/api/v4"
        );
        assert_eq!(
            default_api_base(Provider::Gitea, "codeberg.org", None),
            "https://codeberg.org/api/v1"
        );
        assert_eq!(
            default_api_base(Provider::Gitea, "::1", Some(3000)),
            "https://[::1]:3000/api/v1"
        );
    }

    #[test]
    fn repo_paths() {
        assert_eq!(
            normalise_repo_path(Provider::GitHub, "/acme/apps.git").unwrap(),
            "acme/apps"
        );
        assert!(normalise_repo_path(Provider::GitHub, "acme").is_err());
        assert!(normalise_repo_path(Provider::GitHub, "a/b/c").is_err());
        assert!(normalise_repo_path(Provider::Gitea, "a//b").is_err());
        assert_eq!(
            normalise_repo_path(Provider::GitLab, "g/sub/name").unwrap(),
            "g/sub/name"
        );
        assert!(normalise_repo_path(Provider::GitLab, "g/../name").is_err());
    }

    #[test]
    fn statuses_map_to_kinds() {
        let kind =
            |s: u16, m: &str| status_error(Provider::GitHub, "h", "o/r", "a", s, m.into()).kind();
        assert_eq!(kind(401, "Bad credentials"), ForgeErrorKind::Unauthorized);
        assert_eq!(
            kind(403, "Resource not accessible by integration"),
            ForgeErrorKind::Forbidden
        );
        assert_eq!(
            kind(403, "API rate limit exceeded"),
            ForgeErrorKind::Unexpected
        );
        assert_eq!(kind(404, "Not Found"), ForgeErrorKind::NotFound);
        assert_eq!(kind(422, "Validation Failed"), ForgeErrorKind::Invalid);
        assert_eq!(kind(400, ""), ForgeErrorKind::Invalid);
        assert_eq!(kind(409, ""), ForgeErrorKind::Invalid);
        assert_eq!(kind(502, ""), ForgeErrorKind::Unexpected);
        assert_eq!(kind(429, ""), ForgeErrorKind::Unexpected);
    }

    #[test]
    fn messages_say_what_to_do_and_quote_the_host() {
        let e = status_error(
            Provider::GitLab,
            "gl.example.com",
            "g/r",
            "opening a merge request",
            403,
            "403 Forbidden".into(),
        );
        let t = e.to_string();
        assert!(
            t.contains("api scope") && t.contains("403 Forbidden") && t.contains("gl.example.com"),
            "{t}"
        );
        let e = status_error(
            Provider::Gitea,
            "h",
            "o/r",
            "reading pull request 3",
            404,
            String::new(),
        );
        assert!(e.to_string().contains("(404)"), "{e}");
    }

    #[test]
    fn next_page_signals() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        assert!(has_next_page(&h, 1, 30, 30));
        assert!(!has_next_page(&h, 1, 29, 30));
        assert!(!has_next_page(&h, 1, 0, 30));
        h.insert("x-total-count", HeaderValue::from_static("61"));
        assert!(has_next_page(&h, 2, 30, 30));
        assert!(!has_next_page(&h, 3, 1, 30));
        let mut h = HeaderMap::new();
        h.insert("x-next-page", HeaderValue::from_static(""));
        assert!(!has_next_page(&h, 1, 20, 20));
        h.insert("x-next-page", HeaderValue::from_static("2"));
        assert!(has_next_page(&h, 1, 20, 20));
        h.insert(
            "link",
            HeaderValue::from_static(r#"<https://x?page=1>; rel="first""#),
        );
        assert!(!has_next_page(&h, 1, 20, 20), "Link wins over X-Next-Page");
    }

    #[test]
    fn client_settings_are_checked() {
        let new = |base: &str, repo: &str, token: &str| {
            ForgeClient::new(
                Provider::GitHub,
                base,
                repo,
                Zeroizing::new(token.into()),
                None,
                Duration::from_secs(5),
            )
        };
        assert!(new("https://api.github.com", "acme/apps", "ghp_x\n").is_ok());
        for (b, r, t) in [
            ("http://api.example.com", "acme/apps", "t"),
            ("https://api.github.com", "acme", "t"),
            ("https://api.github.com", "acme/apps", "  "),
            ("https://api.github.com", "acme/apps", "a b"),
        ] {
            let e = new(b, r, t).unwrap_err();
            assert_eq!(e.kind(), ForgeErrorKind::Config, "{e}");
        }
        let e = ForgeClient::new(
            Provider::Gitea,
            "https://h/api/v1",
            "o/r",
            Zeroizing::new("t".into()),
            Some("not a certificate"),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ForgeErrorKind::Config, "{e}");
    }
}
