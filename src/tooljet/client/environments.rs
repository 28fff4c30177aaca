//! The environments of a workspace (development, staging, production; one `production` on old
//! Community Editions), so constants and data-source options can be written per environment
//! by name.

use reqwest::Method;

use super::http::invalid;
use super::transport::Call;
use super::Client;
use crate::tooljet::constants::parse_environments;
use crate::tooljet::error::RouteKind;
use crate::tooljet::{Environment, Error, Resource, Workspace};

impl Client {
    /// The enabled environments of `ws`, priority order (1 = development … 3 = production).
    ///
    /// Session: `GET /api/app-environments` → `{environments:[{id, name, priority, is_default,
    /// enabled, ...}]}` (`server/src/modules/app-environments/controller.ts`, `util.getAll`:
    /// enabled ones, `priority ASC`). Token: `GET /api/v2/ext/workspaces/:ws/environments` →
    /// `{data:[{id, name, priority}]}` (External API v2, `environments-v2.e2e-spec.ts`); there
    /// the highest priority counts as the default.
    pub async fn list_environments(&self, ws: &Workspace) -> Result<Vec<Environment>, Error> {
        let call = if self.token_mode() {
            Call::new(
                Method::GET,
                RouteKind::ExtV2,
                &["v2", "ext", "workspaces", &ws.id, "environments"],
            )
        } else {
            Call::new(Method::GET, RouteKind::Internal, &["app-environments"]).org(&ws.id)
        }
        .about(Resource::Workspace, &ws.name);
        let v = self.send_json(&call).await?;
        parse_environments(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }
}
