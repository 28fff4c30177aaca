//! GitLab's merge requests API (docs.gitlab.com/api/merge_requests/) as the operator uses it.
//!
//! - `:id` is the numeric project id or the URL-encoded path (`acme%2Fapps`) ("REST API":
//!   "Namespaced paths").
//! - Auth: `PRIVATE-TOKEN: <token>` or `Authorization: Bearer <token>` ("REST API
//!   authentication"); 401 `{"message":"401 Unauthorized"}` otherwise; a token that does not
//!   reach the project gets 404 `{"message":"404 Project Not Found"}`.
//! - "Create MR": `POST /projects/:id/merge_requests` (`source_branch`, `target_branch`,
//!   `title` required; `description`, `remove_source_branch`; JSON or form) → 201; a missing
//!   parameter is 400 `{"error":"title is missing"}`; an open MR for the same source and target
//!   is 409 `{"message":["Another open merge request already exists for this source branch:
//!   !<iid>"]}` (documented as 409 in the OpenAPI since 2022, see WeblateOrg/weblate#14620);
//!   same branch for source and target is 422; an unknown branch is 400
//!   `{"message":{"source_branch":["does not exist"]}}`.
//! - "List project merge requests": `state` (opened, closed, locked, merged, all; default
//!   all), `source_branch`, `target_branch`, `order_by=created_at`, `sort=desc`, `page`,
//!   `per_page` (20, at most 100); headers `X-Page`, `X-Per-Page`, `X-Total`, `X-Total-Pages`,
//!   `X-Next-Page`, `X-Prev-Page` and `Link` (prev, next, first, last) per "REST API":
//!   "Pagination".
//! - "Get single MR", "Update MR" (`title`, `description`, `target_branch`, `state_event`
//!   close/reopen), "Merge a merge request" (`PUT .../merge`: `merge_commit_message`, `squash`,
//!   `sha`, `should_remove_source_branch`; 200 with the MR `state: merged`; 405 `{"message":"405
//!   Method Not Allowed"}` when not open or not mergeable (conflicts: gitlab-org/gitlab#364102);
//!   409 `{"message":"SHA does not match HEAD of source branch: <sha>"}`; 422
//!   `{"message":"Branch cannot be merged"}` when the merge itself fails (here: a branch is
//!   gone); 401 without permission to merge).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Map, Value};

use super::{
    bearer, commits_ahead, link_header, lock, now_rfc3339, paginate, q_get, query_pairs, record,
    ApiRequestRecord, Common, MergeError, MergeMethod, PrState, PrStore, PullRequest,
};
use crate::httpgit::{Access, AuthOutcome, HttpGitServer};
use crate::tls::{serve_tls, Served};

struct GlState {
    projects: BTreeMap<String, u64>,
    next_project: u64,
    mrs: PrStore,
    api_url: String,
}

type Shared = (Common, Arc<Mutex<GlState>>);

/// A running GitLab emulator; stops when dropped.
pub struct GitLabEmulator {
    served: Served,
    common: Common,
    state: Arc<Mutex<GlState>>,
}

fn respond(status: u16, body: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

fn message(status: u16, m: &str) -> Response {
    respond(status, json!({ "message": m }))
}

impl GitLabEmulator {
    /// Starts the emulator at `https://127.0.0.1:<port>` (API under `/api/v4`), same CA as
    /// `git`. Every repository of `git` is a project (ids given on first use).
    pub fn start(git: &HttpGitServer) -> Result<GitLabEmulator> {
        let common = Common::new(git);
        let state = Arc::new(Mutex::new(GlState {
            projects: BTreeMap::new(),
            next_project: 100,
            mrs: PrStore::default(),
            api_url: String::new(),
        }));
        let shared: Shared = (common.clone(), state.clone());
        let router = Router::new()
            .route("/api/v4/projects/{id}", get(get_project))
            .route(
                "/api/v4/projects/{id}/merge_requests",
                get(list_mrs).post(create_mr),
            )
            .route(
                "/api/v4/projects/{id}/merge_requests/{iid}",
                get(get_mr).put(update_mr),
            )
            .route(
                "/api/v4/projects/{id}/merge_requests/{iid}/merge",
                put(merge_mr),
            )
            .fallback(|| async { message(404, "404 Not Found") })
            .with_state(shared)
            .layer(axum::middleware::from_fn_with_state(
                common.log.clone(),
                record,
            ));
        let served = serve_tls(router, git.ca().server_config())?;
        lock(&state).api_url = format!("{}/api/v4", served.base_url());
        Ok(GitLabEmulator {
            served,
            common,
            state,
        })
    }

    /// Instance URL (`https://127.0.0.1:<port>`); the API is `<that>/api/v4`.
    pub fn url(&self) -> String {
        self.served.base_url()
    }

    /// `https://127.0.0.1:<port>/api/v4`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v4", self.served.base_url())
    }

    /// The numeric id of project `path` (a repository of the git server).
    pub fn project_id(&self, path: &str) -> u64 {
        project_id_of(&mut lock(&self.state), path)
    }

    /// Every API request so far.
    pub fn requests(&self) -> Vec<ApiRequestRecord> {
        self.common.requests()
    }

    /// Merge requests of project `path`, by iid.
    pub fn prs(&self, path: &str) -> Vec<PullRequest> {
        lock(&self.state).mrs.list(path)
    }

    /// Merges MR `iid` of `path` (a merge commit), as a user would in the UI.
    pub fn merge(&self, path: &str, iid: u64) -> Result<PullRequest> {
        lock(&self.state)
            .mrs
            .merge(
                &self.common.repos,
                path,
                iid,
                MergeMethod::Merge,
                None,
                None,
            )
            .map_err(|e| anyhow::anyhow!("merge {path}!{iid}: {e:?}"))
    }

    /// Closes MR `iid` of `path`.
    pub fn close(&self, path: &str, iid: u64) -> Result<()> {
        let mut st = lock(&self.state);
        let p = st
            .mrs
            .get_mut(path, iid)
            .with_context(|| format!("no MR {path}!{iid}"))?;
        p.state = PrState::Closed;
        p.closed_at = Some(now_rfc3339());
        Ok(())
    }
}

fn project_id_of(st: &mut GlState, path: &str) -> u64 {
    if let Some(id) = st.projects.get(path) {
        return *id;
    }
    st.next_project += 1;
    let id = st.next_project;
    st.projects.insert(path.to_string(), id);
    id
}

/// Resolves `:id` (number or decoded path) to the project path, checking the token.
fn project(
    common: &Common,
    st: &mut GlState,
    id: &str,
    headers: &HeaderMap,
) -> Result<(String, Access), Response> {
    let token = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
        .or_else(|| bearer(headers, &["Bearer"]));
    let Some(token) = token else {
        return Err(message(401, "401 Unauthorized"));
    };
    let path = match id.parse::<u64>() {
        Ok(n) => st
            .projects
            .iter()
            .find(|(_, v)| **v == n)
            .map(|(k, _)| k.clone()),
        Err(_) => Some(id.to_string()),
    };
    let not_found = || message(404, "404 Project Not Found");
    let access = match common
        .creds
        .check_token(&token, path.as_deref().unwrap_or(""))
    {
        AuthOutcome::Unauthenticated => return Err(message(401, "401 Unauthorized")),
        AuthOutcome::NoAccess => return Err(not_found()),
        AuthOutcome::Granted(a) => a,
    };
    match path {
        Some(p) if common.repos.exists(&p) => {
            project_id_of(st, &p);
            Ok((p, access))
        }
        _ => Err(not_found()),
    }
}

/// JSON or form body (GitLab takes both), as a JSON object.
fn body_params(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Response> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.starts_with("application/x-www-form-urlencoded") {
        let s = String::from_utf8_lossy(body);
        return Ok(query_pairs(&s)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(respond(
            400,
            json!({"error": "The provided content-type '' is not supported."}),
        )),
    }
}

fn p_str(m: &Map<String, Value>, k: &str) -> Option<String> {
    match m.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn p_bool(m: &Map<String, Value>, k: &str) -> bool {
    match m.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

fn mr_state(p: &PullRequest) -> &'static str {
    match p.state {
        PrState::Open => "opened",
        PrState::Closed => "closed",
        PrState::Merged => "merged",
    }
}

fn mr_json(common: &Common, pid: u64, path: &str, p: &PullRequest, single: bool) -> Value {
    let author = json!({"id": 7, "username": p.author, "name": p.author, "state": "active",
        "web_url": format!("{}/{}", common.repos.base_url(), p.author)});
    let open = p.state == PrState::Open;
    let mut v = json!({
        "id": p.id,
        "iid": p.number,
        "project_id": pid,
        "title": p.title,
        "description": p.body,
        "state": mr_state(p),
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "merged_by": if p.merged_at.is_some() { author.clone() } else { Value::Null },
        "merge_user": if p.merged_at.is_some() { author.clone() } else { Value::Null },
        "merged_at": p.merged_at,
        "closed_by": if p.state == PrState::Closed { author.clone() } else { Value::Null },
        "closed_at": if p.state == PrState::Closed { json!(p.closed_at) } else { Value::Null },
        "target_branch": p.base,
        "source_branch": p.head,
        "user_notes_count": 0,
        "upvotes": 0,
        "downvotes": 0,
        "author": author,
        "assignees": [],
        "assignee": null,
        "reviewers": [],
        "source_project_id": pid,
        "target_project_id": pid,
        "labels": [],
    });
    let more = json!({
        "draft": false,
        "work_in_progress": false,
        "milestone": null,
        "merge_when_pipeline_succeeds": false,
        "merge_status": if open { "can_be_merged" } else { "unchecked" },
        "detailed_merge_status": if open { "mergeable" } else { "not_open" },
        "sha": common.repos.branch_sha(path, &p.head),
        "merge_commit_sha": p.merge_commit_sha,
        "squash_commit_sha": null,
        "discussion_locked": null,
        "should_remove_source_branch": null,
        "force_remove_source_branch": false,
        "reference": format!("!{}", p.number),
        "references": {"short": format!("!{}", p.number), "relative": format!("!{}", p.number),
                       "full": format!("{path}!{}", p.number)},
        "web_url": format!("{}/{path}/-/merge_requests/{}", common.repos.base_url(), p.number),
        "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": null, "human_total_time_spent": null},
        "squash": false,
        "squash_on_merge": false,
        "task_completion_status": {"count": 0, "completed_count": 0},
        "has_conflicts": false,
        "blocking_discussions_resolved": true,
    });
    if let (Some(o), Value::Object(m)) = (v.as_object_mut(), more) {
        o.extend(m);
    }
    if single {
        v["changes_count"] = json!(commits_ahead(&common.repos, path, &p.base, &p.head)
            .map(|n| n.to_string())
            .ok());
        v["merge_error"] = Value::Null;
        v["first_contribution"] = json!(false);
        v["user"] = json!({"can_merge": true});
        v["diff_refs"] = json!({"base_sha": common.repos.branch_sha(path, &p.base),
            "head_sha": common.repos.branch_sha(path, &p.head),
            "start_sha": common.repos.branch_sha(path, &p.base)});
    }
    v
}

/// `GET /projects/:id` — "Get a single project" (the fields the operator may read).
async fn get_project(
    State((common, st)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut st = lock(&st);
    let (path, _) = match project(&common, &mut st, &id, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pid = project_id_of(&mut st, &path);
    let default = common
        .repos
        .git(&path, &["symbolic-ref", "--short", "HEAD"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "main".into());
    respond(
        200,
        json!({"id": pid, "path_with_namespace": path, "path": path.rsplit('/').next(),
               "default_branch": default, "visibility": "private",
               "web_url": format!("{}/{path}", common.repos.base_url()),
               "http_url_to_repo": common.repos.url(&path)}),
    )
}

/// `POST /projects/:id/merge_requests` — "Create MR".
async fn create_mr(
    State((common, st)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&st);
    let (path, access) = match project(&common, &mut st, &id, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if access == Access::ReadOnly {
        return message(403, "403 Forbidden");
    }
    let m = match body_params(&headers, &body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (source, target, title) = (
        p_str(&m, "source_branch"),
        p_str(&m, "target_branch"),
        p_str(&m, "title"),
    );
    let missing: Vec<&str> = [
        ("source_branch", &source),
        ("target_branch", &target),
        ("title", &title),
    ]
    .iter()
    .filter(|(_, v)| v.is_none())
    .map(|(k, _)| *k)
    .collect();
    if !missing.is_empty() {
        let e: Vec<String> = missing.iter().map(|k| format!("{k} is missing")).collect();
        return respond(400, json!({"error": e.join(", ")}));
    }
    let (source, target, title) = (
        source.unwrap_or_default(),
        target.unwrap_or_default(),
        title.unwrap_or_default(),
    );
    if source == target {
        return respond(
            422,
            json!({"message": ["You can't use same project/branch for source and target"]}),
        );
    }
    for (field, b) in [("source_branch", &source), ("target_branch", &target)] {
        if common.repos.branch_sha(&path, b).is_none() {
            return respond(400, json!({"message": {field: ["does not exist"]}}));
        }
    }
    if let Some(dup) = st
        .mrs
        .list(&path)
        .into_iter()
        .find(|p| p.is_open() && p.head == source && p.base == target)
    {
        return respond(
            409,
            json!({"message": [format!("Another open merge request already exists for this source branch: !{}", dup.number)]}),
        );
    }
    let pid = project_id_of(&mut st, &path);
    let mr = st.mrs.create(
        &path,
        &source,
        &target,
        &title,
        p_str(&m, "description"),
        "tooljet-gitsync-bot",
    );
    respond(201, mr_json(&common, pid, &path, &mr, true))
}

/// `GET /projects/:id/merge_requests` — "List project merge requests".
async fn list_mrs(
    State((common, st)): State<Shared>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let mut st = lock(&st);
    let (path, _) = match project(&common, &mut st, &id, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pid = project_id_of(&mut st, &path);
    let q = query_pairs(uri.query().unwrap_or_default());
    let state = q_get(&q, "state").unwrap_or("all");
    if !["opened", "closed", "locked", "merged", "all"].contains(&state) {
        return respond(400, json!({"error": "state does not have a valid value"}));
    }
    let per_page = q_get(&q, "per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20usize)
        .clamp(1, 100);
    let page = q_get(&q, "page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize);
    let mut list: Vec<PullRequest> = st
        .mrs
        .list(&path)
        .into_iter()
        .filter(|p| state == "all" || mr_state(p) == state)
        .filter(|p| q_get(&q, "source_branch").is_none_or(|b| p.head == b))
        .filter(|p| q_get(&q, "target_branch").is_none_or(|b| p.base == b))
        .collect();
    list.sort_by_key(|p| p.number);
    if q_get(&q, "sort") != Some("asc") {
        list.reverse();
    }
    let pg = paginate(&list, page, per_page);
    let items: Vec<Value> = pg
        .items
        .iter()
        .map(|p| mr_json(&common, pid, &path, p, false))
        .collect();
    let mut r = respond(200, Value::Array(items));
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(h, "x-page", pg.page.to_string());
    set(h, "x-per-page", pg.per_page.to_string());
    set(h, "x-total", pg.total.to_string());
    set(h, "x-total-pages", pg.last.to_string());
    set(
        h,
        "x-next-page",
        if pg.page < pg.last {
            (pg.page + 1).to_string()
        } else {
            String::new()
        },
    );
    set(
        h,
        "x-prev-page",
        if pg.page > 1 {
            (pg.page - 1).to_string()
        } else {
            String::new()
        },
    );
    let url = format!("{}{}", st.api_url.trim_end_matches("/api/v4"), uri.path());
    if let Some(link) = link_header(
        &url,
        &q,
        &pg,
        "per_page",
        &["prev", "next", "first", "last"],
        true,
    ) {
        set(h, "link", link);
    }
    r
}

fn find_mr(st: &GlState, path: &str, iid: &str) -> Option<PullRequest> {
    iid.parse::<u64>().ok().and_then(|n| st.mrs.get(path, n))
}

/// `GET /projects/:id/merge_requests/:merge_request_iid` — "Get single MR".
async fn get_mr(
    State((common, st)): State<Shared>,
    Path((id, iid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut st = lock(&st);
    let (path, _) = match project(&common, &mut st, &id, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pid = project_id_of(&mut st, &path);
    match find_mr(&st, &path, &iid) {
        Some(p) => respond(200, mr_json(&common, pid, &path, &p, true)),
        None => message(404, "404 Not found"),
    }
}

/// `PUT /projects/:id/merge_requests/:merge_request_iid` — "Update MR".
async fn update_mr(
    State((common, st)): State<Shared>,
    Path((id, iid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&st);
    let (path, access) = match project(&common, &mut st, &id, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if access == Access::ReadOnly {
        return message(403, "403 Forbidden");
    }
    let m = match body_params(&headers, &body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let pid = project_id_of(&mut st, &path);
    if let Some(b) = p_str(&m, "target_branch") {
        if common.repos.branch_sha(&path, &b).is_none() {
            return respond(
                400,
                json!({"message": {"target_branch": ["does not exist"]}}),
            );
        }
    }
    let Some(p) = iid
        .parse::<u64>()
        .ok()
        .and_then(|n| st.mrs.get_mut(&path, n))
    else {
        return message(404, "404 Not found");
    };
    if let Some(t) = p_str(&m, "title") {
        p.title = t;
    }
    if let Some(d) = p_str(&m, "description") {
        p.body = Some(d);
    }
    if let Some(b) = p_str(&m, "target_branch") {
        p.base = b;
    }
    match (p_str(&m, "state_event").as_deref(), p.state) {
        (Some("close"), PrState::Open) => {
            p.state = PrState::Closed;
            p.closed_at = Some(now_rfc3339());
        }
        (Some("reopen"), PrState::Closed) => {
            p.state = PrState::Open;
            p.closed_at = None;
        }
        (Some("close" | "reopen") | None, _) => {}
        (Some(_), _) => {
            return respond(
                400,
                json!({"error": "state_event does not have a valid value"}),
            )
        }
    }
    p.updated_at = now_rfc3339();
    let p = p.clone();
    respond(200, mr_json(&common, pid, &path, &p, true))
}

/// `PUT /projects/:id/merge_requests/:merge_request_iid/merge` — "Merge a merge request".
async fn merge_mr(
    State((common, st)): State<Shared>,
    Path((id, iid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&st);
    let (path, access) = match project(&common, &mut st, &id, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if access != Access::ReadWrite {
        return message(401, "401 Unauthorized");
    }
    let m = match body_params(&headers, &body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let pid = project_id_of(&mut st, &path);
    let Some(n) = iid.parse::<u64>().ok() else {
        return message(404, "404 Not found");
    };
    let method = if p_bool(&m, "squash") {
        MergeMethod::Squash
    } else {
        MergeMethod::Merge
    };
    let msg = p_str(&m, "merge_commit_message");
    let sha = p_str(&m, "sha");
    let head = st.mrs.get(&path, n).map(|p| p.head.clone());
    match st
        .mrs
        .merge(&common.repos, &path, n, method, msg, sha.as_deref())
    {
        Ok(p) => {
            if p_bool(&m, "should_remove_source_branch") {
                if let Some(h) = head {
                    let _ = common
                        .repos
                        .git(&path, &["update-ref", "-d", &format!("refs/heads/{h}")]);
                }
            }
            respond(200, mr_json(&common, pid, &path, &p, true))
        }
        Err(MergeError::NotFound) => message(404, "404 Not found"),
        Err(MergeError::NotOpen) => message(405, "405 Method Not Allowed"),
        Err(MergeError::ShaMismatch(h)) => message(
            409,
            &format!("SHA does not match HEAD of source branch: {h}"),
        ),
        // Conflicts make the MR not `mergeable?`: 405, as gitlab.com answers (gitlab-org/
        // gitlab#364102; older docs said 406).
        Err(MergeError::Conflict) => message(405, "405 Method Not Allowed"),
        Err(MergeError::BranchMissing) => message(422, "Branch cannot be merged"),
        Err(MergeError::Git(e)) => message(500, &e),
    }
}
