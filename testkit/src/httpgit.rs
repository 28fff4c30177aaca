//! A smart-HTTP git server over TLS with basic auth: the real `git http-backend` (the one next
//! to the `git` on PATH, `git --exec-path`) run as a CGI behind a Rust TLS terminator
//! ([`crate::tls`]), on a free 127.0.0.1 port.
//!
//! CGI per RFC 3875 and git-http-backend(1) ("ENVIRONMENT": `GIT_PROJECT_ROOT`,
//! `GIT_HTTP_EXPORT_ALL`, `PATH_INFO`, `REMOTE_USER`, `REMOTE_ADDR`, `GIT_PROTOCOL`,
//! `HTTP_CONTENT_ENCODING`; "SERVICES": receive-pack is enabled by default only when
//! `REMOTE_USER` is set — verified with git 2.47: 403 without it — and this server sets
//! `http.receivepack=true` explicitly as well). Request
//! bodies are streamed to the CGI's stdin unchanged and answers streamed back; gzip-compressed
//! bodies (git compresses POST bodies over 1 KiB, remote-curl.c) are inflated by http-backend
//! itself from `HTTP_CONTENT_ENCODING` (its `inflate_request`), checked by the tests.
//!
//! Authentication follows what GitHub/GitLab/Gitea do over HTTPS: every request needs basic
//! auth (the repositories are private); a missing or wrong password is 401 with
//! `WWW-Authenticate: Basic realm="..."` so git's credential flow (helpers, askpass) runs; a
//! read-only credential gets 403 on receive-pack (the advertisement and the POST); a token not
//! scoped to the repository gets 404 "Repository not found.".

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use crate::gitserver::Access;
use crate::tls::{serve_tls, Served, TestCa};

/// Realm of the `WWW-Authenticate` challenge (GitHub answers `Basic realm="GitHub"`).
pub const REALM: &str = "tooljet-gitsync testkit";

/// What a token may do, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    /// Fetch only, fetch and push, or stall.
    pub access: Access,
    /// The basic-auth username this token must come with (`x-access-token` for GitHub App
    /// installation tokens); `None` = any username (PATs, GitLab/Gitea tokens).
    pub username: Option<String>,
    /// Repositories (names as given to `create_repo`, e.g. `acme/apps`) the token reaches;
    /// `None` = all.
    pub repos: Option<BTreeSet<String>>,
    /// After this instant the token is refused (401) everywhere.
    pub expires_at: Option<SystemTime>,
}

impl TokenGrant {
    /// A token for every repository, any username, no expiry.
    pub fn new(access: Access) -> TokenGrant {
        TokenGrant {
            access,
            username: None,
            repos: None,
            expires_at: None,
        }
    }

    fn live(&self) -> bool {
        self.expires_at.is_none_or(|t| SystemTime::now() < t)
    }

    fn reaches(&self, repo: &str) -> bool {
        self.repos.as_ref().is_none_or(|r| r.contains(repo))
    }
}

/// Result of checking a credential against a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Unknown user, wrong password, unknown/expired token, or none given: 401.
    Unauthenticated,
    /// A valid credential that does not reach this repository: 404.
    NoAccess,
    /// Let in with this access.
    Granted(Access),
}

#[derive(Default)]
struct CredState {
    users: HashMap<String, (String, Access)>,
    tokens: HashMap<String, TokenGrant>,
}

/// Users and tokens, shared by the git server and the API emulators (a token issued by the
/// GitHub App emulator is a git password too).
#[derive(Clone, Default)]
pub struct Credentials(Arc<Mutex<CredState>>);

impl Credentials {
    fn lock(&self) -> MutexGuard<'_, CredState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or replaces) a user with a password.
    pub fn add_user(&self, username: &str, password: &str, access: Access) {
        self.lock()
            .users
            .insert(username.to_string(), (password.to_string(), access));
    }

    /// Removes a user: its password is refused from now on.
    pub fn remove_user(&self, username: &str) {
        self.lock().users.remove(username);
    }

    /// Adds a token accepted as the password of any username, for every repository.
    pub fn add_token(&self, token: &str, access: Access) {
        self.add_grant(token, TokenGrant::new(access));
    }

    /// Adds a token with its limits.
    pub fn add_grant(&self, token: &str, grant: TokenGrant) {
        self.lock().tokens.insert(token.to_string(), grant);
    }

    /// Revokes a token.
    pub fn revoke_token(&self, token: &str) {
        self.lock().tokens.remove(token);
    }

    /// Makes a token expire now (it stays known, as an expired token does).
    pub fn expire_token(&self, token: &str) {
        if let Some(g) = self.lock().tokens.get_mut(token) {
            g.expires_at = Some(SystemTime::now() - Duration::from_secs(1));
        }
    }

    /// The grant of a token, if any (expired ones too).
    pub fn grant(&self, token: &str) -> Option<TokenGrant> {
        self.lock().tokens.get(token).cloned()
    }

    /// Checks basic-auth `username`/`password` for `repo`.
    pub fn check(&self, username: &str, password: &str, repo: &str) -> AuthOutcome {
        let st = self.lock();
        if let Some((pw, access)) = st.users.get(username) {
            if pw == password {
                return AuthOutcome::Granted(*access);
            }
        }
        match st.tokens.get(password) {
            Some(g) if g.live() && g.username.as_deref().is_none_or(|u| u == username) => {
                if g.reaches(repo) {
                    AuthOutcome::Granted(g.access)
                } else {
                    AuthOutcome::NoAccess
                }
            }
            _ => AuthOutcome::Unauthenticated,
        }
    }

    /// Checks an API token (`Authorization: Bearer|token`, `PRIVATE-TOKEN`) for `repo`; user
    /// passwords are not API tokens.
    pub fn check_token(&self, token: &str, repo: &str) -> AuthOutcome {
        match self.lock().tokens.get(token) {
            Some(g) if g.live() => {
                if g.reaches(repo) {
                    AuthOutcome::Granted(g.access)
                } else {
                    AuthOutcome::NoAccess
                }
            }
            _ => AuthOutcome::Unauthenticated,
        }
    }
}

/// One request as the server saw it (the password is never recorded).
#[derive(Clone, Debug)]
pub struct HttpRequestRecord {
    /// `GET` / `POST`.
    pub method: String,
    /// Path as requested, e.g. `/acme/apps.git/git-upload-pack`.
    pub path: String,
    /// Raw query string (`service=git-receive-pack`), empty if none.
    pub query: String,
    /// Basic-auth username, if a credential was sent.
    pub username: Option<String>,
    /// Status answered.
    pub status: u16,
    /// `Content-Encoding` of the request body (`gzip` for large RPCs).
    pub content_encoding: Option<String>,
    /// `Git-Protocol` header (`version=2`).
    pub git_protocol: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

impl HttpRequestRecord {
    /// An upload-pack RPC (one per fetch/clone round).
    pub fn is_fetch(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/git-upload-pack")
    }

    /// A receive-pack RPC (one per push).
    pub fn is_push(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/git-receive-pack")
    }
}

/// The repositories on disk, shared with the API emulators (whose branches are these).
#[derive(Clone)]
pub struct Repos {
    root: PathBuf,
    base_url: String,
}

impl Repos {
    /// Path of repository `name` (`acme/apps` -> `<root>/acme/apps.git`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.git"))
    }

    /// Whether repository `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        valid_name(name) && self.path(name).join("HEAD").is_file()
    }

    /// `https://127.0.0.1:<port>/<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}.git", self.base_url)
    }

    /// `https://127.0.0.1:<port>`: the "web" host of the emulated forges.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Runs git in repository `name` and returns stdout.
    pub fn git(&self, name: &str, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new("git")
            .args(["-c", "safe.directory=*", "-C"])
            .arg(self.path(name))
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The commit `refs/heads/<branch>` points at, if the branch exists.
    pub fn branch_sha(&self, name: &str, branch: &str) -> Option<String> {
        self.git(
            name,
            &[
                "rev-parse",
                "--verify",
                "-q",
                &format!("refs/heads/{branch}^{{commit}}"),
            ],
        )
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.starts_with('.'))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

struct Inner {
    repos: Repos,
    creds: Credentials,
    log: Mutex<Vec<HttpRequestRecord>>,
    backend: PathBuf,
    home: PathBuf,
}

/// A running HTTPS git server; stops (and its CGI children with it) when dropped.
pub struct HttpGitServer {
    served: Served,
    inner: Arc<Inner>,
    ca: Arc<TestCa>,
    _dir: tempfile::TempDir,
}

impl HttpGitServer {
    /// Starts a server with a fresh CA, no users and no repositories.
    pub fn start() -> Result<HttpGitServer> {
        Self::start_with(Arc::new(TestCa::new()?), Credentials::default())
    }

    /// Starts a server presenting `ca`'s certificate and checking `creds`.
    pub fn start_with(ca: Arc<TestCa>, creds: Credentials) -> Result<HttpGitServer> {
        let exec = std::process::Command::new("git")
            .arg("--exec-path")
            .output()?;
        let exec = PathBuf::from(String::from_utf8_lossy(&exec.stdout).trim());
        let backend = exec.join("git-http-backend");
        if !backend.is_file() {
            bail!("{} not found", backend.display());
        }
        let dir = tempfile::Builder::new().prefix("httpgit-").tempdir()?;
        let root = dir.path().join("repos");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&home)?;
        // The port is only known once bound: the router reads the base URL from `inner`,
        // which is filled right after.
        let cell: Arc<Mutex<Option<Arc<Inner>>>> = Arc::new(Mutex::new(None));
        let router = Router::new().fallback(handle).with_state(cell.clone());
        let served = serve_tls(router, ca.server_config())?;
        let inner = Arc::new(Inner {
            repos: Repos {
                root,
                base_url: served.base_url(),
            },
            creds,
            log: Mutex::new(Vec::new()),
            backend,
            home,
        });
        *cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner.clone());
        Ok(HttpGitServer {
            served,
            inner,
            ca,
            _dir: dir,
        })
    }

    /// Port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.served.addr().port()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.served.base_url()
    }

    /// The CA that signed the server's certificate.
    pub fn ca(&self) -> Arc<TestCa> {
        self.ca.clone()
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca.ca_pem().to_string()
    }

    /// A file holding the CA certificate (`GIT_SSL_CAINFO`, `http.sslCAInfo`, `caFile`).
    pub fn ca_file(&self) -> PathBuf {
        self.ca.ca_file()
    }

    /// The users and tokens this server accepts (shared, cheap to clone).
    pub fn credentials(&self) -> Credentials {
        self.inner.creds.clone()
    }

    /// The repositories (shared with the API emulators).
    pub fn repos(&self) -> Repos {
        self.inner.repos.clone()
    }

    /// Creates an empty bare repository `name` (may contain `/`, e.g. `acme/apps`; default
    /// branch `main`) and returns its URL `https://127.0.0.1:<port>/<name>.git`.
    pub fn create_repo(&self, name: &str) -> Result<String> {
        if !valid_name(name) {
            bail!("invalid repository name {name:?}");
        }
        let path = self.repo_path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let st = std::process::Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&path)
            .status()?;
        if !st.success() {
            bail!("git init failed");
        }
        Ok(self.url(name))
    }

    /// URL of repository `name`.
    pub fn url(&self, name: &str) -> String {
        self.inner.repos.url(name)
    }

    /// Path of repository `name` on disk.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.inner.repos.path(name)
    }

    /// Runs git against repository `name` and returns stdout.
    pub fn git(&self, name: &str, args: &[&str]) -> Result<String> {
        self.inner.repos.git(name, args)
    }

    /// Commits `files` (path, content) on top of `branch` of repository `name` as a foreign
    /// writer (directly on disk, not through HTTP) and returns the new commit sha.
    pub fn commit_files(
        &self,
        name: &str,
        branch: &str,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> Result<String> {
        crate::gitserver::commit_files_local(&self.repo_path(name), branch, files, message)
    }

    /// Creates branch `branch` of repository `name` at `from` (a branch or commit), as a
    /// push of a new branch would. [`HttpGitServer::commit_files`] on a branch that does not
    /// exist yet starts an unrelated history instead.
    pub fn create_branch(&self, name: &str, branch: &str, from: &str) -> Result<()> {
        self.git(name, &["branch", branch, from]).map(|_| ())
    }

    /// Adds (or replaces) a basic-auth user.
    pub fn add_user(&self, username: &str, password: &str, access: Access) {
        self.inner.creds.add_user(username, password, access)
    }

    /// Removes a user.
    pub fn remove_user(&self, username: &str) {
        self.inner.creds.remove_user(username)
    }

    /// Adds a token accepted as password with any username (a PAT).
    pub fn add_token(&self, token: &str, access: Access) {
        self.inner.creds.add_token(token, access)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<HttpRequestRecord> {
        self.inner
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.inner
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Number of upload-pack RPCs (fetch rounds) so far.
    pub fn fetch_count(&self) -> usize {
        self.requests().iter().filter(|r| r.is_fetch()).count()
    }

    /// Number of receive-pack RPCs (pushes) so far.
    pub fn push_count(&self) -> usize {
        self.requests().iter().filter(|r| r.is_push()).count()
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
}

fn basic_credentials(h: &HeaderMap) -> Option<(String, String)> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Splits `/<name>.git/<rest>` into (name, rest).
fn split_repo_path(path: &str) -> Option<(String, String)> {
    let p = path.strip_prefix('/')?;
    let i = p.find(".git/")?;
    let name = &p[..i];
    let rest = &p[i + 5..];
    valid_name(name).then(|| (name.to_string(), rest.to_string()))
}

async fn handle(State(cell): State<Arc<Mutex<Option<Arc<Inner>>>>>, req: Request) -> Response {
    let Some(inner) = cell.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "starting\n");
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let headers = req.headers().clone();
    let creds = basic_credentials(&headers);
    let mut record = HttpRequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        username: creds.as_ref().map(|c| c.0.clone()),
        status: 0,
        content_encoding: header_str(&headers, header::CONTENT_ENCODING),
        git_protocol: header_str(&headers, "git-protocol"),
        user_agent: header_str(&headers, header::USER_AGENT),
    };
    let resp = serve(&inner, req, &peer, &method, &path, &query, creds).await;
    record.status = resp.status().as_u16();
    inner
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record);
    resp
}

async fn serve(
    inner: &Inner,
    req: Request,
    peer: &str,
    method: &Method,
    path: &str,
    query: &str,
    creds: Option<(String, String)>,
) -> Response {
    let Some((name, rest)) = split_repo_path(path) else {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    };
    let challenge = || {
        let mut r = text(StatusCode::UNAUTHORIZED, "Authentication required.\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tooljet-gitsync testkit\""),
        );
        r
    };
    let Some((user, password)) = creds else {
        return challenge();
    };
    let access = match inner.creds.check(&user, &password, &name) {
        AuthOutcome::Unauthenticated => return challenge(),
        AuthOutcome::NoAccess => return text(StatusCode::NOT_FOUND, "Repository not found.\n"),
        AuthOutcome::Granted(a) => a,
    };
    if !inner.repos.exists(&name) {
        return text(StatusCode::NOT_FOUND, "Repository not found.\n");
    }
    let push = rest == "git-receive-pack"
        || (rest == "info/refs" && query.split('&').any(|kv| kv == "service=git-receive-pack"));
    match access {
        Access::ReadOnly if push => {
            return text(
                StatusCode::FORBIDDEN,
                "Write access to repository not granted.\n",
            )
        }
        Access::Stalls => {
            // Authenticated, then never answered, until the client gives up.
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            return text(StatusCode::GATEWAY_TIMEOUT, "stalled\n");
        }
        _ => {}
    }
    match cgi(inner, req, peer, method, &name, &rest, query, &user).await {
        Ok(r) => r,
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}\n")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn cgi(
    inner: &Inner,
    req: Request,
    peer: &str,
    method: &Method,
    name: &str,
    rest: &str,
    query: &str,
    user: &str,
) -> Result<Response> {
    let headers = req.headers().clone();
    let mut cmd = tokio::process::Command::new(&inner.backend);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &inner.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "safe.directory")
        .env("GIT_CONFIG_VALUE_1", "*")
        .env("GIT_PROJECT_ROOT", &inner.repos.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "tooljet-gitsync-testkit")
        .env("PATH_INFO", format!("/{name}.git/{rest}"))
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = header_str(&headers, header::CONTENT_TYPE) {
        cmd.env("CONTENT_TYPE", v);
    }
    if let Some(v) = header_str(&headers, header::CONTENT_LENGTH) {
        cmd.env("CONTENT_LENGTH", v);
    }
    if let Some(v) = header_str(&headers, header::CONTENT_ENCODING) {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = header_str(&headers, "git-protocol") {
        cmd.env("GIT_PROTOCOL", v);
    }
    // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    // Its own process group, so that `git upload-pack`/`receive-pack` under it go too.
    cmd.process_group(0);
    let child = cmd.spawn()?;
    let mut child = CgiChild(Some(child));
    let Some(c) = child.0.as_mut() else {
        bail!("CGI child vanished");
    };
    let stdin = c.stdin.take();
    let mut stdout = c.stdout.take().context("CGI stdout")?;
    let stderr = c.stderr.take();
    // The request body streams into stdin while the answer streams out of stdout.
    let mut body = req.into_body();
    tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    if stdin.write_all(&data).await.is_err() {
                        break;
                    }
                }
            }
            let _ = stdin.shutdown().await;
        }
    });
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    });
    // Read up to the end of the CGI headers, then stream the rest.
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let split = loop {
        if let Some(i) = find(&head, b"\r\n\r\n") {
            break Some((i, 4));
        }
        if let Some(i) = find(&head, b"\n\n") {
            break Some((i, 2));
        }
        if head.len() > 64 * 1024 {
            break None;
        }
        let n = stdout.read(&mut chunk).await?;
        if n == 0 {
            break None;
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let Some((i, sep)) = split else {
        let status = child.wait().await;
        let err = err_task.await.unwrap_or_default();
        bail!(
            "git http-backend ({status}) wrote no CGI header: {}",
            String::from_utf8_lossy(&err)
        );
    };
    let rest = head.split_off(i + sep);
    head.truncate(i);
    let builder = cgi_headers(&head);
    // The child is reaped when stdout ends; if the client goes away first (or the server
    // stops), dropping the stream kills its process group.
    let stream = futures_util::stream::unfold(
        (Some(rest), stdout, child, chunk),
        |(pending, mut stdout, mut child, mut chunk)| async move {
            if let Some(p) = pending.filter(|p| !p.is_empty()) {
                return Some((Ok(bytes::Bytes::from(p)), (None, stdout, child, chunk)));
            }
            match stdout.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    let _ = child.wait().await;
                    None
                }
                Ok(n) => {
                    let data = bytes::Bytes::copy_from_slice(&chunk[..n]);
                    Some((Ok::<_, std::io::Error>(data), (None, stdout, child, chunk)))
                }
            }
        },
    );
    Ok(builder.body(Body::from_stream(stream))?)
}

/// A CGI child: reaped by [`CgiChild::wait`]; when dropped before that, its whole process
/// group is killed (http-backend's `git upload-pack` included).
struct CgiChild(Option<tokio::process::Child>);

impl CgiChild {
    async fn wait(&mut self) -> String {
        match self.0.take() {
            Some(mut c) => c
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            None => "gone".into(),
        }
    }
}

impl Drop for CgiChild {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            if let Some(pid) = c.id() {
                // SAFETY: kill(2) on the process group this server created for the child.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
        }
    }
}

/// The status and headers of a CGI answer (RFC 3875 §6: a `Status:` header, the others
/// passed through; http-backend ends lines with CRLF).
fn cgi_headers(head: &[u8]) -> axum::http::response::Builder {
    let head = String::from_utf8_lossy(head);
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            let code = v.split_whitespace().next().unwrap_or("500");
            status = StatusCode::from_bytes(code.as_bytes())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else {
            builder = builder.header(k, v);
        }
    }
    builder.status(status)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Environment for a `git` subprocess that trusts `ca_file` and answers the credential
/// prompt with `username`/`password` through a credential helper reading the environment —
/// never a command-line argument or URL. Returns `(name, value)` pairs for
/// `Command::envs`; the password travels in `TESTKIT_GIT_PASSWORD`.
pub fn git_https_env(ca_file: &Path, username: &str, password: &str) -> Vec<(String, String)> {
    vec![
        ("GIT_SSL_CAINFO".into(), ca_file.display().to_string()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ("GIT_CONFIG_COUNT".into(), "2".into()),
        ("GIT_CONFIG_KEY_0".into(), "credential.helper".into()),
        (
            "GIT_CONFIG_VALUE_0".into(),
            "!f() { test \"$1\" = get || exit 0; echo \"username=$TESTKIT_GIT_USERNAME\"; echo \"password=$TESTKIT_GIT_PASSWORD\"; }; f"
                .into(),
        ),
        ("GIT_CONFIG_KEY_1".into(), "credential.useHttpPath".into()),
        ("GIT_CONFIG_VALUE_1".into(), "true".into()),
        ("TESTKIT_GIT_USERNAME".into(), username.into()),
        ("TESTKIT_GIT_PASSWORD".into(), password.into()),
    ]
}
