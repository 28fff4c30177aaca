//! The webhook part of a GitSyncConfig pass: read the token from the Secret `spec.webhook`
//! names, register the config with the receiver under its path, and report the path and a
//! `WebhookReady` condition (which never makes the config un-Ready: without deliveries the
//! interval still checks the repository).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::super::report::Note;
use super::super::{key_of, Context, Error};
use crate::api::{Condition, GitSyncConfig, Reason, WebhookStatus};
use crate::git::worker::WorkerHandle;
use crate::git::Transport;
use crate::metrics::Metrics;
use crate::webhook::{Checker, HookTarget};

/// Condition type of the webhook part.
pub const WEBHOOK_READY: &str = "WebhookReady";
/// Key of the token in the webhook Secret (Flux's name).
pub const TOKEN_KEY: &str = "token";

/// What the webhook part reports.
#[derive(Default)]
pub struct WebhookOutcome {
    /// `status.webhook`.
    pub status: Option<WebhookStatus>,
    /// The `WebhookReady` condition, when a webhook is asked for.
    pub condition: Option<Condition>,
    /// Events.
    pub notes: Vec<Note>,
}

/// A check the receiver runs: a fetch now by the repository's worker, with the config's key.
struct WorkerCheck {
    worker: WorkerHandle,
    transport: Transport,
    metrics: Arc<Metrics>,
    config: String,
}

impl Checker for WorkerCheck {
    fn check(&self) -> BoxFuture<'static, Option<BTreeMap<String, String>>> {
        let (worker, transport) = (self.worker.clone(), self.transport.clone());
        let (metrics, config) = (self.metrics.clone(), self.config.clone());
        Box::pin(async move {
            let start = std::time::Instant::now();
            let r = worker.refresh(transport).await;
            metrics.git_op("webhook_fetch", start.elapsed(), r.is_ok());
            metrics.webhook_check();
            match r {
                Ok(refs) => Some(refs),
                Err(e) => {
                    tracing::info!(config = %config, error = %e, "webhook check failed; the config's next pass reports why");
                    None
                }
            }
        })
    }
}

/// Whether `name` is the config's webhook Secret (a change of it re-runs the config).
pub fn references(gsc: &GitSyncConfig, name: &str) -> bool {
    gsc.spec
        .webhook
        .as_ref()
        .is_some_and(|w| w.secret_ref.name == name)
}

/// The token as the git host has it: surrounding whitespace (a newline `echo` or a file left)
/// is not part of what users type into the host's form.
fn token_of(secret: &Secret) -> Option<Vec<u8>> {
    let raw = secret.data.as_ref()?.get(TOKEN_KEY)?;
    let s = std::str::from_utf8(&raw.0).ok()?;
    Some(s.trim().as_bytes().to_vec())
}

fn problem(prev: Option<&Condition>, reason: Reason, message: String) -> WebhookOutcome {
    let same = prev.is_some_and(|p| p.reason == reason.as_str() && p.status == "False");
    WebhookOutcome {
        status: None,
        condition: Some(Condition::new(
            WEBHOOK_READY,
            false,
            reason,
            message.clone(),
        )),
        notes: if same {
            Vec::new()
        } else {
            vec![Note::warning(reason, message)]
        },
    }
}

/// Registers the config with the receiver (or forgets it), once the repository check ran.
/// `transport` is `None` unless that check succeeded: a config that cannot read its repository
/// gets no deliveries (nor makes its worker fetch for them).
pub async fn apply(
    gsc: &GitSyncConfig,
    ctx: &Context,
    url: &crate::git::RepoUrl,
    transport: Option<&Transport>,
    prev: Option<&Condition>,
) -> Result<WebhookOutcome, Error> {
    let config = key_of(gsc);
    let Some(spec) = &gsc.spec.webhook else {
        ctx.hooks.unregister(&config);
        return Ok(WebhookOutcome::default());
    };
    let ns = gsc.namespace().unwrap_or_default();
    let name = &spec.secret_ref.name;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(name)
        .await?;
    let token = match secret.as_ref().map(token_of) {
        None => {
            ctx.hooks.unregister(&config);
            return Ok(problem(prev, Reason::WebhookSecretNotFound, format!("the webhook Secret {ns}/{name} does not exist: create it with the key `{TOKEN_KEY}` holding the secret you enter at the git host (e.g. `kubectl -n {ns} create secret generic {name} --from-literal={TOKEN_KEY}=$(openssl rand -hex 24)`)")));
        }
        Some(None) => {
            ctx.hooks.unregister(&config);
            return Ok(problem(prev, Reason::WebhookSecretNotFound, format!("the webhook Secret {ns}/{name} has no UTF-8 key `{TOKEN_KEY}`: add the secret you enter at the git host under that key")));
        }
        Some(Some(t)) => t,
    };
    if !(16..=1024).contains(&token.len()) {
        ctx.hooks.unregister(&config);
        return Ok(problem(prev, Reason::WebhookSecretInvalid, format!("the webhook token in Secret {ns}/{name} key `{TOKEN_KEY}` is {} bytes long; use 16 to 1024 (e.g. `openssl rand -hex 24`) and enter the same value at the git host", token.len())));
    }
    let path = crate::webhook::path_for(&token, &gsc.name_any(), &ns);
    let status = WebhookStatus {
        url: ctx
            .options
            .webhook_url
            .as_ref()
            .map(|base| format!("{}{path}", base.trim_end_matches('/'))),
        path: path.clone(),
    };
    if !ctx.options.webhook_enabled {
        ctx.hooks.unregister(&config);
        let mut out = problem(prev, Reason::WebhookReceiverDisabled, "the operator runs no webhook receiver: start it with `--webhook-addr` (Helm: `webhook.enabled=true`); until then updates are seen at the interval".into());
        out.status = Some(status);
        return Ok(out);
    }
    let Some(transport) = transport else {
        // The config's Ready condition says why the repository cannot be read.
        ctx.hooks.unregister(&config);
        return Ok(WebhookOutcome {
            status: Some(status),
            condition: None,
            notes: Vec::new(),
        });
    };
    let registered = match ctx.hooks.register(
        &token,
        &gsc.name_any(),
        HookTarget {
            config: config.clone(),
            namespace: ns,
            repository: url.identity(),
            branch: gsc.spec.repository.branch.clone(),
            checker: Arc::new(WorkerCheck {
                worker: ctx.workers.get(url),
                transport: transport.clone(),
                metrics: ctx.metrics.clone(),
                config,
            }),
        },
    ) {
        Ok(path) => path,
        Err(owner) => {
            ctx.hooks.unregister(&key_of(gsc));
            let mut out = problem(prev, Reason::WebhookSecretInvalid, format!("GitSyncConfig {owner} has the same webhook path (the same token, and a name and namespace that read alike when joined): give this config a token of its own"));
            out.status = Some(status);
            return Ok(out);
        }
    };
    let message = format!("deliveries to {registered} check the repository at once");
    // A new token gives a new path: the git host's URL must follow, so that is news too.
    let was_ready = prev.is_some_and(|p| p.status == "True" && p.message == message);
    Ok(WebhookOutcome {
        status: Some(status),
        condition: Some(Condition::new(
            WEBHOOK_READY,
            true,
            Reason::WebhookReady,
            message.clone(),
        )),
        notes: if was_ready {
            Vec::new()
        } else {
            vec![Note::normal(Reason::WebhookReady, message)]
        },
    })
}
