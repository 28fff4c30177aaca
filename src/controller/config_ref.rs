//! An AppSync's GitSyncConfig, dereferenced once per pass: checked to exist, be enabled and
//! Ready, its spec validated, the repository access (key and trusted host keys) read from its
//! Secret, and the ToolJet connection made.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::connection::{self, Connection};
use super::gitsyncconfig::{self, is_generated_by, read_identity, Validated};
use super::{Context, Failure, Problem};
use crate::api::{self, types, AppSync, GitSyncConfig, Reason};
use crate::git::{CommitSigner, HostKeyPolicy, RepoUrl, Transport};
use crate::keys;

/// Everything an AppSync pass needs from its GitSyncConfig.
pub struct ResolvedConfig {
    /// The config as read in this pass.
    pub gsc: GitSyncConfig,
    /// Its spec, validated.
    pub valid: Validated,
    /// How to reach the repository: the deploy key and the trusted host keys.
    pub transport: Transport,
    /// The key commits are signed with (`spec.commitSigning`), read in this pass.
    pub signing: Option<Arc<CommitSigner>>,
    /// The ToolJet client and workspace.
    pub tooljet: Connection,
    /// The GitHub API base of the config's GitHub App, when it authenticates with one.
    pub app_api_base: Option<String>,
}

impl ResolvedConfig {
    /// The branch commits go to.
    pub fn branch(&self) -> &str {
        &self.gsc.spec.repository.branch
    }

    /// The repository URL.
    pub fn url(&self) -> &RepoUrl {
        &self.valid.url
    }

    /// `namespace/name` of the config, the prefix of its cache keys.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.gsc.namespace().unwrap_or_default(),
            self.gsc.name_any()
        )
    }
}

/// Resolves `spec.gitSyncConfigRef`'s namespace, refusing other namespaces unless allowed. Pure.
pub fn config_namespace(aps: &AppSync, allow_cross: bool) -> Result<String, Problem> {
    ref_namespace(
        &aps.namespace().unwrap_or_default(),
        &aps.spec.git_sync_config_ref,
        allow_cross,
    )
}

/// The namespace a `gitSyncConfigRef` of an object in `own` points to. Pure.
pub fn ref_namespace(own: &str, r: &api::ConfigRef, allow_cross: bool) -> Result<String, Problem> {
    let own = own.to_string();
    match r.namespace.as_deref() {
        None => Ok(own),
        Some(ns) if ns == own => Ok(own),
        Some(ns) if allow_cross => Ok(ns.to_string()),
        Some(ns) => Err(Problem::stalled(
            Reason::CrossNamespaceRefDenied,
            format!("spec.gitSyncConfigRef points to namespace {ns}, but the operator only allows GitSyncConfigs in the object's own namespace ({own}); move it, or start the operator with --allow-cross-namespace-refs"),
        )),
    }
}

/// Whether an AppSync can use the config: enabled and Ready. Pure.
pub fn usable(gsc: &GitSyncConfig) -> Result<(), Problem> {
    let id = format!(
        "GitSyncConfig {}/{}",
        gsc.namespace().unwrap_or_default(),
        gsc.name_any()
    );
    if !gsc.spec.enabled {
        return Err(Problem::retrying(
            Reason::GitSyncConfigDisabled,
            format!("{id} has spec.enabled: false, so nothing is committed or pulled"),
        ));
    }
    let ready = gsc
        .status
        .as_ref()
        .and_then(|s| api::find(&s.conditions, types::READY));
    match ready {
        Some(c) if c.is_true() => Ok(()),
        Some(c) => Err(Problem::retrying(
            Reason::GitSyncConfigNotReady,
            format!(
                "{id} is not Ready ({}: {}); this AppSync waits for it",
                c.reason, c.message
            ),
        )),
        None => Err(Problem::retrying(
            Reason::GitSyncConfigNotReady,
            format!("{id} has not been checked yet; this AppSync waits for it"),
        )),
    }
}

/// Dereferences the config. The interval comes back even when the config is unusable (a
/// disabled config is looked at again after its interval, not a backoff).
pub async fn dereference(
    aps: &AppSync,
    ctx: &Context,
) -> (Duration, Result<ResolvedConfig, Failure>) {
    dereference_ref(
        &aps.namespace().unwrap_or_default(),
        &aps.spec.git_sync_config_ref,
        ctx,
    )
    .await
}

/// [`dereference`] for any object in namespace `own` with a `gitSyncConfigRef` (AppSyncSets).
pub async fn dereference_ref(
    own: &str,
    r: &api::ConfigRef,
    ctx: &Context,
) -> (Duration, Result<ResolvedConfig, Failure>) {
    let mut interval = gitsyncconfig::DEFAULT_INTERVAL;
    let result = resolve(own, r, ctx, &mut interval).await;
    (interval, result)
}

async fn resolve(
    own: &str,
    r: &api::ConfigRef,
    ctx: &Context,
    interval: &mut Duration,
) -> Result<ResolvedConfig, Failure> {
    let ns = ref_namespace(own, r, ctx.options.allow_cross_namespace_refs)?;
    let name = &r.name;
    let Some(gsc) = Api::<GitSyncConfig>::namespaced(ctx.client.clone(), &ns)
        .get_opt(name)
        .await?
    else {
        return Err(Problem::retrying(
            Reason::GitSyncConfigNotFound,
            format!("GitSyncConfig {ns}/{name} (spec.gitSyncConfigRef) does not exist: create it or fix the reference"),
        ).into());
    };
    *interval = gitsyncconfig::interval_or_default(&gsc.spec.interval);
    usable(&gsc)?;
    let valid = gitsyncconfig::validate(&gsc.spec, &ctx.options)?;
    let tooljet = connection::connect(&gsc, ctx, false).await?;
    let (transport, key_secret, app_api_base) = repo_transport(&gsc, &valid, ctx).await?;
    // Read again (not taken from the config's status): a key that went missing or broke since
    // the config was last Ready stops the push here, and nothing is committed unsigned. A
    // signing key kept in the deploy key Secret is taken from the read just made.
    let signing = gitsyncconfig::load_signer(&gsc, ctx, key_secret.as_ref()).await?;
    Ok(ResolvedConfig {
        gsc,
        valid,
        transport,
        signing,
        tooljet,
        app_api_base,
    })
}

/// The key from the config's Secret and the host keys it trusts (pinned, recorded in the
/// Secret, or learned into status), with the Secret read; for HTTPS, the token (or App
/// token) from the credentials Secret, and no key Secret.
async fn repo_transport(
    gsc: &GitSyncConfig,
    valid: &Validated,
    ctx: &Context,
) -> Result<(Transport, Option<Secret>, Option<String>), Failure> {
    if valid.url.is_https() {
        let creds = super::https::credentials(gsc, ctx, &valid.url).await?;
        let api = creds.app.as_ref().map(|a| a.api_base.clone());
        return Ok((creds.transport, None, api));
    }
    let ns = gsc.namespace().unwrap_or_default();
    let name = gsc.key_secret_name();
    let Some(secret) = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?
    else {
        return Err(Problem::retrying(
            Reason::GitSyncConfigNotReady,
            format!(
                "the deploy key Secret {ns}/{name} of GitSyncConfig {} does not exist yet",
                gsc.name_any()
            ),
        )
        .into());
    };
    let generated = is_generated_by(&secret, gsc);
    let (_, private) = read_identity(&secret, &name, generated)?;
    let recorded = keys::known_hosts::trusted(
        valid.pinned_known_hosts.as_deref(),
        gitsyncconfig::data_str(&secret, "known_hosts").as_deref(),
        gsc.status
            .as_ref()
            .and_then(|s| s.learned_known_hosts.as_deref()),
        generated,
    );
    let is_file = matches!(valid.url, RepoUrl::File { .. });
    let host_keys = match recorded {
        Some(kh) => HostKeyPolicy::Pinned(kh),
        None if is_file => HostKeyPolicy::TrustOnFirstUse,
        None => {
            return Err(Problem::retrying(
                Reason::GitSyncConfigNotReady,
                format!(
                    "GitSyncConfig {} has not recorded the repository's host key yet",
                    gsc.name_any()
                ),
            )
            .into())
        }
    };
    Ok((
        Transport {
            private_key: (!is_file).then_some(private),
            host_keys,
            https: None,
        },
        Some(secret),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, GitSyncConfigStatus};

    fn aps(ns_ref: Option<&str>) -> AppSync {
        let mut a = AppSync::new(
            "x",
            api::AppSyncSpec {
                git_sync_config_ref: api::ConfigRef {
                    name: "c".into(),
                    namespace: ns_ref.map(String::from),
                },
                app: "A".into(),
                direction: api::Direction::Push,
                push: None,
                pull: None,
                suspend: false,
            },
        );
        a.metadata.namespace = Some("team".into());
        a
    }

    #[test]
    fn cross_namespace_refs_need_the_flag() {
        assert_eq!(config_namespace(&aps(None), false).unwrap(), "team");
        assert_eq!(config_namespace(&aps(Some("team")), false).unwrap(), "team");
        assert_eq!(
            config_namespace(&aps(Some("other")), false)
                .unwrap_err()
                .reason,
            Reason::CrossNamespaceRefDenied
        );
        assert_eq!(
            config_namespace(&aps(Some("other")), true).unwrap(),
            "other"
        );
    }

    #[test]
    fn only_enabled_ready_configs_are_usable() {
        let spec: api::GitSyncConfigSpec = serde_json::from_value(serde_json::json!({
            "repository": {"url": "git@h:r.git"},
            "tooljet": {"url": "http://t", "workspace": "w", "credentialsSecretRef": {"name": "c"}},
        }))
        .unwrap();
        let mut g = GitSyncConfig::new("c", spec);
        assert_eq!(
            usable(&g).unwrap_err().reason,
            Reason::GitSyncConfigNotReady
        );
        g.status = Some(GitSyncConfigStatus {
            conditions: vec![Condition::new(
                types::READY,
                false,
                Reason::AwaitingDeployKey,
                "add it",
            )],
            ..Default::default()
        });
        let p = usable(&g).unwrap_err();
        assert!(p.message.contains("AwaitingDeployKey") && !p.stalled);
        g.status.as_mut().unwrap().conditions =
            vec![Condition::new(types::READY, true, Reason::Ready, "")];
        assert!(usable(&g).is_ok());
        g.spec.enabled = false;
        assert_eq!(
            usable(&g).unwrap_err().reason,
            Reason::GitSyncConfigDisabled
        );
    }
}
