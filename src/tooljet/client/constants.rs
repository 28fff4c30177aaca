//! Workspace constants: their names and kinds (so a pull can report references the target
//! workspace cannot resolve), and writing them per environment (`/api/organization-constants`,
//! internal routes only: ToolJet's External API has none). Values travel as [`SecretString`],
//! are redacted from anything quoted back, and are never logged.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::http::invalid;
use super::transport::Call;
use super::Client;
use crate::tooljet::constants::{parse_constant_entries, parse_constant_id};
use crate::tooljet::error::RouteKind;
use crate::tooljet::{
    check_constant_name, check_constant_value, wire, ConstantEntry, ConstantKind, Error, Resource,
    Workspace, WorkspaceConstant,
};

/// Why constants need session credentials.
const SESSION_ONLY: &str = "ToolJet's External API has no route for workspace constants; give the credentials Secret the keys `email` and `password` (a ToolJet admin or a user with the constants permission) instead of `token`";

impl Client {
    fn constants_need_session(&self, feature: &str) -> Result<(), Error> {
        if self.token_mode() {
            return Err(Error::FeatureUnavailable {
                feature: feature.into(),
                hint: SESSION_ONLY.into(),
            });
        }
        Ok(())
    }

    /// Names and kinds of the workspace constants (values are never read), so a pull can warn
    /// about `{{constants.X}}`/`{{secrets.X}}` references that do not resolve.
    ///
    /// Session: `GET /api/organization-constants` → `{constants:[{name, type, values}|{name}]}`
    /// (`modules/organization-constants/controller.ts`). Token: no External API route →
    /// [`Error::FeatureUnavailable`].
    pub async fn list_constants(&self, ws: &Workspace) -> Result<Vec<WorkspaceConstant>, Error> {
        self.constants_need_session("Listing workspace constants")?;
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

    /// Every constant of `ws` with its id as seen in environment `env_id` (the CE way to find
    /// a secret's id). Secrets come back masked: they are marked `value_masked` and carry no
    /// value.
    ///
    /// Session: `GET /api/organization-constants/environment/:environmentId` →
    /// `{constants:[{id, name, type, value}]}` (`organization-constants/controller.ts`
    /// `get_from_environment`; Secret values are `'**********'`). Token: no route →
    /// [`Error::FeatureUnavailable`].
    pub async fn constants_in_environment(
        &self,
        ws: &Workspace,
        env_id: &str,
    ) -> Result<Vec<ConstantEntry>, Error> {
        self.constants_need_session("Reading workspace constants")?;
        let call = Call::new(
            Method::GET,
            RouteKind::Internal,
            &["organization-constants", "environment", env_id],
        )
        .org(&ws.id)
        .about(Resource::Other, &format!("environment {env_id}"));
        let v = self.send_json(&call).await?;
        parse_constant_entries(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// Creates constant `name` of `kind` with `value` in the environments `env_ids`; returns
    /// its id. The name and value are checked as ToolJet would first
    /// ([`Error::InvalidConstant`], nothing sent). On a Community Edition ToolJet writes the
    /// value to every environment whatever `env_ids` says.
    ///
    /// Session: `POST /api/organization-constants` with `{constant_name, value, type,
    /// environments}` → 201 `{constant:{id, constant_name, ...}}` (`dto/index.ts`
    /// `CreateOrganizationConstantDto`, `service.ts` `create`); the same name and type again →
    /// 422 `Already exists!` (unique `(constant_name, organization_id, type)`), mapped to a
    /// [`Error::Rejected`] naming the constant. Token → [`Error::FeatureUnavailable`].
    pub async fn create_constant(
        &self,
        ws: &Workspace,
        name: &str,
        kind: ConstantKind,
        value: &SecretString,
        env_ids: &[String],
    ) -> Result<String, Error> {
        self.constants_need_session("Writing workspace constants")?;
        check_constant_name(name)?;
        check_constant_value(name, value)?;
        if env_ids.is_empty() || env_ids.iter().any(|e| e.trim().is_empty()) {
            return Err(Error::InvalidConstant {
                key: name.to_string(),
                detail: "no environment to write it to".into(),
            });
        }
        let body = json!({
            "constant_name": name,
            "value": value.expose_secret(),
            "type": kind.as_tooljet(),
            "environments": env_ids,
        });
        let call = Call::new(
            Method::POST,
            RouteKind::Internal,
            &["organization-constants"],
        )
        .org(&ws.id)
        .about(Resource::Other, &format!("constant {name}"))
        .secret(value)
        .json(&body)?;
        let v = match self.send_json(&call).await {
            Ok(v) => v,
            Err(Error::Rejected {
                status: 422,
                route,
                detail,
            }) => {
                return Err(Error::Rejected {
                    status: 422,
                    route,
                    detail: format!(
                        "a {} constant named {name:?} already exists in the workspace (ToolJet: {detail}); update it instead",
                        kind.as_tooljet()
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        parse_constant_id(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// Sets the value of constant `id` in environment `env_id` (every environment on a
    /// Community Edition). The value is checked as ToolJet would first.
    ///
    /// Session: `PATCH /api/organization-constants/:id` with `{value, environment_id}` → 200
    /// `{constant}` (`UpdateOrganizationConstantDto`; both fields are sent, as the DTO has no
    /// `@IsOptional`). An unknown or foreign id is a plain `Error('Constant not found')` that
    /// ToolJet answers with 500; it becomes [`Error::NotFound`]. Token →
    /// [`Error::FeatureUnavailable`].
    pub async fn update_constant(
        &self,
        ws: &Workspace,
        id: &str,
        value: &SecretString,
        env_id: &str,
    ) -> Result<(), Error> {
        self.constants_need_session("Writing workspace constants")?;
        check_constant_value(&format!("id {id}"), value)?;
        let body = json!({"value": value.expose_secret(), "environment_id": env_id});
        let call = Call::new(
            Method::PATCH,
            RouteKind::Internal,
            &["organization-constants", id],
        )
        .org(&ws.id)
        .about(Resource::Other, &format!("constant {id}"))
        .secret(value)
        .json(&body)?;
        let v = self
            .send_json(&call)
            .await
            .map_err(|e| constant_not_found(e, id))?;
        parse_constant_id(&v)
            .map(|_| ())
            .map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// Deletes constant `id`; with `env_id`, ToolJet deletes it for that environment (EE
    /// removes the whole constant, CE blanks that environment's value).
    ///
    /// Session: `DELETE /api/organization-constants/:id[?environmentId=]` → 200 with body
    /// `{"statusCode":204}` (an empty 200, as 2.x answered, is accepted too); unknown → 500
    /// `Constant not found` → [`Error::NotFound`]. Token → [`Error::FeatureUnavailable`].
    pub async fn delete_constant(
        &self,
        ws: &Workspace,
        id: &str,
        env_id: Option<&str>,
    ) -> Result<(), Error> {
        self.constants_need_session("Deleting workspace constants")?;
        let mut call = Call::new(
            Method::DELETE,
            RouteKind::Internal,
            &["organization-constants", id],
        )
        .org(&ws.id)
        .about(Resource::Other, &format!("constant {id}"));
        if let Some(env) = env_id {
            call = call.query("environmentId", env);
        }
        let v = self
            .send_json(&call)
            .await
            .map_err(|e| constant_not_found(e, id))?;
        match v.get("statusCode").and_then(serde_json::Value::as_u64) {
            None | Some(200..=299) => Ok(()),
            Some(other) => Err(invalid(
                &self.route_of(&call),
                format!("the delete answered statusCode {other}"),
            )),
        }
    }
}

/// ToolJet throws plain `Error`s for a missing constant or environment value, which its
/// exception filter answers with 500: that is not a server fault worth retrying.
fn constant_not_found(e: Error, id: &str) -> Error {
    match e {
        Error::Server {
            status: 500,
            route,
            detail,
        } if detail.contains("not found") => Error::NotFound {
            resource: Resource::Other,
            what: format!("constant {id}"),
            hint: format!("ToolJet answered 500 on {route}: {detail}; list the constants again, it may have been deleted"),
        },
        other => other,
    }
}
