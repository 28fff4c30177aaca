//! The ToolJet side of a GitSyncConfig: credentials from the referenced Secret, a client per
//! config (kept while the Secret and URL are unchanged, so session logins and the server
//! version are not repeated every interval), the server version and the workspace.

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::{Context, Error, Problem};
use crate::api::{GitSyncConfig, ToolJetStatus};
use crate::tooljet::{self, Credentials};

/// How long a client (and the server version it read) is reused: an upgraded ToolJet is seen
/// within this time, so imports are not refused as "too new" after the upgrade.
pub const CLIENT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Forgets the client of a deleted GitSyncConfig.
pub fn forget(ctx: &Context, ns: &str, name: &str) {
    let prefix = format!("{ns}/{name}|");
    if let Ok(mut m) = ctx.tooljet_clients.lock() {
        m.retain(|k, _| !k.starts_with(&prefix));
    }
    if let Ok(mut m) = ctx.tooljet_workspaces.lock() {
        m.retain(|k, _| !k.starts_with(&prefix));
    }
}

/// A ready client and the resolved workspace.
pub struct Connection {
    /// The client.
    pub client: tooljet::Client,
    /// The workspace of the config.
    pub workspace: tooljet::Workspace,
    /// ToolJet's version.
    pub version: String,
}

/// Turns a client error into a condition problem.
pub fn problem_of(e: &tooljet::Error) -> Problem {
    Problem {
        reason: e.reason().to_string(),
        message: e.to_string(),
        stalled: !e.is_transient(),
    }
}

/// Returns a client for the config, building one when the URL or the Secret changed.
pub async fn client_for(
    gsc: &GitSyncConfig,
    ctx: &Context,
) -> Result<Result<tooljet::Client, Problem>, Error> {
    let ns = gsc.namespace().unwrap_or_default();
    let secret_name = &gsc.spec.tooljet.credentials_secret_ref.name;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(secret) = secrets.get_opt(secret_name).await? else {
        return Ok(Err(Problem::retrying(
            "CredentialsSecretNotFound",
            format!("the ToolJet credentials Secret {ns}/{secret_name} (spec.tooljet.credentialsSecretRef) does not exist: create it with key `token` (External API token) or keys `email` and `password`"),
        )));
    };
    let key = format!(
        "{ns}/{}|{}|{}|{}",
        gsc.name_any(),
        gsc.spec.tooljet.url,
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
        return Ok(Ok(c));
    }
    let data: std::collections::BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let creds = match Credentials::from_secret_data(&data) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Err(Problem::stalled(
                "CredentialsInvalid",
                format!("Secret {ns}/{secret_name}: {e}"),
            )))
        }
    };
    let client = match tooljet::Client::new(&gsc.spec.tooljet.url, creds) {
        Ok(c) => c,
        Err(e) => return Ok(Err(problem_of(&e))),
    };
    if let Ok(mut m) = ctx.tooljet_clients.lock() {
        let prefix = format!("{ns}/{}|", gsc.name_any());
        m.retain(|k, _| !k.starts_with(&prefix));
        m.insert(key, (std::time::Instant::now(), client.clone()));
    }
    Ok(Ok(client))
}

/// Connects: client, server version, workspace.
pub async fn connect(
    gsc: &GitSyncConfig,
    ctx: &Context,
) -> Result<Result<Connection, Problem>, Error> {
    connect_with(gsc, ctx, false).await
}

/// Connects; `fresh` resolves the workspace now (the config's own check), otherwise a
/// resolution made by that check is reused, so AppSyncs cost no workspace calls.
async fn connect_with(
    gsc: &GitSyncConfig,
    ctx: &Context,
    fresh: bool,
) -> Result<Result<Connection, Problem>, Error> {
    let client = match client_for(gsc, ctx).await? {
        Ok(c) => c,
        Err(p) => return Ok(Err(p)),
    };
    let start = Instant::now();
    let version = client.server_version().await;
    ctx.metrics
        .tooljet_call("server_version", start.elapsed(), version.is_ok());
    let version = match version {
        Ok(v) => v,
        Err(e) => return Ok(Err(problem_of(&e))),
    };
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
            return Ok(Ok(Connection {
                client,
                workspace,
                version,
            }));
        }
    }
    let start = Instant::now();
    let ws = client.resolve_workspace(&gsc.spec.tooljet.workspace).await;
    ctx.metrics
        .tooljet_call("resolve_workspace", start.elapsed(), ws.is_ok());
    match ws {
        Ok(workspace) => {
            if let Ok(mut m) = ctx.tooljet_workspaces.lock() {
                m.insert(key, (Instant::now(), workspace.clone()));
            }
            Ok(Ok(Connection {
                client,
                workspace,
                version,
            }))
        }
        Err(e) => {
            if let Ok(mut m) = ctx.tooljet_workspaces.lock() {
                m.remove(&key);
            }
            Ok(Err(problem_of(&e)))
        }
    }
}

/// The check behind `ToolJetReachable`.
pub async fn check(
    gsc: &GitSyncConfig,
    ctx: &Context,
) -> Result<Result<ToolJetStatus, Problem>, Error> {
    Ok(connect_with(gsc, ctx, true).await?.map(|c| ToolJetStatus {
        version: Some(c.version),
        workspace_id: Some(c.workspace.id),
    }))
}
