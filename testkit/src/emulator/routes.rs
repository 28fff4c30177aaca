//! ToolJet's HTTP surface as the operator uses it: paths, auth headers, status codes and JSON
//! shapes follow `tooljet-reference.md` §3 and the ToolJet sources named on each handler.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::Router;
use serde_json::{json, Value};

use super::model::{
    export_json, is_uuid, new_id, now, version_greater, AppRec, FaultAction, RequestRecord,
    Session, State as Emu, VersionSelection, WorkspaceRec,
};

mod constants;
mod datasources;

pub(crate) type Shared = Arc<Mutex<Emu>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Emu> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

type Q = Query<HashMap<String, String>>;

fn respond(status: u16, body: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if body.is_null() {
        return code.into_response();
    }
    (code, axum::Json(body)).into_response()
}

/// NestJS' error body: `{statusCode, message, error}`.
fn nest_error(status: u16, message: &str) -> Response {
    let phrase = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    respond(
        status,
        json!({"statusCode": status, "message": message, "error": phrase}),
    )
}

/// A refusal computed by a guard or check; becomes a NestJS error body.
pub(crate) struct Reject {
    status: u16,
    message: String,
}

fn reject(status: u16, message: &str) -> Reject {
    Reject {
        status,
        message: message.to_string(),
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        nest_error(self.status, &self.message)
    }
}

/// What NestJS answers for an unregistered route (Community Edition for `/api/ext`).
fn cannot(method: &Method, uri: &Uri) -> Reject {
    reject(404, &format!("Cannot {} {}", method, uri.path()))
}

fn parse_body(body: &Bytes) -> Result<Value, Reject> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|_| reject(400, "Unexpected token in JSON body"))
}

pub(crate) fn router(shared: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/api/metadata", get(metadata))
        .route("/api/authenticate", post(authenticate))
        .route("/api/authenticate/{org}", post(authenticate_org))
        .route("/api/organizations", get(organizations))
        .route("/api/app-environments", get(constants::list_environments))
        .route(
            "/api/organization-constants",
            get(constants::list).post(constants::create),
        )
        .route(
            "/api/organization-constants/environment/{env}",
            get(constants::in_environment),
        )
        .route(
            "/api/organization-constants/{id}",
            patch(constants::update).delete(constants::delete),
        )
        .route(
            "/api/data-sources/{id}",
            get(datasources::list).put(datasources::update),
        )
        .route(
            "/api/data-sources/{id}/environment/{env}",
            get(datasources::in_environment),
        )
        .route("/api/apps", get(list_apps))
        .route(
            "/api/apps/{id}",
            get(get_app).put(update_app).delete(delete_app),
        )
        .route("/api/apps/{id}/versions", get(app_versions))
        .route("/api/app-git/{id}/configs", put(app_git_configs))
        .route("/api/v2/resources/export", post(resources_export))
        .route("/api/v2/resources/import", post(resources_import))
        .route("/api/ext/workspaces", get(ext_workspaces))
        .route("/api/ext/workspace/{ws}/apps", get(ext_apps))
        .route(
            "/api/ext/export/workspace/{ws}/apps/{app}",
            post(ext_export),
        )
        .route("/api/ext/import/workspace/{ws}/apps", post(ext_import))
        .route("/api/v2/ext/workspaces/{ws}", get(v2_workspace))
        .route(
            "/api/v2/ext/workspaces/{ws}/environments",
            get(constants::ext_v2_environments),
        )
        .route(
            "/api/v2/ext/workspaces/{ws}/apps/{app}",
            get(v2_get_app).patch(v2_patch_app).delete(v2_delete_app),
        )
        .fallback(|method: Method, uri: Uri| async move { cannot(&method, &uri).into_response() })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults_and_log,
        ))
        .with_state(shared)
}

/// Applies injected faults and records every request. The request is handled in a task of
/// its own, as a real server does: a client that goes away (a killed operator) does not undo
/// what the server was doing.
async fn faults_and_log(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let action = {
        let mut st = lock(&shared);
        st.arrivals.push(RequestRecord {
            method: method.clone(),
            path: path.clone(),
            status: 0,
        });
        st.apply_fault(&method, &path)
    };
    let handled = tokio::spawn(async move {
        match action {
            Some(FaultAction::Status(s)) => nest_error(s, "Injected fault"),
            Some(FaultAction::Delay(d)) => {
                tokio::time::sleep(d).await;
                next.run(req).await
            }
            Some(FaultAction::StatusAfterHandling(s)) => {
                let _ = next.run(req).await;
                nest_error(s, "Injected fault after handling")
            }
            None => next.run(req).await,
        }
    });
    let resp = match handled.await {
        Ok(r) => r,
        Err(_) => nest_error(500, "handler failed"),
    };
    lock(&shared).requests.push(RequestRecord {
        method,
        path,
        status: resp.status().as_u16(),
    });
    resp
}

// ---- auth guards --------------------------------------------------------------------------

/// External API guards, in ToolJet's order: route registered (CE: 404), licence (451), token
/// (`ExternalApiSecurityGuard`: `Authorization: Basic <token>`, else 403).
fn ext_guard(
    st: &Emu,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    v2: bool,
) -> Result<(), Reject> {
    if st.config.community || (v2 && !st.config.ext_v2) {
        return Err(cannot(method, uri));
    }
    if !st.config.external_api_licensed {
        return Err(reject(
            451,
            "External API is not available in your current plan",
        ));
    }
    let expected = st.config.token.as_ref().map(|t| format!("Basic {t}"));
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match (expected, got) {
        (Some(e), Some(g)) if e == g => Ok(()),
        _ => Err(reject(403, "Forbidden resource")),
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == "tj_auth_token").then(|| v.to_string())
        })
}

/// Session guard (`JwtAuthGuard`): cookie `tj_auth_token` of a live session, and header
/// `tj-workspace-id` naming a workspace the session's JWT covers. Returns that workspace.
fn session_guard(st: &Emu, headers: &HeaderMap, require_ws: bool) -> Result<WorkspaceRec, Reject> {
    let unauthorized = || reject(401, "Unauthorized");
    let token = cookie_token(headers).ok_or_else(unauthorized)?;
    let session = st.sessions.get(&token).ok_or_else(unauthorized)?;
    let ws_header = headers
        .get("tj-workspace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ws_id = match ws_header {
        Some(id) => id,
        None if require_ws => return Err(unauthorized()),
        None => session
            .orgs
            .iter()
            .next()
            .cloned()
            .ok_or_else(unauthorized)?,
    };
    if !session.orgs.contains(&ws_id) {
        return Err(unauthorized());
    }
    st.workspace(&ws_id).cloned().ok_or_else(unauthorized)
}

// ---- public + login -----------------------------------------------------------------------

/// `GET /api/metadata` (`modules/meta/service.ts`), public.
async fn metadata(State(s): State<Shared>) -> Response {
    let st = lock(&s);
    respond(
        200,
        json!({
            "instance_id": st.instance_id,
            "installed_version": st.config.version,
            "latest_version": st.config.version,
            "onboarded": true,
            "version_ignored": false
        }),
    )
}

async fn authenticate(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    login(&s, &headers, None, &body)
}

async fn authenticate_org(
    State(s): State<Shared>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    login(&s, &headers, Some(org), &body)
}

/// `POST /api/authenticate[/:organizationId]` with `{email, password}` (`modules/auth/controller.ts`):
/// 201, cookie `tj_auth_token`, decamelized session payload; 401 on bad credentials. With a
/// valid cookie of the same user, the new session also covers the old one's workspaces.
fn login(s: &Shared, headers: &HeaderMap, org: Option<String>, body: &Bytes) -> Response {
    let body = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let email = body
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let password = body
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if email.is_empty() || password.is_empty() {
        return nest_error(400, "email must be an email; password should not be empty");
    }
    let mut st = lock(s);
    let ok = st
        .config
        .email
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case(email))
        && st.config.password.as_deref() == Some(password);
    if !ok {
        return nest_error(401, "Invalid credentials");
    }
    let target = match &org {
        Some(id) => match st.workspace(id) {
            Some(w) => w.clone(),
            None => return nest_error(401, "User is not a member of this workspace"),
        },
        None => match st.workspaces.first() {
            Some(w) => w.clone(),
            None => return nest_error(401, "No active workspace"),
        },
    };
    let mut orgs: BTreeSet<String> = cookie_token(headers)
        .and_then(|t| st.sessions.get(&t).map(|s| s.orgs.clone()))
        .unwrap_or_default();
    orgs.insert(target.id.clone());
    let token = format!("{}.{}", new_id(), new_id());
    st.sessions.insert(token.clone(), Session { orgs });
    let mut resp = respond(
        201,
        json!({
            "id": st.user_id,
            "email": email.to_ascii_lowercase(),
            "first_name": "Emu",
            "last_name": "Lator",
            "organization_id": target.id,
            "organization": target.name,
            "is_current_organization_archived": false,
            "current_organization_id": target.id,
            "current_organization_slug": target.slug,
            "admin": true,
            "super_admin": false,
            "no_active_workspaces": false
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "tj_auth_token={token}; Path=/; HttpOnly; SameSite=Strict"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

// ---- internal builder routes --------------------------------------------------------------

/// `GET /api/organizations` (`modules/organizations/controller.ts`):
/// `{organizations:[{id, name, slug, status, ...}], total_count}`.
async fn organizations(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let st = lock(&s);
    if let Err(r) = session_guard(&st, &headers, false) {
        return r.into_response();
    }
    let orgs: Vec<Value> = st
        .workspaces
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({"id": w.id, "name": w.name, "slug": w.slug, "status": "active",
                   "is_default": i == 0, "created_at": "2025-01-01T00:00:00.000Z"})
        })
        .collect();
    respond(
        200,
        json!({"organizations": orgs, "total_count": st.workspaces.len()}),
    )
}

fn app_row(app: &AppRec, user_id: &str) -> Value {
    json!({
        "id": app.id, "type": "front-end", "name": app.name, "slug": app.slug,
        "is_public": false, "is_maintenance_on": false, "icon": app.content.get("icon").cloned().unwrap_or(json!("home")),
        "organization_id": app.workspace_id, "current_version_id": null, "user_id": user_id,
        "creation_mode": "DEFAULT", "created_at": app.created_at, "updated_at": app.updated_at,
        "user": {"first_name": "Emu", "last_name": "Lator"}
    })
}

/// `GET /api/apps?page=N&type=&searchKey=` (`modules/apps/controller.ts` `index`,
/// `service.ts` `getAllApps`): 9 per page, `{meta, apps}` decamelized.
async fn list_apps(State(s): State<Shared>, headers: HeaderMap, Query(q): Q) -> Response {
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let search = q
        .get("searchKey")
        .map(|s| s.to_lowercase())
        .unwrap_or_default();
    if q.get("type").is_some_and(|t| t != "front-end") {
        return respond(
            200,
            json!({"meta": {"total_pages": 0, "total_count": 0, "folder_count": 0, "current_page": page}, "apps": []}),
        );
    }
    let apps: Vec<&AppRec> = st
        .apps_in(&ws.id)
        .into_iter()
        .filter(|a| search.is_empty() || a.name.to_lowercase().contains(&search))
        .collect();
    let per = st.config.page_size.max(1);
    let total_pages = apps.len().div_ceil(per);
    let slice: Vec<Value> = apps
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .map(|a| app_row(a, &st.user_id))
        .collect();
    respond(
        200,
        json!({
            "meta": {"total_pages": total_pages, "total_count": apps.len(), "folder_count": 0, "current_page": page},
            "apps": slice
        }),
    )
}

/// `GET /api/apps/:id` (`show`): the app decamelized with its editing version.
async fn get_app(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let Some(app) = st.app_in(&ws.id, &id) else {
        return nest_error(404, "App not found");
    };
    let mut row = app_row(app, &st.user_id);
    if let Some(v) = app.versions.last() {
        row["editing_version"] =
            json!({"id": v.id, "name": v.name, "app_id": app.id, "created_at": v.created_at});
    }
    row["should_freeze_editor"] = json!(!app.editable);
    row["data_queries"] = json!([]);
    row["definition"] = Value::Null;
    row["pages"] = json!([]);
    row["events"] = json!([]);
    respond(200, row)
}

fn check_name(name: &str) -> Result<(), Reject> {
    if name.trim().is_empty() {
        return Err(reject(400, "App name should not be empty"));
    }
    if name.chars().count() > 50 {
        return Err(reject(400, "Maximum length has been reached."));
    }
    Ok(())
}

/// `PUT /api/apps/:id` with `{app:{name?, slug?, ...}}` (`update`, `AppUpdateDto`).
async fn update_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let mut st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    if st.app_in(&ws.id, &id).is_none() {
        return nest_error(404, "App not found");
    }
    let upd = body.get("app").cloned().unwrap_or_default();
    let name = upd.get("name").and_then(Value::as_str).map(str::to_string);
    let slug = upd.get("slug").and_then(Value::as_str).map(str::to_string);
    if let Some(n) = &name {
        if let Err(r) = check_name(n) {
            return r.into_response();
        }
        if st.name_taken(&ws.id, n, Some(&id)) {
            return nest_error(400, "This app name is already taken.");
        }
    }
    if let Some(sl) = &slug {
        if sl.is_empty() || sl.contains(' ') {
            return nest_error(400, "Invalid slug");
        }
        if st.slug_taken(&ws.id, sl, Some(&id)) {
            return nest_error(409, "This app slug is taken.");
        }
    }
    let user = st.user_id.clone();
    let Some(app) = st.app_mut(&id) else {
        return nest_error(404, "App not found");
    };
    if let Some(n) = name {
        app.name = n;
    }
    if let Some(sl) = slug {
        app.slug = sl;
    }
    app.updated_at = now();
    let row = app_row(app, &user);
    respond(200, row)
}

/// `DELETE /api/apps/:id` (`delete`).
async fn delete_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    if st.app_in(&ws.id, &id).is_none() {
        return nest_error(404, "App not found");
    }
    st.apps.retain(|a| !a.id.eq_ignore_ascii_case(&id));
    StatusCode::OK.into_response()
}

/// `GET /api/apps/:id/versions` (`modules/versions/controller.ts`): `{versions}`, editing
/// version first, entities in camelCase.
async fn app_versions(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let Some(app) = st.app_in(&ws.id, &id) else {
        return nest_error(404, "App not found");
    };
    let versions: Vec<Value> = app
        .versions
        .iter()
        .rev()
        .enumerate()
        .map(|(i, v)| {
            json!({"id": v.id, "name": v.name, "appId": app.id, "createdAt": v.created_at,
                   "updatedAt": app.updated_at, "currentEnvironmentId": ws.environments[0],
                   "isCurrentEditingVersion": i == 0})
        })
        .collect();
    respond(200, json!({ "versions": versions }))
}

/// `PUT /api/app-git/:appId/configs` with `{allowEditing}` (EE GitSync; CE answers 404).
async fn app_git_configs(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let mut st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    if st.config.community || !st.config.gitsync {
        return nest_error(404, "Not Found");
    }
    let Some(allow) = body.get("allowEditing").and_then(Value::as_bool) else {
        return nest_error(400, "allowEditing must be a boolean value");
    };
    if st.app_in(&ws.id, &id).is_none() {
        return nest_error(404, "App not found");
    }
    if let Some(app) = st.app_mut(&id) {
        app.editable = allow;
    }
    respond(200, json!({}))
}

fn version_too_new(export: &str, server: &str) -> Response {
    nest_error(
        400,
        &format!("The app was exported from ToolJet version {export}, which is newer than this server's version {server}; it cannot be imported"),
    )
}

/// `POST /api/v2/resources/export` with `{organization_id, app:[{id, search_params}]}`
/// (`import-export-resources/controller.ts`): 201, the export plus `tooljet_version`.
async fn resources_export(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    if body.get("organization_id").and_then(Value::as_str) != Some(ws.id.as_str()) {
        return nest_error(403, "Forbidden resource");
    }
    let Some(entry) = body
        .get("app")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    else {
        return nest_error(400, "app must be an array");
    };
    let id = entry.get("id").and_then(Value::as_str).unwrap_or_default();
    let Some(app) = st.app_in(&ws.id, id) else {
        return nest_error(404, "App not found");
    };
    let selection = match entry
        .get("search_params")
        .and_then(|p| p.get("version_id"))
        .and_then(Value::as_str)
    {
        Some(vid) => match app.versions.iter().find(|v| v.id == vid) {
            Some(v) => VersionSelection::Named(v),
            None => return nest_error(404, "Couldn't found app version"),
        },
        None => VersionSelection::Latest,
    };
    respond(
        201,
        export_json(app, &ws, &st.user_id, selection, &st.config.version),
    )
}

/// `POST /api/v2/resources/import` with `{organization_id, tooljet_version, app:[{definition,
/// appName}]}`: 201 `{imports:{app:[{id, name}], ...}, success:true}`; 400 when the version is
/// newer than the server or the name exists.
async fn resources_import(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let mut st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    if body.get("organization_id").and_then(Value::as_str) != Some(ws.id.as_str()) {
        return nest_error(403, "Forbidden resource");
    }
    let Some(version) = body.get("tooljet_version").and_then(Value::as_str) else {
        return nest_error(400, "tooljet_version must be a string");
    };
    if version_greater(version, &st.config.version) {
        return version_too_new(version, &st.config.version.clone());
    }
    let Some(entries) = body.get("app").and_then(Value::as_array) else {
        return nest_error(400, "app must be an array");
    };
    let mut wanted = Vec::new();
    for e in entries {
        let Some(def) = e.get("definition").filter(|d| d.is_object()) else {
            return nest_error(400, "definition must be an object");
        };
        let name = e
            .get("appName")
            .and_then(Value::as_str)
            .or_else(|| {
                def.get("appV2")
                    .and_then(|a| a.get("name"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("Untitled app")
            .to_string();
        if let Err(r) = check_name(&name) {
            return r.into_response();
        }
        if st.name_taken(&ws.id, &name, None) || wanted.iter().any(|(n, _)| n == &name) {
            return nest_error(400, "App name already exists");
        }
        wanted.push((name, def.clone()));
    }
    let mut imported = Vec::new();
    for (name, def) in wanted {
        match st.import_definition(&ws.id, &def, &name) {
            Ok(app) => imported.push(json!({"id": app.id, "name": app.name})),
            Err(e) => return nest_error(400, &e),
        }
    }
    respond(
        201,
        json!({"imports": {"app": imported, "tooljet_database": [], "tableNameMapping": {}}, "success": true}),
    )
}

// ---- External API v1 ----------------------------------------------------------------------

/// `GET /api/ext/workspaces`: `[{id, name, status, groups}]` (no slug, as documented).
async fn ext_workspaces(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, false) {
        return r.into_response();
    }
    let list: Vec<Value> = st
        .workspaces
        .iter()
        .map(|w| {
            json!({"id": w.id, "name": w.name, "status": "active",
                   "groups": [{"id": new_id(), "name": "all_users"}, {"id": new_id(), "name": "admin"}]})
        })
        .collect();
    respond(200, Value::Array(list))
}

fn ext_workspace<'a>(st: &'a Emu, id: &str) -> Result<&'a WorkspaceRec, Reject> {
    if !is_uuid(id) {
        return Err(reject(400, "workspaceId must be a UUID"));
    }
    st.workspace(id)
        .ok_or_else(|| reject(404, "Workspace not found"))
}

/// `GET /api/ext/workspace/:workspaceId/apps`: `[{id, name, slug, versions:[{id, name}]}]`.
async fn ext_apps(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(ws): Path<String>,
) -> Response {
    let st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, false) {
        return r.into_response();
    }
    let ws = match ext_workspace(&st, &ws) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let list: Vec<Value> = st
        .apps_in(&ws.id)
        .iter()
        .map(|a| {
            json!({"id": a.id, "name": a.name, "slug": a.slug,
                   "versions": a.versions.iter().map(|v| json!({"id": v.id, "name": v.name})).collect::<Vec<_>>()})
        })
        .collect();
    respond(200, Value::Array(list))
}

/// `POST /api/ext/export/workspace/:workspaceId/apps/:appId?appVersion=&exportAllVersions=`:
/// 201, export JSON; latest version by default.
async fn ext_export(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((ws, app)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, false) {
        return r.into_response();
    }
    let ws = match ext_workspace(&st, &ws) {
        Ok(w) => w.clone(),
        Err(r) => return r.into_response(),
    };
    let Some(app) = st.app_in(&ws.id, &app) else {
        return nest_error(404, "App not found");
    };
    let selection = if q.get("exportAllVersions").map(String::as_str) == Some("true") {
        VersionSelection::All
    } else if let Some(name) = q.get("appVersion") {
        match app.versions.iter().find(|v| &v.name == name) {
            Some(v) => VersionSelection::Named(v),
            None => return nest_error(404, "App version not found"),
        }
    } else {
        VersionSelection::Latest
    };
    respond(
        201,
        export_json(app, &ws, &st.user_id, selection, &st.config.version),
    )
}

/// `POST /api/ext/import/workspace/:workspaceId/apps` with the export plus `appName`: 201
/// `{message}`; 400 name "already taken", version too new, bad workspace; 500 without `app`.
async fn ext_import(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(ws): Path<String>,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, false) {
        return r.into_response();
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if !is_uuid(&ws) || st.workspace(&ws).is_none() {
        return nest_error(400, "Invalid workspace");
    }
    let Some(version) = body.get("tooljet_version").and_then(Value::as_str) else {
        return nest_error(400, "tooljet_version must be a string");
    };
    if version_greater(version, &st.config.version) {
        return version_too_new(version, &st.config.version.clone());
    }
    let Some(def) = body
        .get("app")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|a| a.get("definition"))
        .filter(|d| d.is_object())
        .cloned()
    else {
        return nest_error(500, "Internal server error");
    };
    let name = body
        .get("appName")
        .and_then(Value::as_str)
        .or_else(|| {
            def.get("appV2")
                .and_then(|a| a.get("name"))
                .and_then(Value::as_str)
        })
        .unwrap_or("Untitled app")
        .to_string();
    if let Err(r) = check_name(&name) {
        return r.into_response();
    }
    if st.name_taken(&ws, &name, None) {
        return nest_error(400, &format!("App name {name} is already taken"));
    }
    match st.import_definition(&ws, &def, &name) {
        Ok(_) => respond(
            201,
            json!({"message": format!("App imported successfully into workspace {ws}")}),
        ),
        Err(e) => nest_error(400, &e),
    }
}

// ---- External API v2 (newest EE) ----------------------------------------------------------

fn v2_app_json(app: &AppRec) -> Value {
    json!({"id": app.id, "name": app.name, "slug": app.slug, "folder_id": null,
           "created_at": app.created_at, "updated_at": app.updated_at})
}

/// `GET /api/v2/ext/workspaces/:workspaceIdentifier` (id → slug → name).
async fn v2_workspace(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(ws): Path<String>,
) -> Response {
    let st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, true) {
        return r.into_response();
    }
    match st.resolve_workspace(&ws) {
        Some(w) => respond(
            200,
            json!({"id": w.id, "name": w.name, "slug": w.slug, "status": "active"}),
        ),
        None => nest_error(404, "Workspace not found"),
    }
}

fn v2_target(st: &Emu, ws: &str, app: &str) -> Result<(String, String), Reject> {
    let w = st
        .resolve_workspace(ws)
        .ok_or_else(|| reject(404, "Workspace not found"))?;
    let a = st
        .resolve_app(&w.id, app)
        .ok_or_else(|| reject(404, "App not found"))?;
    Ok((w.id.clone(), a.id.clone()))
}

/// `GET /api/v2/ext/workspaces/:ws/apps/:app` → `{id, name, slug, folder_id}`.
async fn v2_get_app(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((ws, app)): Path<(String, String)>,
) -> Response {
    let st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, true) {
        return r.into_response();
    }
    match v2_target(&st, &ws, &app) {
        Ok((_, id)) => match st.app(&id) {
            Some(a) => respond(200, v2_app_json(a)),
            None => nest_error(404, "App not found"),
        },
        Err(r) => r.into_response(),
    }
}

/// `PATCH /api/v2/ext/workspaces/:ws/apps/:app` with `{name?, slug?, folder_id?}`: 200, 400
/// without fields, 409 on a taken name or slug.
async fn v2_patch_app(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((ws, app)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, true) {
        return r.into_response();
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let (ws_id, id) = match v2_target(&st, &ws, &app) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    let name = body.get("name").and_then(Value::as_str).map(str::to_string);
    let slug = body.get("slug").and_then(Value::as_str).map(str::to_string);
    if name.is_none() && slug.is_none() && body.get("folder_id").is_none() {
        return nest_error(400, "At least one of name, slug or folder_id is required");
    }
    if let Some(n) = &name {
        if let Err(r) = check_name(n) {
            return r.into_response();
        }
        if st.name_taken(&ws_id, n, Some(&id)) {
            return nest_error(409, &format!("An app named {n} already exists"));
        }
    }
    if let Some(sl) = &slug {
        if st.slug_taken(&ws_id, sl, Some(&id)) {
            return nest_error(409, &format!("Slug {sl} is already taken"));
        }
    }
    let Some(a) = st.app_mut(&id) else {
        return nest_error(404, "App not found");
    };
    if let Some(n) = name {
        a.name = n;
    }
    if let Some(sl) = slug {
        a.slug = sl;
    }
    a.updated_at = now();
    let out = v2_app_json(a);
    respond(200, out)
}

/// `DELETE /api/v2/ext/workspaces/:ws/apps/:app` → 204.
async fn v2_delete_app(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((ws, app)): Path<(String, String)>,
) -> Response {
    let mut st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, true) {
        return r.into_response();
    }
    match v2_target(&st, &ws, &app) {
        Ok((_, id)) => {
            st.apps.retain(|a| a.id != id);
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::NO_CONTENT.into_response())
        }
        Err(r) => r.into_response(),
    }
}
