//! The Kubernetes side of the declared values: reading the Secrets and ConfigMaps they come
//! from, and the operator's state Secret (hashes of what was written, never values).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::super::{Context, Error};
use super::plan::{self, AppliedValue};
use crate::api::{self, ConstantSource, GitSyncConfig};

/// The state Secret's key.
const STATE_KEY: &str = "state.json";
/// Label on the state Secret naming its GitSyncConfig.
pub const STATE_FOR_LABEL: &str = "gitsync.tooljet.io/values-of";

/// What was written before, per constant and environment, and per data source and environment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct State {
    #[serde(default)]
    pub(super) constants: BTreeMap<String, AppliedValue>,
    #[serde(default)]
    pub(super) data_sources: BTreeMap<String, String>,
}

/// Name of the operator's state Secret of a GitSyncConfig.
pub fn state_secret_name(gsc: &GitSyncConfig) -> String {
    let name = format!("{}-tooljet-values", gsc.name_any());
    if name.len() <= 253 {
        return name;
    }
    let digest = plan::value_hash("name", &SecretString::from(name.clone()));
    let head: String = gsc.name_any().chars().take(200).collect();
    format!("{head}-{}", digest.get(..16).unwrap_or_default())
}

pub(super) async fn read_source(
    ctx: &Context,
    ns: &str,
    c: &ConstantSource,
) -> Result<Option<Vec<(String, SecretString)>>, Error> {
    if let Some(s) = &c.secret_ref {
        return read_secret(ctx, ns, &s.name).await;
    }
    let Some(m) = &c.config_map_ref else {
        return Ok(None);
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cm) = api.get_opt(&m.name).await? else {
        return Ok(None);
    };
    Ok(Some(
        cm.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, SecretString::from(v)))
            .collect(),
    ))
}

/// A Secret's keys with their values (values that are not UTF-8 are skipped: ToolJet stores
/// text).
pub(super) async fn read_secret(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<Vec<(String, SecretString)>>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(s) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (k, v) in s.data.unwrap_or_default() {
        if let Ok(text) = String::from_utf8(v.0) {
            out.push((k, SecretString::from(text)));
        }
    }
    for (k, v) in s.string_data.unwrap_or_default() {
        if !out.iter().any(|(x, _)| x == &k) {
            out.push((k, SecretString::from(v)));
        }
    }
    Ok(Some(out))
}

/// The state, and the Secret it was read from (for an update that fails on a concurrent
/// change rather than losing it).
/// What [`read_state`] found.
pub(super) enum Stored {
    /// The state (empty when there is none yet) and the Secret it was read from.
    Found(State, Option<Box<Secret>>),
    /// A Secret of the state's name that is not the operator's: never read or overwritten.
    Taken(String),
}

pub(super) async fn read_state(ctx: &Context, gsc: &GitSyncConfig) -> Result<Stored, Error> {
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &gsc.namespace().unwrap_or_default());
    let Some(s) = api.get_opt(&state_secret_name(gsc)).await? else {
        return Ok(Stored::Found(State::default(), None));
    };
    if !owned_by(&s, gsc) {
        return Ok(Stored::Taken(s.name_any()));
    }
    let state = s
        .data
        .as_ref()
        .and_then(|d| d.get(STATE_KEY))
        .and_then(|b| serde_json::from_slice::<State>(&b.0).ok())
        .unwrap_or_default();
    Ok(Stored::Found(state, Some(Box::new(s))))
}

fn owned_by(s: &Secret, gsc: &GitSyncConfig) -> bool {
    s.labels().get(STATE_FOR_LABEL).map(String::as_str)
        == Some(super::super::appsyncset::plan::label_value(&gsc.name_any()).as_str())
        && s.labels().get(api::MANAGED_BY_LABEL).map(String::as_str) == Some(api::MANAGED_BY)
}

pub(super) async fn write_state(
    ctx: &Context,
    gsc: &GitSyncConfig,
    state: &State,
    existing: Option<Box<Secret>>,
) -> Result<(), Error> {
    let ns = gsc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let bytes = serde_json::to_vec(state)?;
    let data: BTreeMap<String, k8s_openapi::ByteString> =
        [(STATE_KEY.to_string(), k8s_openapi::ByteString(bytes))].into();
    match existing {
        Some(mut s) => {
            s.data = Some(data);
            s.metadata.managed_fields = None;
            api.replace(&s.name_any(), &PostParams::default(), &s)
                .await?;
        }
        None => {
            let mut s = Secret {
                data: Some(data),
                type_: Some("Opaque".into()),
                ..Default::default()
            };
            s.metadata.name = Some(state_secret_name(gsc));
            s.metadata.namespace = Some(ns);
            s.metadata.labels = Some(
                [
                    (
                        api::MANAGED_BY_LABEL.to_string(),
                        api::MANAGED_BY.to_string(),
                    ),
                    (
                        STATE_FOR_LABEL.to_string(),
                        super::super::appsyncset::plan::label_value(&gsc.name_any()),
                    ),
                ]
                .into(),
            );
            s.metadata.owner_references = Some(vec![OwnerReference {
                api_version: GitSyncConfig::api_version(&()).into_owned(),
                kind: GitSyncConfig::kind(&()).into_owned(),
                name: gsc.name_any(),
                uid: gsc.meta().uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }]);
            api.create(&PostParams::default(), &s).await?;
        }
    }
    Ok(())
}
