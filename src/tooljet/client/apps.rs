//! Reading apps: the app list (with versions), finding one app, and exporting it. Only
//! reads, so the version lookup and imports can build on it.

use reqwest::Method;
use serde_json::{json, Value};

use super::http::invalid;
use super::transport::Call;
use super::Client;
use crate::tooljet::error::{truncate, RouteKind};
use crate::tooljet::{wire, AppSummary, AppVersion, Error, Resource, Workspace};

/// Safety stop for paginated listings.
const MAX_PAGES: u64 = 1000;

impl Client {
    /// All apps of the workspace (type `front-end`), with their versions.
    ///
    /// Token: `GET /api/ext/workspace/:workspaceId/apps` → `[{id, name, slug, versions:[{id,
    /// name}]}]` (reference §3; ToolJet docs "Get All App Details"). Session: `GET
    /// /api/apps?page=N&type=front-end` → `{meta:{total_pages}, apps}` for every page
    /// (`modules/apps/controller.ts` `index`, 9 per page), then `GET /api/apps/:id/versions` →
    /// `{versions}` per app (`modules/versions/controller.ts` `fetchVersions`).
    pub async fn list_apps(&self, ws: &Workspace) -> Result<Vec<AppSummary>, Error> {
        self.within(|| "listing the apps with their versions".into(), async {
            let mut apps = self.list_app_rows(ws).await?;
            if !self.token_mode() {
                for app in &mut apps {
                    app.versions = self.app_versions(ws, &app.id).await?;
                }
            }
            Ok(apps)
        })
        .await
    }

    /// Apps without the per-app version calls of session mode; every page within one
    /// deadline.
    pub async fn list_app_rows(&self, ws: &Workspace) -> Result<Vec<AppSummary>, Error> {
        self.within(|| "listing the apps".into(), self.app_rows(ws))
            .await
    }

    async fn app_rows(&self, ws: &Workspace) -> Result<Vec<AppSummary>, Error> {
        self.app_rows_matching(ws, None).await
    }

    /// The apps whose names contain `search` (case-insensitive), or all apps. Session mode
    /// passes ToolJet's `searchKey` (`getAllApps`: `LOWER(name) LIKE %key%`), so one page
    /// usually answers instead of the whole workspace; what it returns is a superset of the
    /// exact matches callers look for, which they pick themselves. Token mode lists all apps
    /// in one call either way, filtered here.
    pub(crate) async fn app_rows_matching(
        &self,
        ws: &Workspace,
        search: Option<&str>,
    ) -> Result<Vec<AppSummary>, Error> {
        let wanted = search.map(str::to_lowercase);
        let keep = |a: &AppSummary| {
            wanted
                .as_deref()
                .is_none_or(|w| a.name.to_lowercase().contains(w))
        };
        if self.token_mode() {
            let call = Call::new(
                Method::GET,
                RouteKind::Ext,
                &["ext", "workspace", &ws.id, "apps"],
            )
            .about(Resource::Workspace, &ws.name);
            let reply = self.send(&call).await?;
            let apps =
                wire::parse_ext_apps(&reply.body).map_err(|d| invalid(&self.route_of(&call), d))?;
            return Ok(apps.into_iter().filter(keep).collect());
        }
        let mut all: Vec<AppSummary> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut page = 1u64;
        loop {
            let mut call = Call::new(Method::GET, RouteKind::Internal, &["apps"])
                .org(&ws.id)
                .query("page", &page.to_string())
                .query("type", "front-end")
                .about(Resource::Workspace, &ws.name);
            if let Some(key) = search {
                call = call.query("searchKey", key);
            }
            let v = self.send_json(&call).await?;
            let (apps, pages) =
                wire::parse_internal_app_page(&v).map_err(|d| invalid(&self.route_of(&call), d))?;
            let before = all.len();
            for app in apps {
                // A page may repeat apps when others are created meanwhile.
                if seen.insert(app.id.clone()) {
                    all.push(app);
                }
            }
            match wire::next_page(page, pages, all.len() > before, MAX_PAGES) {
                Some(next) => page = next,
                None => break,
            }
        }
        all.retain(keep);
        Ok(all)
    }

    /// The apps any of `searches` (name substrings) finds, plus the apps of `ids` they did not
    /// find: a superset of what a caller deciding by exact names and ids needs, without listing
    /// the whole workspace in session mode (one search per key, one lookup per missing id).
    pub async fn scoped_app_rows(
        &self,
        ws: &Workspace,
        searches: &[&str],
        ids: &[&str],
    ) -> Result<Vec<AppSummary>, Error> {
        self.within(|| "looking up apps".into(), async {
            if self.token_mode() {
                return self.app_rows(ws).await;
            }
            let mut found: Vec<AppSummary> = Vec::new();
            let mut keys: Vec<&str> = searches.iter().copied().filter(|k| !k.is_empty()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                for app in self.app_rows_matching(ws, Some(key)).await? {
                    if !found.iter().any(|a| a.id == app.id) {
                        found.push(app);
                    }
                }
            }
            for id in ids {
                if found.iter().any(|a| a.id.eq_ignore_ascii_case(id)) {
                    continue;
                }
                if let Some(app) = self.app_row_by_id(ws, id).await? {
                    found.push(app);
                }
            }
            Ok(found)
        })
        .await
    }

    /// One app by id without its versions, `None` when the workspace has no such app. Session:
    /// `GET /api/apps/:id` (404 when absent); should a ToolJet refuse that lookup otherwise,
    /// or answer with another workspace's app, the full listing decides. Token: the listing.
    async fn app_row_by_id(&self, ws: &Workspace, id: &str) -> Result<Option<AppSummary>, Error> {
        if !self.token_mode() {
            let call = Call::new(Method::GET, RouteKind::Internal, &["apps", id])
                .org(&ws.id)
                .about(Resource::App, id);
            match self.send_json(&call).await {
                Ok(v) => {
                    let org = v.get("organization_id").and_then(Value::as_str);
                    if org.is_none_or(|o| o.eq_ignore_ascii_case(&ws.id)) {
                        let app = wire::parse_app_object(&v)
                            .map_err(|d| invalid(&self.route_of(&call), d))?;
                        return Ok(Some(app));
                    }
                }
                Err(Error::NotFound { .. }) => return Ok(None),
                Err(Error::Rejected { .. } | Error::InvalidResponse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let rows = self.app_rows(ws).await?;
        Ok(rows.into_iter().find(|a| a.id.eq_ignore_ascii_case(id)))
    }

    /// Session mode: `GET /api/apps/:id/versions`.
    pub(crate) async fn app_versions(
        &self,
        ws: &Workspace,
        app_id: &str,
    ) -> Result<Vec<AppVersion>, Error> {
        let call = Call::new(
            Method::GET,
            RouteKind::Internal,
            &["apps", app_id, "versions"],
        )
        .org(&ws.id)
        .about(Resource::App, app_id);
        let v = self.send_json(&call).await?;
        wire::parse_versions(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// Finds an app: `"id:<uuid>"` or a bare UUID by id (a UUID that matches no id is tried as
    /// a name), anything else by exact name. Same routes as [`Client::list_apps`].
    /// In session mode only the app (by id) or the apps whose names contain it are read, not
    /// the whole workspace.
    pub async fn find_app(&self, ws: &Workspace, ident: &str) -> Result<Option<AppSummary>, Error> {
        self.within(|| "finding the app".into(), async {
            let rows = if self.token_mode() {
                self.app_rows(ws).await?
            } else {
                match wire::parse_app_ident(ident) {
                    wire::AppIdent::Id(id) => {
                        let mut rows: Vec<AppSummary> =
                            self.app_row_by_id(ws, &id).await?.into_iter().collect();
                        if rows.is_empty() && !ident.starts_with("id:") {
                            rows = self.app_rows_matching(ws, Some(ident)).await?;
                        }
                        rows
                    }
                    wire::AppIdent::Name(name) => self.app_rows_matching(ws, Some(&name)).await?,
                }
            };
            let Some(found) = wire::match_app(&rows, ident).cloned() else {
                return Ok(None);
            };
            self.with_versions(ws, found).await.map(Some)
        })
        .await
    }

    pub(crate) async fn with_versions(
        &self,
        ws: &Workspace,
        mut app: AppSummary,
    ) -> Result<AppSummary, Error> {
        if !self.token_mode() {
            app.versions = self.app_versions(ws, &app.id).await?;
        }
        Ok(app)
    }

    /// Exports one app, as ToolJet returns it (`{app:[{definition:{appV2}}], tooljet_version}`).
    /// `version` is a version name or id; `None` exports ToolJet's default (latest) version.
    ///
    /// Token: `POST /api/ext/export/workspace/:workspaceId/apps/:appId?appVersion=<name>`
    /// (reference §3; docs "Export Application"; the version is passed by name as in ToolJet's
    /// Cypress tests). Session: `POST /api/v2/resources/export` with `{organization_id,
    /// app:[{id, search_params:{version_id}}]}` (`import-export-resources/controller.ts`,
    /// `dto/export-resources.dto.ts`).
    pub async fn export_app(
        &self,
        ws: &Workspace,
        app_id: &str,
        version: Option<&str>,
    ) -> Result<Value, Error> {
        let export = self
            .within(
                || "exporting the app".into(),
                self.export_raw(ws, app_id, version),
            )
            .await?;
        let route = if self.token_mode() {
            "POST /api/ext/export"
        } else {
            "POST /api/v2/resources/export"
        };
        if export.get("app").and_then(Value::as_array).is_none() {
            return Err(invalid(route, "the export has no `app` list"));
        }
        if export
            .get("tooljet_version")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(invalid(route, "the export has no `tooljet_version`"));
        }
        Ok(export)
    }

    pub(crate) async fn export_raw(
        &self,
        ws: &Workspace,
        app_id: &str,
        version: Option<&str>,
    ) -> Result<Value, Error> {
        if self.token_mode() {
            let mut call = Call::new(
                Method::POST,
                RouteKind::Ext,
                &["ext", "export", "workspace", &ws.id, "apps", app_id],
            )
            .idempotent()
            .export_answer()
            .about(Resource::App, app_id);
            if let Some(wanted) = version {
                let apps = self.list_app_rows(ws).await?;
                let app = apps
                    .iter()
                    .find(|a| a.id.eq_ignore_ascii_case(app_id))
                    .ok_or_else(|| app_not_found(app_id, &ws.name))?;
                let v = wire::match_version(&app.versions, wanted)
                    .ok_or_else(|| version_not_found(wanted, &app.name, &app.versions))?;
                call = call.query("appVersion", &v.name);
            }
            return self.send_json(&call).await;
        }
        let mut entry = json!({ "id": app_id });
        if let Some(wanted) = version {
            let versions = self.app_versions(ws, app_id).await?;
            let v = wire::match_version(&versions, wanted)
                .ok_or_else(|| version_not_found(wanted, app_id, &versions))?;
            entry["search_params"] = json!({ "version_id": v.id });
        }
        let call = Call::new(
            Method::POST,
            RouteKind::Internal,
            &["v2", "resources", "export"],
        )
        .org(&ws.id)
        .idempotent()
        .export_answer()
        .about(Resource::App, app_id)
        .json(&json!({ "organization_id": ws.id, "app": [entry] }))?;
        self.send_json(&call).await
    }

    /// Session mode: `GET /api/apps/:id` (`modules/apps/controller.ts` `show`) plus versions;
    /// token mode: from the app list.
    pub(crate) async fn app_by_id(&self, ws: &Workspace, id: &str) -> Result<AppSummary, Error> {
        if self.token_mode() {
            let rows = self.list_app_rows(ws).await?;
            return rows
                .into_iter()
                .find(|a| a.id.eq_ignore_ascii_case(id))
                .ok_or_else(|| app_not_found(id, &ws.name));
        }
        let call = Call::new(Method::GET, RouteKind::Internal, &["apps", id])
            .org(&ws.id)
            .about(Resource::App, id);
        let v = self.send_json(&call).await?;
        let app = wire::parse_app_object(&v).map_err(|d| invalid(&self.route_of(&call), d))?;
        self.with_versions(ws, app).await
    }
}

pub(crate) fn app_not_found(ident: &str, ws_name: &str) -> Error {
    Error::NotFound {
        resource: Resource::App,
        what: ident.to_string(),
        hint: format!("no such app in workspace {ws_name:?}; check the AppSync's spec.app"),
    }
}

fn version_not_found(wanted: &str, app: &str, versions: &[AppVersion]) -> Error {
    Error::NotFound {
        resource: Resource::Version,
        what: wanted.to_string(),
        hint: format!(
            "app {app:?} has no version with this name or id (versions: {}); fix spec.push.version",
            truncate(
                &versions
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                200
            )
        ),
    }
}
