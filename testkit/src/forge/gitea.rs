//! Gitea's (and Forgejo's) pulls API as the operator uses it, from Gitea's swagger
//! (`/api/swagger`: `repoCreatePullRequest`, `repoListPullRequests`, `repoGetPullRequest`,
//! `repoEditPullRequest`, `repoMergePullRequest`, `repoPullRequestIsMerged`) and its
//! `routers/api/v1/repo/pull.go`:
//!
//! - Auth `Authorization: token <t>` (also `Bearer`); 401 without a valid token here (the
//!   repositories are private; Gitea also answers 404 to anonymous callers of private repos).
//!   A read-only token (scope `read:repository`) creating or editing a PR → 403 "token does
//!   not have at least one of required scope(s): [write:repository]".
//! - `POST /repos/{owner}/{repo}/pulls` (`head`, `base`, `title`, `body`) → 201; an unmerged PR
//!   for the same head and base → 409 with `ErrPullRequestAlreadyExists`'s text
//!   (`pull request already exists for these targets [id: …, issue_id: <index>, head_repo_id:
//!   …, base_repo_id: …, head_branch: …, base_branch: …]`) in Gitea's `APIError` body
//!   `{"message", "url"}`; a missing branch → 404; `head` equal to `base` → 422 "Invalid
//!   PullRequest: There are no changes between the head and the base" (Gitea checks only
//!   that; a head without new commits is accepted).
//! - `GET /repos/{owner}/{repo}/pulls` (`state` open/closed/all, default open; `page`;
//!   `limit`, default 30 = `[api] DEFAULT_PAGING_NUM`, at most 50 = `MAX_RESPONSE_ITEMS`) with
//!   `X-Total-Count` and `Link` (next, last, first, prev).
//! - `GET /repos/{owner}/{repo}/pulls/{index}`; `PATCH` (`title`, `body`, `state`, `base`) →
//!   **201** (swagger: `201 PullRequest`; "TODO this should be 200, not 201" in the source);
//!   any `state` on a merged PR → 412 "cannot change state of this pull request, it was
//!   already merged"; a missing new base → 404.
//! - `POST /repos/{owner}/{repo}/pulls/{index}/merge` (`Do`: merge, squash, rebase,
//!   fast-forward-only; `MergeTitleField`, `MergeMessageField`, `head_commit_id`,
//!   `delete_branch_after_merge`) → 200 with an empty body; already merged → 405 (empty
//!   message); closed → 404; conflicts → 409; a stale `head_commit_id` → 409 "head out of
//!   date". `GET .../merge` → 204 merged / 404 not.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{
    bearer, link_header, lock, now_rfc3339, paginate, q_get, query_pairs, record, ApiRequestRecord,
    Common, MergeError, MergeMethod, PrState, PrStore, PullRequest,
};
use crate::httpgit::{Access, AuthOutcome, HttpGitServer};
use crate::tls::{serve_tls, Served};

struct GtState {
    prs: PrStore,
    base: String,
}

type Shared = (Common, Arc<Mutex<GtState>>);

/// A running Gitea emulator; stops when dropped.
pub struct GiteaEmulator {
    served: Served,
    common: Common,
    state: Arc<Mutex<GtState>>,
}

fn respond(status: u16, body: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

impl GiteaEmulator {
    /// Starts the emulator at `https://127.0.0.1:<port>` (API under `/api/v1`), same CA as
    /// `git`; repositories are the git server's (`owner/name`).
    pub fn start(git: &HttpGitServer) -> Result<GiteaEmulator> {
        let common = Common::new(git);
        let state = Arc::new(Mutex::new(GtState {
            prs: PrStore::default(),
            base: String::new(),
        }));
        let shared: Shared = (common.clone(), state.clone());
        let router = Router::new()
            .route(
                "/api/v1/repos/{owner}/{repo}/pulls",
                get(list_pulls).post(create_pull),
            )
            .route(
                "/api/v1/repos/{owner}/{repo}/pulls/{index}",
                get(get_pull).patch(edit_pull),
            )
            .route(
                "/api/v1/repos/{owner}/{repo}/pulls/{index}/merge",
                get(is_merged).post(merge_pull),
            )
            .fallback(|| async { respond(404, json!({"message": "not found"})) })
            .with_state(shared)
            .layer(axum::middleware::from_fn_with_state(
                common.log.clone(),
                record,
            ));
        let served = serve_tls(router, git.ca().server_config())?;
        lock(&state).base = served.base_url();
        Ok(GiteaEmulator {
            served,
            common,
            state,
        })
    }

    /// Instance URL; the API is `<that>/api/v1`.
    pub fn url(&self) -> String {
        self.served.base_url()
    }

    /// `https://127.0.0.1:<port>/api/v1`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.served.base_url())
    }

    /// Every API request so far.
    pub fn requests(&self) -> Vec<ApiRequestRecord> {
        self.common.requests()
    }

    /// Pull requests of `repo`, by index.
    pub fn prs(&self, repo: &str) -> Vec<PullRequest> {
        lock(&self.state).prs.list(repo)
    }

    /// Merges PR `index` of `repo` (a merge commit), as a user would in the UI.
    pub fn merge(&self, repo: &str, index: u64) -> Result<PullRequest> {
        lock(&self.state)
            .prs
            .merge(
                &self.common.repos,
                repo,
                index,
                MergeMethod::Merge,
                None,
                None,
            )
            .map_err(|e| anyhow::anyhow!("merge {repo}#{index}: {e:?}"))
    }

    /// Closes PR `index` of `repo`.
    pub fn close(&self, repo: &str, index: u64) -> Result<()> {
        let mut st = lock(&self.state);
        let p = st
            .prs
            .get_mut(repo, index)
            .with_context(|| format!("no PR {repo}#{index}"))?;
        p.state = PrState::Closed;
        p.closed_at = Some(now_rfc3339());
        Ok(())
    }
}

fn api_error(base: &str, status: u16, m: &str) -> Response {
    respond(
        status,
        json!({"message": m, "url": format!("{base}/api/swagger")}),
    )
}

/// A read-only token (scope `read:repository`) on a writing route: Gitea's
/// `tokenRequiresScopes` answers 403 (routers/api/v1/api.go; the scope level follows the
/// method, so POST/PATCH need `write:repository`).
fn scope_missing(base: &str) -> Response {
    api_error(
        base,
        403,
        "token does not have at least one of required scope(s): [write:repository]",
    )
}

fn not_found(base: &str) -> Response {
    respond(
        404,
        json!({"errors": [], "message": "The target couldn't be found.", "url": format!("{base}/api/swagger")}),
    )
}

fn check(common: &Common, base: &str, headers: &HeaderMap, repo: &str) -> Result<Access, Response> {
    let Some(t) = bearer(headers, &["token", "Bearer"]) else {
        return Err(api_error(base, 401, "token is required"));
    };
    match common.creds.check_token(&t, repo) {
        AuthOutcome::Granted(a) if common.repos.exists(repo) => Ok(a),
        AuthOutcome::Granted(_) | AuthOutcome::NoAccess => Err(not_found(base)),
        AuthOutcome::Unauthenticated => {
            Err(api_error(base, 401, "invalid username, password or token"))
        }
    }
}

/// A stable fake repository id per name.
fn repo_id(repo: &str) -> u64 {
    repo.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
        % 100_000
}

fn branch_json(common: &Common, base: &str, repo: &str, branch: &str) -> Value {
    let owner = repo.split('/').next().unwrap_or(repo);
    json!({
        "label": branch,
        "ref": branch,
        "sha": common.repos.branch_sha(repo, branch),
        "repo_id": repo_id(repo),
        "repo": {"id": repo_id(repo), "full_name": repo, "name": repo.rsplit('/').next(),
                 "owner": {"login": owner}, "private": true,
                 "html_url": format!("{base}/{repo}"), "clone_url": common.repos.url(repo)},
    })
}

fn pr_json(common: &Common, base: &str, repo: &str, p: &PullRequest) -> Value {
    let html = format!("{base}/{repo}/pulls/{}", p.number);
    let open = p.state == PrState::Open;
    let merge_base = common
        .repos
        .git(
            repo,
            &[
                "merge-base",
                &format!("refs/heads/{}", p.base),
                &format!("refs/heads/{}", p.head),
            ],
        )
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    json!({
        "id": p.id,
        "url": html,
        "number": p.number,
        "user": {"id": 3, "login": p.author, "full_name": "", "email": "bot@noreply.example"},
        "title": p.title,
        "body": p.body.clone().unwrap_or_default(),
        "labels": [],
        "milestone": null,
        "assignee": null,
        "assignees": null,
        "requested_reviewers": null,
        "state": if open { "open" } else { "closed" },
        "draft": false,
        "is_locked": false,
        "comments": 0,
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "mergeable": open,
        "merged": p.state == PrState::Merged,
        "merged_at": p.merged_at,
        "merge_commit_sha": p.merge_commit_sha,
        "merged_by": if p.state == PrState::Merged { json!({"login": p.author}) } else { Value::Null },
        "allow_maintainer_edit": false,
        "base": branch_json(common, base, repo, &p.base),
        "head": branch_json(common, base, repo, &p.head),
        "merge_base": merge_base,
        "due_date": null,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "closed_at": p.closed_at,
        "pin_order": 0,
    })
}

fn parse_json(b: &Bytes) -> Option<Value> {
    if b.is_empty() {
        return Some(json!({}));
    }
    serde_json::from_slice(b).ok()
}

/// `POST /repos/{owner}/{repo}/pulls` — `repoCreatePullRequest`.
async fn create_pull(
    State((common, st)): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let repo = format!("{owner}/{name}");
    let mut st = lock(&st);
    let base_url = st.base.clone();
    match check(&common, &base_url, &headers, &repo) {
        Ok(Access::ReadWrite) => {}
        Ok(_) => return scope_missing(&base_url),
        Err(r) => return r,
    }
    let Some(req) = parse_json(&body) else {
        return api_error(&base_url, 422, "invalid JSON");
    };
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(|s| s.to_string());
    let (Some(head_raw), Some(base)) = (s("head"), s("base")) else {
        return api_error(&base_url, 422, "[Head]: Required; [Base]: Required");
    };
    if head_raw == base {
        return api_error(
            &base_url,
            422,
            "Invalid PullRequest: There are no changes between the head and the base",
        );
    }
    let head = match head_raw.split_once(':') {
        Some((o, b)) if o == owner => b.to_string(),
        Some(_) => return not_found(&base_url),
        None => head_raw,
    };
    if common.repos.branch_sha(&repo, &base).is_none()
        || common.repos.branch_sha(&repo, &head).is_none()
    {
        return not_found(&base_url);
    }
    if let Some(dup) = st
        .prs
        .list(&repo)
        .into_iter()
        .find(|p| p.is_open() && p.head == head && p.base == base)
    {
        let rid = repo_id(&repo);
        return api_error(
            &base_url,
            409,
            &format!(
                "pull request already exists for these targets [id: {}, issue_id: {}, head_repo_id: {rid}, base_repo_id: {rid}, head_branch: {head}, base_branch: {base}]",
                dup.id, dup.number
            ),
        );
    }
    let pr = st.prs.create(
        &repo,
        &head,
        &base,
        &s("title").unwrap_or_default(),
        s("body"),
        "tooljet-gitsync-bot",
    );
    respond(201, pr_json(&common, &base_url, &repo, &pr))
}

/// `GET /repos/{owner}/{repo}/pulls` — `repoListPullRequests`.
async fn list_pulls(
    State((common, st)): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    let st = lock(&st);
    let base_url = st.base.clone();
    if let Err(r) = check(&common, &base_url, &headers, &repo) {
        return r;
    }
    let q = query_pairs(uri.query().unwrap_or_default());
    let state = q_get(&q, "state").unwrap_or("open");
    let limit = q_get(&q, "limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .clamp(1, 50);
    let page = q_get(&q, "page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize);
    let mut list: Vec<PullRequest> = st
        .prs
        .list(&repo)
        .into_iter()
        .filter(|p| match state {
            "open" => p.is_open(),
            "closed" => !p.is_open(),
            _ => true,
        })
        .collect();
    list.sort_by_key(|p| p.number);
    list.reverse();
    let pg = paginate(&list, page, limit);
    let items: Vec<Value> = pg
        .items
        .iter()
        .map(|p| pr_json(&common, &base_url, &repo, p))
        .collect();
    let mut r = respond(200, Value::Array(items));
    if let Ok(v) = HeaderValue::from_str(&pg.total.to_string()) {
        r.headers_mut().insert("x-total-count", v);
    }
    let url = format!("{base_url}{}", uri.path());
    if let Some(link) = link_header(
        &url,
        &q,
        &pg,
        "limit",
        &["next", "last", "first", "prev"],
        false,
    ) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert("link", v);
        }
    }
    r
}

/// `GET /repos/{owner}/{repo}/pulls/{index}` — `repoGetPullRequest`.
async fn get_pull(
    State((common, st)): State<Shared>,
    Path((owner, name, index)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    let st = lock(&st);
    if let Err(r) = check(&common, &st.base, &headers, &repo) {
        return r;
    }
    match index.parse::<u64>().ok().and_then(|n| st.prs.get(&repo, n)) {
        Some(p) => respond(200, pr_json(&common, &st.base, &repo, &p)),
        None => not_found(&st.base),
    }
}

/// `PATCH /repos/{owner}/{repo}/pulls/{index}` — `repoEditPullRequest` (answers 201).
async fn edit_pull(
    State((common, st)): State<Shared>,
    Path((owner, name, index)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let repo = format!("{owner}/{name}");
    let mut st = lock(&st);
    let base_url = st.base.clone();
    match check(&common, &base_url, &headers, &repo) {
        Ok(Access::ReadWrite) => {}
        Ok(_) => return scope_missing(&base_url),
        Err(r) => return r,
    }
    let Some(req) = parse_json(&body) else {
        return api_error(&base_url, 422, "invalid JSON");
    };
    if let Some(b) = req.get("base").and_then(Value::as_str) {
        if common.repos.branch_sha(&repo, b).is_none() {
            return api_error(&base_url, 404, &format!("new base '{b}' not exist"));
        }
    }
    let Some(p) = index
        .parse::<u64>()
        .ok()
        .and_then(|n| st.prs.get_mut(&repo, n))
    else {
        return not_found(&base_url);
    };
    match (req.get("state").and_then(Value::as_str), p.state) {
        (Some("closed"), PrState::Open) => {
            p.state = PrState::Closed;
            p.closed_at = Some(now_rfc3339());
        }
        (Some("open"), PrState::Closed) => {
            p.state = PrState::Open;
            p.closed_at = None;
        }
        (Some(_), PrState::Merged) => {
            return api_error(
                &base_url,
                412,
                "cannot change state of this pull request, it was already merged",
            )
        }
        _ => {}
    }
    if let Some(t) = req.get("title").and_then(Value::as_str) {
        p.title = t.to_string();
    }
    if let Some(b) = req.get("body").and_then(Value::as_str) {
        p.body = Some(b.to_string());
    }
    if let Some(b) = req.get("base").and_then(Value::as_str) {
        p.base = b.to_string();
    }
    p.updated_at = now_rfc3339();
    let p = p.clone();
    respond(201, pr_json(&common, &base_url, &repo, &p))
}

/// `GET /repos/{owner}/{repo}/pulls/{index}/merge` — `repoPullRequestIsMerged`.
async fn is_merged(
    State((common, st)): State<Shared>,
    Path((owner, name, index)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    let st = lock(&st);
    if let Err(r) = check(&common, &st.base, &headers, &repo) {
        return r;
    }
    match index.parse::<u64>().ok().and_then(|n| st.prs.get(&repo, n)) {
        Some(p) if p.state == PrState::Merged => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST /repos/{owner}/{repo}/pulls/{index}/merge` — `repoMergePullRequest`.
async fn merge_pull(
    State((common, st)): State<Shared>,
    Path((owner, name, index)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let repo = format!("{owner}/{name}");
    let mut st = lock(&st);
    let base_url = st.base.clone();
    match check(&common, &base_url, &headers, &repo) {
        Ok(Access::ReadWrite) => {}
        Ok(_) => return api_error(&base_url, 405, "User not allowed to merge PR"),
        Err(r) => return r,
    }
    let Some(req) = parse_json(&body) else {
        return api_error(&base_url, 422, "invalid JSON");
    };
    let method = match req.get("Do").and_then(Value::as_str) {
        Some("merge") => MergeMethod::Merge,
        Some("squash") => MergeMethod::Squash,
        Some("rebase" | "fast-forward-only") => MergeMethod::FastForward,
        _ => return api_error(&base_url, 422, "[Do]: Required"),
    };
    let Some(n) = index.parse::<u64>().ok() else {
        return not_found(&base_url);
    };
    let Some(pr) = st.prs.get(&repo, n) else {
        return not_found(&base_url);
    };
    match pr.state {
        PrState::Merged => return api_error(&base_url, 405, ""),
        PrState::Closed => return not_found(&base_url),
        PrState::Open => {}
    }
    let msg = req.get("MergeTitleField").and_then(Value::as_str).map(|t| {
        match req.get("MergeMessageField").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => format!("{t}\n\n{m}"),
            _ => t.to_string(),
        }
    });
    let sha = req.get("head_commit_id").and_then(Value::as_str);
    match st.prs.merge(&common.repos, &repo, n, method, msg, sha) {
        Ok(_) => {
            if req
                .get("delete_branch_after_merge")
                .and_then(Value::as_bool)
                == Some(true)
            {
                let _ = common.repos.git(
                    &repo,
                    &["update-ref", "-d", &format!("refs/heads/{}", pr.head)],
                );
            }
            StatusCode::OK.into_response()
        }
        Err(MergeError::ShaMismatch(_)) => api_error(&base_url, 409, "head out of date"),
        Err(MergeError::Conflict | MergeError::BranchMissing) => {
            api_error(&base_url, 409, "merge conflicts")
        }
        Err(MergeError::NotFound | MergeError::NotOpen) => not_found(&base_url),
        Err(MergeError::Git(e)) => api_error(&base_url, 500, &e),
    }
}
