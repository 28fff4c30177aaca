//! The ToolJet side of a GitSyncConfig: credentials from the referenced Secret, a client per
//! config (kept while the Secret and URL are unchanged, so session logins and the server
//! version are not repeated every interval), the server version and the workspace.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::{Context, Failure, Problem};
use crate::api::{GitSyncConfig, Reason, ToolJetStatus};
use crate::tooljet::{self, Credentials};

/// How long a client (and the server version it read) is reused: an upgraded ToolJet is seen
/// within this time, so imports are not refused as "too new" after the upgrade.
pub const CLIENT_MAX_AGE: Duration = Duration::from_secs(600);

/// A ready client and the resolved workspace.
#[derive(Clone, Debug)]
pub struct Connection {
    /// The client.
    pub client: tooljet::Client,
    /// The workspace of the config.
    pub workspace: tooljet::Workspace,
    /// ToolJet's version.
    pub version: String,
}

/// Returns a client for the config, building one when the URL or the Secret changed.
async fn client_for(gsc: &GitSyncConfig, ctx: &Context) -> Result<tooljet::Client, Failure> {
    let ns = gsc.namespace().unwrap_or_default();
    let secret_name = &gsc.spec.tooljet.credentials_secret_ref.name;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(secret) = secrets.get_opt(secret_name).await? else {
        return Err(Problem::retrying(
            Reason::CredentialsSecretNotFound,
            format!("the ToolJet credentials Secret {ns}/{secret_name} (spec.tooljet.credentialsSecretRef) does not exist: create it with key `token` (External API token) or keys `email` and `password`"),
        ).into());
    };
    let key = format!(
        "{ns}/{}|{}|{}|{}|{}",
        gsc.name_any(),
        gsc.spec.tooljet.url,
        gsc.spec.tooljet.allow_insecure_http,
        secret_name,
        secret.metadata.resource_version.clone().unwrap_or_default()
    );
    if let Some((_, c)) = ctx
        .tooljet_clients
        .lock()
        .ok()
        .and_then(|m| m.get(&key).cloned())
        .filter(|(made, _)| made.elapsed() < CLIENT_MAX_AGE)
    {
        return Ok(c);
    }
    let data: std::collections::BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let creds = Credentials::from_secret_data(&data).map_err(|e| {
        Problem::stalled(
            Reason::CredentialsInvalid,
            format!("Secret {ns}/{secret_name}: {e}"),
        )
    })?;
    let options = tooljet::ClientOptions {
        allow_insecure_http: gsc.spec.tooljet.allow_insecure_http,
        ..tooljet::ClientOptions::default()
    };
    let client = tooljet::Client::with_options(&gsc.spec.tooljet.url, creds, options)?;
    if let Ok(mut m) = ctx.tooljet_clients.lock() {
        let prefix = format!("{ns}/{}|", gsc.name_any());
        m.retain(|k, _| !k.starts_with(&prefix));
        m.insert(key, (Instant::now(), client.clone()));
    }
    Ok(client)
}

/// Connects: client, server version, workspace. `fresh` resolves the workspace now (the
/// config's own check); otherwise a resolution made by that check is reused, so AppSyncs
/// cost no workspace calls.
pub async fn connect(
    gsc: &GitSyncConfig,
    ctx: &Context,
    fresh: bool,
) -> Result<Connection, Failure> {
    let client = client_for(gsc, ctx).await?;
    let start = Instant::now();
    let version = client.server_version().await;
    ctx.metrics
        .tooljet_call("server_version", start.elapsed(), version.is_ok());
    let version = version?;
    let key = format!(
        "{}/{}|{}|{}",
        gsc.namespace().unwrap_or_default(),
        gsc.name_any(),
        gsc.spec.tooljet.url,
        gsc.spec.tooljet.workspace
    );
    if !fresh {
        let cached = ctx
            .tooljet_workspaces
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
            .filter(|(at, _)| at.elapsed() < CLIENT_MAX_AGE);
        if let Some((_, workspace)) = cached {
            return Ok(Connection {
                client,
                workspace,
                version,
            });
        }
    }
    let start = Instant::now();
    let ws = client.resolve_workspace(&gsc.spec.tooljet.workspace).await;
    ctx.metrics
        .tooljet_call("resolve_workspace", start.elapsed(), ws.is_ok());
    let Ok(mut cache) = ctx.tooljet_workspaces.lock() else {
        return Ok(Connection {
            client,
            workspace: ws?,
            version,
        });
    };
    match ws {
        Ok(workspace) => {
            cache.insert(key, (Instant::now(), workspace.clone()));
            Ok(Connection {
                client,
                workspace,
                version,
            })
        }
        Err(e) => {
            cache.remove(&key);
            Err(e.into())
        }
    }
}

/// What the ToolJet check of a GitSyncConfig reports in status.
pub fn tooljet_status(c: &Connection) -> ToolJetStatus {
    ToolJetStatus {
        version: Some(c.version.clone()),
        workspace_id: Some(c.workspace.id.clone()),
    }
}
