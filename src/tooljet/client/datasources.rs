//! Global data sources and their options per environment: find the data sources an import
//! created or reused, read one environment's options, and write the full option list back
//! (ToolJet replaces, never merges; see [`crate::tooljet::merge_options`]). Session
//! credentials only: the External API has no route to update options.

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Map, Value};

use super::http::invalid;
use super::transport::Call;
use super::Client;
use crate::tooljet::datasources::{parse_data_sources, parse_options};
use crate::tooljet::error::RouteKind;
use crate::tooljet::{DataSource, Error, OptionEntry, OptionValue, Resource, Workspace};

const SESSION_ONLY: &str = "ToolJet's External API cannot change data-source options (its data-source routes are read-only); give the credentials Secret the keys `email` and `password` instead of `token`";

impl Client {
    fn data_sources_need_session(&self, feature: &str) -> Result<(), Error> {
        if self.token_mode() {
            return Err(Error::FeatureUnavailable {
                feature: feature.into(),
                hint: SESSION_ONLY.into(),
            });
        }
        Ok(())
    }

    /// The global data sources of `ws`.
    ///
    /// Session: `GET /api/data-sources/:organizationId` → `{data_sources:[{id, name, kind,
    /// type, scope, plugin_id, organization_id, ..., options}]}` (`modules/data-sources/
    /// controller.ts`; `OrganizationValidateGuard` answers 403 for another workspace). The
    /// options there are ignored: they are the lowest-priority environment's only. Token →
    /// [`Error::FeatureUnavailable`].
    pub async fn list_data_sources(&self, ws: &Workspace) -> Result<Vec<DataSource>, Error> {
        self.data_sources_need_session("Listing data sources")?;
        let call = Call::new(Method::GET, RouteKind::Internal, &["data-sources", &ws.id])
            .org(&ws.id)
            .about(Resource::Workspace, &ws.name);
        let v = self.send_json(&call).await?;
        parse_data_sources(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// The options of data source `ds_id` in environment `env_id`, keyed by option name:
    /// `{"host": {"value": ..., "encrypted": false}, "password": {"credential_id": ...,
    /// "encrypted": true}, ...}`. Encrypted values are never returned by ToolJet (and dropped
    /// here should one be).
    ///
    /// Session: `GET /api/data-sources/:id/environment/:environment_id` → the entity
    /// (camelCase) with `options` as an object (`data-sources/service.ts`; git-sync e2e step
    /// 52). Unknown or foreign id → 404 ([`Error::NotFound`]). Token →
    /// [`Error::FeatureUnavailable`].
    pub async fn data_source_options(
        &self,
        ws: &Workspace,
        ds_id: &str,
        env_id: &str,
    ) -> Result<Map<String, Value>, Error> {
        self.data_sources_need_session("Reading data-source options")?;
        let call = Call::new(
            Method::GET,
            RouteKind::Internal,
            &["data-sources", ds_id, "environment", env_id],
        )
        .org(&ws.id)
        .about(Resource::Other, &format!("data source {ds_id}"));
        let v = self.send_json(&call).await?;
        parse_options(&v).map_err(|d| invalid(&self.route_of(&call), d))
    }

    /// Replaces the options of data source `ds_id` in environment `env_id` (every environment
    /// on a Community Edition) by exactly `options`: pass the full list, e.g. from
    /// [`crate::tooljet::merge_options`]. Only `options` is sent, never `name` (no rename, no
    /// name checks, and GitSync's "secrets-only edit" rule can pass).
    ///
    /// Session: `PUT /api/data-sources/:id?environment_id=` with `{options:[{key, value?,
    /// encrypted}]}` → 200, empty body (`data-sources/controller.ts` `update`,
    /// `util.service.ts` `updateOptions`/`parseOptionsForUpdate`). An encrypted entry without
    /// a value keeps the stored secret; restapi and microsoft_graph lose their OAuth
    /// `tokenData` on every PUT. Unknown or foreign id → 404; a sample data source → 400.
    /// Token → [`Error::FeatureUnavailable`].
    pub async fn update_data_source_options(
        &self,
        ws: &Workspace,
        ds_id: &str,
        env_id: &str,
        options: &[OptionEntry],
    ) -> Result<(), Error> {
        self.data_sources_need_session("Updating data-source options")?;
        let body = json!({
            "options": options.iter().map(OptionEntry::to_wire).collect::<Vec<_>>()
        });
        let mut call = Call::new(Method::PUT, RouteKind::Internal, &["data-sources", ds_id])
            .org(&ws.id)
            .query("environment_id", env_id)
            .about(Resource::Other, &format!("data source {ds_id}"));
        let secrets: Vec<&SecretString> = options
            .iter()
            .filter_map(|o| match &o.value {
                Some(OptionValue::Secret(s)) => Some(s),
                _ => None,
            })
            .collect();
        for s in secrets {
            call = call.secret(s);
        }
        let call = call.json(&body)?;
        self.send(&call).await.map(|_| ())
    }
}
