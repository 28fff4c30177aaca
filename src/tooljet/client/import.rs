//! Changing apps: importing an export (with its pre-checks: export version, name, size), and
//! the rename, delete and lock calls that imports and `replace_app` build on.

use reqwest::Method;
use serde_json::{json, Value};

use super::http::invalid;
use super::transport::Call;
use super::{Client, MAX_APP_NAME};
use crate::tooljet::error::{truncate, RouteKind};
use crate::tooljet::{version, wire, AppSummary, Error, Resource, Workspace};

impl Client {
    /// Checks the export's `tooljet_version` against the server's; returns the server version.
    pub(crate) async fn check_version(&self, export_version: &str) -> Result<String, Error> {
        let server = self.server_version().await?;
        match version::is_newer(export_version, &server) {
            Some(true) => Err(Error::VersionTooNew {
                export: truncate(export_version, version::MAX_LEN),
                server,
            }),
            Some(false) => Ok(server),
            None if version::parse(export_version).is_none() => Err(Error::InvalidExport {
                detail: format!(
                    "`tooljet_version` {:?} is not a version number",
                    truncate(export_version, version::MAX_LEN)
                ),
            }),
            // The server's own string is odd; let ToolJet apply its rule.
            None => Ok(server),
        }
    }

    /// Imports an export as a new app named `app_name`. Refused before any import call when the
    /// export's `tooljet_version` is newer than the server, when the name is taken, or when the
    /// body exceeds the limit.
    ///
    /// Token: `POST /api/ext/import/workspace/:workspaceId/apps` with the export plus `appName`
    /// → 201 `{message}` (reference §3), then the app list to learn the new id. Session:
    /// `POST /api/v2/resources/import` with `{organization_id, tooljet_version, app:[{definition,
    /// appName}], tooljet_database?}` → `{imports:{app:[{id, name}]}, success}`
    /// (`import-export-resources/controller.ts`), then `GET /api/apps/:id` and its versions.
    pub async fn import_app(
        &self,
        ws: &Workspace,
        export: &Value,
        app_name: &str,
    ) -> Result<AppSummary, Error> {
        self.within(
            || "importing the app".into(),
            self.checked_import(ws, export, app_name),
        )
        .await
    }

    async fn checked_import(
        &self,
        ws: &Workspace,
        export: &Value,
        app_name: &str,
    ) -> Result<AppSummary, Error> {
        let parts = wire::check_export(export).map_err(|detail| Error::InvalidExport { detail })?;
        check_app_name(app_name)?;
        let server = self.check_version(parts.tooljet_version).await?;
        let rows = self.app_rows_matching(ws, Some(app_name)).await?;
        if rows.iter().any(|a| a.name == app_name) {
            return Err(Error::NameConflict {
                name: app_name.to_string(),
                detail: "found in the app list before importing".into(),
            });
        }
        self.import_unchecked(ws, export, app_name, &server).await
    }

    /// Import without the pre-checks (callers did them).
    pub(crate) async fn import_unchecked(
        &self,
        ws: &Workspace,
        export: &Value,
        app_name: &str,
        server_version: &str,
    ) -> Result<AppSummary, Error> {
        let parts = wire::check_export(export).map_err(|detail| Error::InvalidExport { detail })?;
        if self.token_mode() {
            self.import_ext(ws, export, app_name, parts.tooljet_version, server_version)
                .await
        } else {
            self.import_session(ws, export, &parts, app_name, server_version)
                .await
        }
    }

    /// Token mode: the External API import, then the app list for the new app's id.
    async fn import_ext(
        &self,
        ws: &Workspace,
        export: &Value,
        app_name: &str,
        export_version: &str,
        server_version: &str,
    ) -> Result<AppSummary, Error> {
        let mut body = export.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("appName".into(), Value::String(app_name.to_string()));
        }
        let call = Call::new(
            Method::POST,
            RouteKind::Ext,
            &["ext", "import", "workspace", &ws.id, "apps"],
        )
        .about(Resource::Workspace, &ws.name)
        .naming(app_name)
        .versions(export_version, server_version)
        .json(&body)?;
        self.send(&call).await?;
        let rows = self.list_app_rows(ws).await?;
        rows.into_iter()
            .find(|a| a.name == app_name)
            .ok_or_else(|| {
                invalid(
                    &self.route_of(&call),
                    format!("the import succeeded but no app named {app_name:?} is listed"),
                )
            })
    }

    /// Session mode: the resources import, undone when ToolJet chose another name.
    async fn import_session(
        &self,
        ws: &Workspace,
        export: &Value,
        parts: &wire::ExportParts<'_>,
        app_name: &str,
        server_version: &str,
    ) -> Result<AppSummary, Error> {
        let mut body = json!({
            "organization_id": ws.id,
            "tooljet_version": parts.tooljet_version,
            "app": [{ "definition": parts.definition, "appName": app_name }],
        });
        if let Some(tables) = export.get("tooljet_database") {
            body["tooljet_database"] = tables.clone();
        }
        let call = Call::new(
            Method::POST,
            RouteKind::Internal,
            &["v2", "resources", "import"],
        )
        .org(&ws.id)
        .about(Resource::Workspace, &ws.name)
        .naming(app_name)
        .versions(parts.tooljet_version, server_version)
        .json(&body)?;
        let v = self.send_json(&call).await?;
        let (id, name) =
            wire::parse_session_import(&v).map_err(|d| invalid(&self.route_of(&call), d))?;
        if name != app_name {
            let name = self.quote(&name, 100);
            // Some ToolJet versions rename on conflict instead of failing; undo that.
            tracing::warn!(%name, "ToolJet imported under another name; removing it");
            if let Err(e) = self.delete_app(ws, &id).await {
                tracing::warn!(reason = %e.reason(), "could not remove the renamed import");
            }
            return Err(Error::NameConflict {
                name: app_name.to_string(),
                detail: format!("ToolJet imported the app as {name:?} instead"),
            });
        }
        self.app_by_id(ws, &id).await
    }

    /// Renames an app and sets its slug.
    ///
    /// Session: `PUT /api/apps/:id` with `{app:{name, slug}}` (`modules/apps/controller.ts`
    /// `update`, `AppUpdateDto`). Token: `PATCH /api/v2/ext/workspaces/:ws/apps/:app` with
    /// `{name, slug}` → 200, 409 on a taken name (ToolJet `apps-v2.e2e-spec.ts`).
    pub(crate) async fn rename_app(
        &self,
        ws: &Workspace,
        app_id: &str,
        name: &str,
        slug: &str,
    ) -> Result<(), Error> {
        let call = if self.token_mode() {
            Call::new(
                Method::PATCH,
                RouteKind::ExtV2,
                &["v2", "ext", "workspaces", &ws.id, "apps", app_id],
            )
            .json(&json!({ "name": name, "slug": slug }))?
        } else {
            Call::new(Method::PUT, RouteKind::Internal, &["apps", app_id])
                .org(&ws.id)
                .json(&json!({ "app": { "name": name, "slug": slug } }))?
        }
        .about(Resource::App, app_id)
        .naming(name);
        self.send(&call).await.map(|_| ())
    }

    /// Deletes an app; an app that is already gone counts as deleted.
    ///
    /// Session: `DELETE /api/apps/:id` (`modules/apps/controller.ts` `delete`). Token:
    /// `DELETE /api/v2/ext/workspaces/:ws/apps/:app` → 204 (`apps-v2.e2e-spec.ts`).
    pub(crate) async fn delete_app(&self, ws: &Workspace, app_id: &str) -> Result<(), Error> {
        let call = if self.token_mode() {
            Call::new(
                Method::DELETE,
                RouteKind::ExtV2,
                &["v2", "ext", "workspaces", &ws.id, "apps", app_id],
            )
        } else {
            Call::new(Method::DELETE, RouteKind::Internal, &["apps", app_id]).org(&ws.id)
        }
        .about(Resource::App, app_id);
        match self.send(&call).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Locks (`editable = false`) or unlocks an app the way ToolJet GitSync does for apps pulled
    /// from git (`app_git_sync.allow_editing`).
    ///
    /// Session: `PUT /api/app-git/:appId/configs` with `{allowEditing}` (reference §4 "Frozen
    /// apps"; `frontend/src/_services/git_sync.service.js` `updateAppEditState`,
    /// `AppGitUpdateDto` in `modules/app-git/dto/index.ts`); Enterprise with GitSync only, so a
    /// 404 means [`Error::FeatureUnavailable`]. Token: the External API has no such route, so
    /// this is always [`Error::FeatureUnavailable`] without a call.
    pub async fn set_app_editable(
        &self,
        ws: &Workspace,
        app_id: &str,
        editable: bool,
    ) -> Result<(), Error> {
        const FEATURE: &str = "Locking apps against editing (GitSync's allowEditing)";
        if self.token_mode() {
            return Err(Error::FeatureUnavailable {
                feature: FEATURE.into(),
                hint: "ToolJet's External API has no route for it; use `email` and `password` credentials on a ToolJet Enterprise with GitSync, or leave the app editable".into(),
            });
        }
        let call = Call::new(
            Method::PUT,
            RouteKind::Internal,
            &["app-git", app_id, "configs"],
        )
        .org(&ws.id)
        .about(Resource::App, app_id)
        .json(&json!({ "allowEditing": editable }))?;
        match self.send(&call).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) | Err(Error::InvalidResponse { .. }) => {
                Err(Error::FeatureUnavailable {
                    feature: FEATURE.into(),
                    hint: "PUT /api/app-git/:appId/configs is missing or refused it; it needs ToolJet Enterprise with a GitSync licence and GitSync configured for the workspace".into(),
                })
            }
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn check_app_name(name: &str) -> Result<(), Error> {
    let count = name.trim().chars().count();
    if count == 0 {
        return Err(Error::InvalidName {
            name: name.to_string(),
            detail: "it is empty".into(),
        });
    }
    if name.chars().count() > MAX_APP_NAME {
        return Err(Error::InvalidName {
            name: name.to_string(),
            detail: format!("ToolJet allows at most {MAX_APP_NAME} characters"),
        });
    }
    Ok(())
}
