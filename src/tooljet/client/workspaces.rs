//! What the client connects to: ToolJet's version (read once) and the workspaces the
//! credentials can see, found by id, slug or name.

use reqwest::Method;
use serde_json::Value;

use super::http::invalid;
use super::transport::Call;
use super::Client;
use crate::tooljet::error::{truncate, RouteKind};
use crate::tooljet::{version, wire, Error, Resource, Workspace};

impl Client {
    /// ToolJet's version, read once and cached for the life of the client.
    ///
    /// Route: `GET /api/metadata` → `{installed_version}` (public; source
    /// `server/src/modules/meta/{controller,service}.ts`). Fallback when that is missing or
    /// refused: `tooljet_version` of an export of the first app found.
    pub async fn server_version(&self) -> Result<String, Error> {
        self.inner
            .version
            .get_or_try_init(|| {
                self.within(
                    || "reading the ToolJet version".into(),
                    self.fetch_version(),
                )
            })
            .await
            .cloned()
    }

    async fn fetch_version(&self) -> Result<String, Error> {
        let call = Call::new(Method::GET, RouteKind::Public, &["metadata"]);
        match self.send_json(&call).await {
            Ok(v) => match wire::parse_metadata_version(&v) {
                Some(ver) if version::is_usable(&ver) => return Ok(ver),
                _ => tracing::debug!("GET /api/metadata has no usable installed_version"),
            },
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => tracing::debug!(reason = %e.reason(), "GET /api/metadata failed"),
        }
        for ws in self.list_workspaces().await? {
            if let Some(app) = self.list_app_rows(&ws).await?.into_iter().next() {
                let export = self.export_raw(&ws, &app.id, None).await?;
                let found = export.get("tooljet_version").and_then(Value::as_str);
                if let Some(v) = found.filter(|v| version::is_usable(v)) {
                    return Ok(v.to_string());
                }
            }
        }
        Err(Error::FeatureUnavailable {
            feature: "Reading the ToolJet version".into(),
            hint: "GET /api/metadata gave no installed_version and no workspace has an app to export; check that spec.tooljet.url points at ToolJet".into(),
        })
    }

    /// All workspaces the credentials can see.
    ///
    /// Token: `GET /api/ext/workspaces` → `[{id, name, status, groups}]` (reference §3,
    /// `external-apis/Interfaces/IController.ts` `getAllWorkspaces`). Session:
    /// `GET /api/organizations` → `{organizations:[{id, name, slug, ...}], total_count}`
    /// (`server/src/modules/organizations/controller.ts`).
    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>, Error> {
        let call = if self.token_mode() {
            Call::new(Method::GET, RouteKind::Ext, &["ext", "workspaces"])
        } else {
            Call::new(Method::GET, RouteKind::Internal, &["organizations"])
        }
        .about(Resource::Workspace, "list");
        let v = self.send_json(&call).await?;
        wire::parse_workspaces(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// Finds a workspace by id, slug or name (ToolJet's own v2 resolution order).
    ///
    /// The External API v1 list has no slugs, so in token mode an unmatched identifier is tried
    /// with `GET /api/v2/ext/workspaces/:workspaceIdentifier` (newest EE; `external-apis/AGENTS.md`
    /// "resolveWorkspaceByIdentifier tries id → slug → name").
    pub async fn resolve_workspace(&self, ident: &str) -> Result<Workspace, Error> {
        self.within(
            || "finding the workspace".into(),
            self.find_workspace(ident),
        )
        .await
    }

    async fn find_workspace(&self, ident: &str) -> Result<Workspace, Error> {
        let list = self.list_workspaces().await?;
        if let Some(w) = wire::match_workspace(&list, ident) {
            return Ok(w.clone());
        }
        let known = truncate(
            &list
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            300,
        );
        let not_found = || {
            Error::NotFound {
            resource: Resource::Workspace,
            what: ident.to_string(),
            hint: format!(
                "no workspace has this id, slug or name (visible workspaces: {known}); fix spec.tooljet.workspace"
            ),
        }
        };
        if self.token_mode() {
            let call = Call::new(
                Method::GET,
                RouteKind::ExtV2,
                &["v2", "ext", "workspaces", ident.trim()],
            )
            .about(Resource::Workspace, ident);
            return match self.send_json(&call).await {
                Ok(v) => wire::parse_workspace(&v).map_err(|d| invalid(&self.route_of(&call), d)),
                Err(Error::NotFound { .. }) | Err(Error::FeatureUnavailable { .. }) => {
                    Err(not_found())
                }
                Err(e) => Err(e),
            };
        }
        Err(not_found())
    }
}
