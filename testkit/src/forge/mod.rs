//! Emulators of the forge APIs the operator's pull-request mode talks to — GitHub (App
//! installation tokens and pulls), GitLab (merge requests) and Gitea (pulls) — written from
//! their public REST docs (each handler names its page), served over TLS with the
//! [`HttpGitServer`]'s CA, and backed by that server's repositories: branches are real, and a
//! merge really moves the base branch (git merge-tree + commit-tree + update-ref in the bare
//! repository). Tokens are checked against the git server's [`Credentials`], so one token is
//! both the git password and the API token, as on the real forges.

// Handlers bail out with the forge's error response (`Result<_, Response>`), axum-style.
#![allow(clippy::result_large_err)]

pub mod gitea;
pub mod github;
pub mod gitlab;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::httpgit::{Credentials, HttpGitServer, Repos};

/// One API request as an emulator saw it (tokens are never recorded, only the scheme).
#[derive(Clone, Debug)]
pub struct ApiRequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/repos/acme/apps/pulls`.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// How the caller authenticated: `Bearer`, `token`, `Basic`, `PRIVATE-TOKEN`, or `None`.
    pub auth_scheme: Option<String>,
    /// Status answered.
    pub status: u16,
}

/// Where a pull/merge request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrState {
    /// Open.
    Open,
    /// Closed without merging.
    Closed,
    /// Merged (GitHub/Gitea show it as `closed` with `merged: true`).
    Merged,
}

/// A pull/merge request, whichever forge it lives on.
#[derive(Clone, Debug)]
pub struct PullRequest {
    /// Global id.
    pub id: u64,
    /// Number within the repository (GitHub/Gitea `number`, GitLab `iid`).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body (GitLab: `description`).
    pub body: Option<String>,
    /// State.
    pub state: PrState,
    /// Head (source) branch.
    pub head: String,
    /// Base (target) branch.
    pub base: String,
    /// Login of the author.
    pub author: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 last update.
    pub updated_at: String,
    /// RFC 3339 close time (also set when merged).
    pub closed_at: Option<String>,
    /// RFC 3339 merge time.
    pub merged_at: Option<String>,
    /// The merge commit on the base branch.
    pub merge_commit_sha: Option<String>,
}

impl PullRequest {
    /// Not closed and not merged.
    pub fn is_open(&self) -> bool {
        self.state == PrState::Open
    }
}

/// How to merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMethod {
    /// Always a merge commit with two parents.
    Merge,
    /// One commit with the merged tree on top of the base.
    Squash,
    /// Fast-forward the base to the head (refused unless the base is an ancestor).
    FastForward,
}

/// Why a merge did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeError {
    /// No such pull request.
    NotFound,
    /// Closed or already merged.
    NotOpen,
    /// The head moved: the caller's `sha` is not the head's.
    ShaMismatch(String),
    /// The branches conflict (or cannot be fast-forwarded).
    Conflict,
    /// A branch is gone.
    BranchMissing,
    /// git failed.
    Git(String),
}

/// Pull requests of every repository of one emulator.
#[derive(Default)]
pub(crate) struct PrStore {
    next_id: u64,
    by_repo: BTreeMap<String, Vec<PullRequest>>,
}

impl PrStore {
    pub(crate) fn list(&self, repo: &str) -> Vec<PullRequest> {
        self.by_repo.get(repo).cloned().unwrap_or_default()
    }

    pub(crate) fn get(&self, repo: &str, n: u64) -> Option<PullRequest> {
        self.by_repo
            .get(repo)
            .and_then(|v| v.iter().find(|p| p.number == n).cloned())
    }

    pub(crate) fn get_mut(&mut self, repo: &str, n: u64) -> Option<&mut PullRequest> {
        self.by_repo
            .get_mut(repo)
            .and_then(|v| v.iter_mut().find(|p| p.number == n))
    }

    pub(crate) fn create(
        &mut self,
        repo: &str,
        head: &str,
        base: &str,
        title: &str,
        body: Option<String>,
        author: &str,
    ) -> PullRequest {
        self.next_id += 1;
        let list = self.by_repo.entry(repo.to_string()).or_default();
        let now = now_rfc3339();
        let pr = PullRequest {
            id: 1_000_000 + self.next_id,
            number: list.len() as u64 + 1,
            title: title.to_string(),
            body,
            state: PrState::Open,
            head: head.to_string(),
            base: base.to_string(),
            author: author.to_string(),
            created_at: now.clone(),
            updated_at: now,
            closed_at: None,
            merged_at: None,
            merge_commit_sha: None,
        };
        list.push(pr.clone());
        pr
    }

    /// Merges PR `n` of `repo` for real and marks it merged.
    pub(crate) fn merge(
        &mut self,
        repos: &Repos,
        repo: &str,
        n: u64,
        method: MergeMethod,
        message: Option<String>,
        expected_head: Option<&str>,
    ) -> Result<PullRequest, MergeError> {
        let pr = self.get(repo, n).ok_or(MergeError::NotFound)?;
        if !pr.is_open() {
            return Err(MergeError::NotOpen);
        }
        let head_sha = repos
            .branch_sha(repo, &pr.head)
            .ok_or(MergeError::BranchMissing)?;
        if let Some(sha) = expected_head {
            if sha != head_sha {
                return Err(MergeError::ShaMismatch(head_sha));
            }
        }
        let message = message.unwrap_or_else(|| {
            format!(
                "Merge pull request #{} from {}\n\n{}",
                pr.number, pr.head, pr.title
            )
        });
        let sha = merge_branches(repos, repo, &pr.base, &pr.head, &message, method)?;
        let now = now_rfc3339();
        let p = self.get_mut(repo, n).ok_or(MergeError::NotFound)?;
        p.state = PrState::Merged;
        p.merged_at = Some(now.clone());
        p.closed_at = Some(now.clone());
        p.updated_at = now;
        p.merge_commit_sha = Some(sha);
        Ok(p.clone())
    }
}

/// Merges `head` into `base` in the bare repository `repo` (merge-tree, commit-tree,
/// update-ref guarded by the old value) and returns the new tip of `base`.
pub(crate) fn merge_branches(
    repos: &Repos,
    repo: &str,
    base: &str,
    head: &str,
    message: &str,
    method: MergeMethod,
) -> Result<String, MergeError> {
    let base_sha = repos
        .branch_sha(repo, base)
        .ok_or(MergeError::BranchMissing)?;
    let head_sha = repos
        .branch_sha(repo, head)
        .ok_or(MergeError::BranchMissing)?;
    let git = |args: &[&str]| -> Result<String, MergeError> {
        let mut full = vec![
            "-c",
            "user.name=Forge Emulator",
            "-c",
            "user.email=noreply@forge.example",
        ];
        full.extend_from_slice(args);
        repos
            .git(repo, &full)
            .map(|s| s.trim().to_string())
            .map_err(|e| MergeError::Git(format!("{e:#}")))
    };
    let ancestor = repos
        .git(repo, &["merge-base", "--is-ancestor", &base_sha, &head_sha])
        .is_ok();
    let new = match method {
        MergeMethod::FastForward => {
            if !ancestor {
                return Err(MergeError::Conflict);
            }
            head_sha.clone()
        }
        MergeMethod::Merge | MergeMethod::Squash => {
            let tree = match repos.git(repo, &["merge-tree", "--write-tree", &base_sha, &head_sha])
            {
                Ok(out) => out.lines().next().unwrap_or_default().trim().to_string(),
                Err(_) => return Err(MergeError::Conflict),
            };
            if method == MergeMethod::Merge {
                git(&[
                    "commit-tree",
                    &tree,
                    "-p",
                    &base_sha,
                    "-p",
                    &head_sha,
                    "-m",
                    message,
                ])?
            } else {
                git(&["commit-tree", &tree, "-p", &base_sha, "-m", message])?
            }
        }
    };
    git(&["update-ref", &format!("refs/heads/{base}"), &new, &base_sha])?;
    Ok(new)
}

/// Number of commits on `head` that are not on `base`.
pub(crate) fn commits_ahead(repos: &Repos, repo: &str, base: &str, head: &str) -> Result<usize> {
    let out = repos.git(
        repo,
        &[
            "rev-list",
            "--count",
            &format!("refs/heads/{base}..refs/heads/{head}"),
        ],
    )?;
    Ok(out.trim().parse()?)
}

/// Now, RFC 3339 in UTC with seconds (`2026-12-02T05:21:27Z`), as the forges print times.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// One page of `items` plus the pagination facts.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub page: usize,
    pub per_page: usize,
    pub total: usize,
    pub last: usize,
}

pub(crate) fn paginate<T: Clone>(items: &[T], page: usize, per_page: usize) -> Page<T> {
    let per_page = per_page.max(1);
    let page = page.max(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let items = items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    Page {
        items,
        page,
        per_page,
        total,
        last,
    }
}

/// RFC 8288 `Link` header for page `pg`: `url` is the full request URL without the
/// paging parameters (`params` are the other query parameters, kept in order); `order` the
/// relations in the forge's order; `always_ends` = `first`/`last` even on the first/last page
/// (GitLab).
pub(crate) fn link_header<T>(
    url: &str,
    params: &[(String, String)],
    pg: &Page<T>,
    per_page_name: &str,
    order: &[&str],
    always_ends: bool,
) -> Option<String> {
    let (page, last, per_page) = (pg.page, pg.last, pg.per_page);
    let mk = |p: usize| {
        let mut q: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "page" && k != per_page_name)
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        q.push(format!("page={p}"));
        q.push(format!("{per_page_name}={per_page}"));
        format!("<{url}?{}>", q.join("&"))
    };
    let mut parts = Vec::new();
    for rel in order {
        let target = match *rel {
            "prev" if page > 1 => Some(page - 1),
            "next" if page < last => Some(page + 1),
            "first" if page > 1 || always_ends => Some(1),
            "last" if page < last || always_ends => Some(last),
            _ => None,
        };
        if let Some(p) = target {
            parts.push(format!("{}; rel=\"{rel}\"", mk(p)));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Parses a raw query string into ordered pairs (percent-decoded, `+` as space).
pub(crate) fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub(crate) fn q_get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

/// What every emulator shares: the git server's repositories and credentials, a request log.
#[derive(Clone)]
pub(crate) struct Common {
    pub repos: Repos,
    pub creds: Credentials,
    pub log: Arc<Mutex<Vec<ApiRequestRecord>>>,
}

impl Common {
    pub(crate) fn new(git: &HttpGitServer) -> Common {
        Common {
            repos: git.repos(),
            creds: git.credentials(),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn requests(&self) -> Vec<ApiRequestRecord> {
        lock(&self.log).clone()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn auth_scheme(h: &HeaderMap) -> Option<String> {
    if h.contains_key("private-token") {
        return Some("PRIVATE-TOKEN".into());
    }
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .map(|s| s.to_string())
}

/// Middleware recording every request into the log.
pub(crate) async fn record(
    State(log): State<Arc<Mutex<Vec<ApiRequestRecord>>>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let auth_scheme = auth_scheme(req.headers());
    let resp = next.run(req).await;
    lock(&log).push(ApiRequestRecord {
        method,
        path,
        query,
        auth_scheme,
        status: resp.status().as_u16(),
    });
    resp
}

/// The token of `Authorization: <scheme> <token>` for one of `schemes` (case-insensitive).
pub(crate) fn bearer(h: &HeaderMap, schemes: &[&str]) -> Option<String> {
    let v = h.get("authorization")?.to_str().ok()?;
    let (s, t) = v.split_once(' ')?;
    schemes
        .iter()
        .any(|x| x.eq_ignore_ascii_case(s))
        .then(|| t.trim().to_string())
}
