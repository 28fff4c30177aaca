//! Workspace constants: their names and kinds only (values are never read), so a pull can
//! report references the target workspace cannot resolve.

use reqwest::Method;

use super::http::invalid;
use super::transport::Call;
use super::Client;
use crate::tooljet::error::RouteKind;
use crate::tooljet::{wire, Error, Resource, Workspace, WorkspaceConstant};

impl Client {
    /// Names and kinds of the workspace constants (values are never read), so a pull can warn
    /// about `{{constants.X}}`/`{{secrets.X}}` references that do not resolve.
    ///
    /// Session: `GET /api/organization-constants` → `{constants:[{name, type, values}|{name}]}`
    /// (`modules/organization-constants/controller.ts`). Token: no External API route →
    /// [`Error::FeatureUnavailable`].
    pub async fn list_constants(&self, ws: &Workspace) -> Result<Vec<WorkspaceConstant>, Error> {
        if self.token_mode() {
            return Err(Error::FeatureUnavailable {
                feature: "Listing workspace constants".into(),
                hint: "ToolJet's External API has no route for constants; use `email` and `password` credentials".into(),
            });
        }
        let call = Call::new(
            Method::GET,
            RouteKind::Internal,
            &["organization-constants"],
        )
        .org(&ws.id)
        .about(Resource::Workspace, &ws.name);
        let v = self.send_json(&call).await?;
        wire::parse_constants(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }
}
