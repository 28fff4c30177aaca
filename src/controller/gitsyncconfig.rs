//! GitSyncConfig reconciler: deploy key Secret, host keys, the connection check ("Finalize
//! setup"), the ToolJet check, and kstatus conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use zeroize::Zeroizing;

use super::{key_of, Context, Error, Problem, FIELD_MANAGER};
use crate::api::{
    self, types, Condition, GitSyncConfig, GitSyncConfigStatus, KeyType, RepositoryStatus,
    ToolJetStatus,
};
use crate::git::{check_access, GitFailureKind, HostKeyPolicy, RepoUrl, Transport};
use crate::keys::{self, KeyInfo};

/// The spec, checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Parsed repository URL.
    pub url: RepoUrl,
    /// Check interval.
    pub interval: Duration,
    /// Pinned host keys from the spec, when given.
    pub pinned_known_hosts: Option<String>,
}

/// Checks the spec without IO.
pub fn validate(spec: &api::GitSyncConfigSpec) -> Result<Validated, Problem> {
    let url = RepoUrl::parse(&spec.repository.url)
        .map_err(|e| Problem::stalled(e.reason(), e.to_string()))?;
    check_branch_name(&spec.repository.branch)?;
    let interval = parse_interval(&spec.interval)?;
    let pinned = spec
        .repository
        .known_hosts
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            keys::validate_known_hosts(s)
                .map(|_| s.to_string())
                .map_err(|e| {
                    Problem::stalled(
                        "InvalidKnownHosts",
                        format!("spec.repository.knownHosts: {e}"),
                    )
                })
        })
        .transpose()?;
    Ok(Validated {
        url,
        interval,
        pinned_known_hosts: pinned,
    })
}

/// Go-style durations (`5m`, `1h30m`, `90s`), at least 10 s so nobody hammers their git host.
pub fn parse_interval(s: &str) -> Result<Duration, Problem> {
    let bad = || {
        Problem::stalled(
            "InvalidInterval",
            format!("spec.interval {s:?} is not a duration like 5m, 1h30m or 90s"),
        )
    };
    let d = humantime::parse_duration(s).map_err(|_| bad())?;
    if d < Duration::from_secs(10) {
        return Err(Problem::stalled(
            "InvalidInterval",
            format!("spec.interval {s:?} is below the minimum of 10s"),
        ));
    }
    Ok(d)
}

/// git's ref-name rules (check-ref-format), the parts that matter for a branch.
pub fn check_branch_name(b: &str) -> Result<(), Problem> {
    let bad = |why: &str| {
        Problem::stalled(
            "InvalidBranch",
            format!("spec.repository.branch {b:?} is not a valid git branch name: {why}"),
        )
    };
    if b.is_empty() || b.starts_with('-') || b.starts_with('/') || b.ends_with('/') {
        return Err(bad(
            "it must not be empty or start with '-' or '/', or end with '/'",
        ));
    }
    if b.contains("..") || b.contains("//") || b.contains("@{") || b == "@" {
        return Err(bad("it must not contain '..', '//' or '@{'"));
    }
    if b.ends_with(".lock") || b.ends_with('.') || b.split('/').any(|c| c.starts_with('.')) {
        return Err(bad(
            "no component may start with '.', and it must not end with '.' or '.lock'",
        ));
    }
    if b.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Err(bad(
            "it must not contain spaces, control characters or any of ~^:?*[\\",
        ));
    }
    Ok(())
}

/// The key as the reconcile found or made it.
pub struct KeyState {
    /// Public facts.
    pub info: KeyInfo,
    /// Private half, for the ssh call only.
    pub private: Zeroizing<String>,
    /// Whether the operator generated (and owns) the Secret.
    pub generated: bool,
    /// The Secret's `known_hosts`.
    pub known_hosts: Option<String>,
}

/// Turns a git failure during the check into what the user must do.
pub fn access_problem(
    stage: crate::git::check::Stage,
    kind: GitFailureKind,
    detail: &str,
    url: &RepoUrl,
    branch: &str,
    fingerprint: &str,
    pinned_by_user: bool,
) -> Problem {
    use crate::git::check::Stage;
    match (stage, kind) {
        (_, GitFailureKind::AuthenticationFailed) => Problem::retrying(
            "AwaitingDeployKey",
            format!(
                "the repository {url} does not accept the deploy key {fingerprint} yet: add status.publicKey as a deploy key with write access (GitHub: Settings > Deploy keys > Allow write access; GitLab: Settings > Repository > Deploy keys > Grant write permissions). The operator retries with backoff."
            ),
        ),
        (Stage::Write, GitFailureKind::ReadOnlyAccess) | (Stage::Read, GitFailureKind::ReadOnlyAccess) => Problem::retrying(
            "ReadOnlyAccess",
            format!(
                "the deploy key {fingerprint} can read {url} but not write to branch {branch}: give the deploy key write access (GitHub: Allow write access; GitLab: Grant write permissions) and check branch protection. Pull-only AppSyncs still work. Git said: {detail}"
            ),
        ),
        (_, GitFailureKind::HostKeyMismatch) => Problem::stalled(
            "HostKeyMismatch",
            if pinned_by_user {
                format!("the SSH host key of {url} is not among the keys pinned in spec.repository.knownHosts; connection refused. If the server's key really changed, verify its fingerprint out of band (ssh-keyscan) and update spec.repository.knownHosts. ssh said: {detail}")
            } else {
                format!("the SSH host key of {url} differs from the one recorded on first contact; connection refused (possible man-in-the-middle). If the server's key really changed, verify the new fingerprint out of band and set spec.repository.knownHosts, or delete the recorded known_hosts (key `known_hosts` of the deploy key Secret, or status.learnedKnownHosts) to trust the new key. ssh said: {detail}")
            },
        ),
        (_, GitFailureKind::Unreachable) => Problem::retrying(
            "RepositoryUnreachable",
            format!("cannot connect to {url}: check the host name, port and network policies (egress to the git host). Retrying with backoff. Detail: {detail}"),
        ),
        (_, GitFailureKind::RepositoryNotFound) => Problem::retrying(
            "RepositoryNotFound",
            format!("the repository {url} does not exist or the deploy key cannot see it: check spec.repository.url and that the key is added to this repository. Detail: {detail}"),
        ),
        (_, _) => Problem::retrying(
            "GitError",
            format!("git failed on {url}: {detail}"),
        ),
    }
}

/// Inputs of the pure condition computation.
pub struct Observations<'a> {
    /// Spec validation.
    pub validation: &'a Result<Validated, Problem>,
    /// Deploy key.
    pub key: Option<&'a Result<KeyInfo, Problem>>,
    /// `spec.enabled`.
    pub enabled: bool,
    /// Repository check (None when not attempted).
    pub repo: Option<&'a Result<Option<String>, Problem>>,
    /// ToolJet check (None when not attempted).
    pub tooljet: Option<&'a Result<ToolJetStatus, Problem>>,
    /// Repository URL and branch for messages.
    pub branch: &'a str,
}

/// Computes conditions from what was observed. Pure.
pub fn conditions(o: &Observations) -> (Vec<Condition>, Option<Problem>) {
    let mut out = Vec::new();
    let mut first: Option<Problem> = None;
    let note = |p: &Problem, first: &mut Option<Problem>| {
        if first.is_none() {
            *first = Some(p.clone());
        }
    };
    if let Err(p) = o.validation {
        note(p, &mut first);
    }
    match o.key {
        Some(Ok(info)) => out.push(Condition::new(
            types::DEPLOY_KEY_READY,
            true,
            "KeyAvailable",
            format!("deploy key {} ({})", info.fingerprint, info.algorithm),
        )),
        Some(Err(p)) => {
            note(p, &mut first);
            out.push(Condition::new(
                types::DEPLOY_KEY_READY,
                false,
                &p.reason,
                &p.message,
            ));
        }
        None => {}
    }
    let disabled = Problem {
        reason: "Disabled".into(),
        message: "spec.enabled is false: nothing is committed or pulled and no git or ToolJet traffic happens; set it to true to connect".into(),
        stalled: false,
    };
    if !o.enabled && first.is_none() {
        first = Some(disabled.clone());
    }
    for (type_, check, ok_reason) in [
        (types::REPOSITORY_REACHABLE, o.repo.map(|r| r.as_ref().map(|h| match h {
            Some(sha) => format!("read and write access to branch {} verified (head {})", o.branch, &sha[..sha.len().min(12)]),
            None => format!("read and write access verified; branch {} does not exist yet and is created by the first push", o.branch),
        })), "Connected"),
        (types::TOOLJET_REACHABLE, o.tooljet.map(|r| r.as_ref().map(|t| format!(
            "ToolJet {} reachable, workspace {}",
            t.version.as_deref().unwrap_or("?"),
            t.workspace_id.as_deref().unwrap_or("?")
        ))), "Connected"),
    ] {
        match check {
            Some(Ok(msg)) => out.push(Condition::new(type_, true, ok_reason, msg)),
            Some(Err(p)) => {
                note(p, &mut first);
                out.push(Condition::new(type_, false, &p.reason, &p.message));
            }
            None if !o.enabled => out.push(Condition {
                status: "Unknown".into(),
                ..Condition::new(type_, false, "Disabled", "not checked while spec.enabled is false")
            }),
            None => {}
        }
    }
    match &first {
        None => out.insert(
            0,
            Condition::new(
                types::READY,
                true,
                "Ready",
                "deploy key accepted, repository writable, ToolJet reachable",
            ),
        ),
        Some(p) => {
            out.insert(
                0,
                Condition::new(types::READY, false, &p.reason, &p.message),
            );
            if p.reason != "Disabled" {
                let type_ = if p.stalled {
                    types::STALLED
                } else {
                    types::RECONCILING
                };
                out.push(Condition::new(type_, true, &p.reason, &p.message));
            }
        }
    }
    (out, first)
}

/// When to look again: the interval when healthy or stalled, a backoff that doubles with the
/// time already spent failing otherwise. Derived from the Ready condition, so no state is kept.
pub fn next_check(
    problem: Option<&Problem>,
    failing_for: Duration,
    interval: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    match problem {
        None => interval,
        Some(p) if p.stalled || p.reason == "Disabled" => interval,
        Some(_) => failing_for.clamp(min, max.min(interval.max(min))),
    }
}

/// Now, RFC 3339 in UTC, second precision.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// How long the Ready condition has been False.
pub fn failing_for(prev: &[Condition]) -> Duration {
    api::find(prev, types::READY)
        .filter(|c| !c.is_true())
        .and_then(|c| c.last_transition_time.as_deref())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            let secs = jiff::Timestamp::now().duration_since(t).as_secs();
            Duration::from_secs(secs.max(0) as u64)
        })
        .unwrap_or_default()
}

/// Entry point for the controller.
pub async fn reconcile(gsc: Arc<GitSyncConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = gsc.namespace().unwrap_or_default();
    let api: Api<GitSyncConfig> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, api::FINALIZER, gsc, |event| async {
        match event {
            Finalizer::Apply(gsc) => apply(gsc, ctx.clone()).await,
            Finalizer::Cleanup(gsc) => cleanup(gsc, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// Requeue after infrastructure errors.
pub fn error_policy(gsc: Arc<GitSyncConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(config = %key_of(gsc.as_ref()), error = %err, "reconcile error");
    Action::requeue(ctx.options.retry_min)
}

fn owner_ref(gsc: &GitSyncConfig) -> Option<OwnerReference> {
    gsc.controller_owner_ref(&())
}

fn is_generated_by(secret: &Secret, gsc: &GitSyncConfig) -> bool {
    let uid = gsc.metadata.uid.as_deref();
    secret
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| Some(r.uid.as_str()) == uid))
        && secret
            .labels()
            .get(api::MANAGED_BY_LABEL)
            .map(String::as_str)
            == Some(api::MANAGED_BY)
}

fn data_str(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
        })
}

async fn generate_key(key_type: KeyType, comment: String) -> Result<keys::DeployKey, Error> {
    tokio::task::spawn_blocking(move || keys::generate(key_type, &comment))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(e.to_string()))
}

fn key_secret(
    gsc: &GitSyncConfig,
    name: &str,
    key: &keys::DeployKey,
    known_hosts: Option<&str>,
    rotated_for: Option<&str>,
) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        "identity".to_string(),
        ByteString(key.private_openssh.as_bytes().to_vec()),
    );
    data.insert(
        "identity.pub".to_string(),
        ByteString(format!("{}\n", key.info.public_openssh).into_bytes()),
    );
    data.insert(
        "known_hosts".to_string(),
        ByteString(known_hosts.unwrap_or_default().as_bytes().to_vec()),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        api::KEY_TYPE_ANNOTATION.to_string(),
        gsc.spec.deploy_key.type_.as_str().to_string(),
    );
    if let Some(v) = rotated_for {
        annotations.insert(api::ROTATED_FOR_ANNOTATION.to_string(), v.to_string());
    }
    let mut labels = BTreeMap::new();
    labels.insert(
        api::MANAGED_BY_LABEL.to_string(),
        api::MANAGED_BY.to_string(),
    );
    labels.insert(api::CONFIG_LABEL.to_string(), gsc.name_any());
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: gsc.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner_ref(gsc).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// Finds, generates or rotates the deploy key.
async fn ensure_key(
    gsc: &GitSyncConfig,
    ctx: &Context,
) -> Result<Result<KeyState, Problem>, Error> {
    let ns = gsc.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = gsc.key_secret_name();
    let comment = format!("tooljet-gitsync/{ns}/{}", gsc.name_any());
    let rotate = gsc.annotations().get(api::ROTATE_KEY_ANNOTATION).cloned();
    match secrets.get_opt(&name).await? {
        None => {
            let key = generate_key(gsc.spec.deploy_key.type_, comment).await?;
            let secret = key_secret(gsc, &name, &key, None, rotate.as_deref());
            secrets.create(&PostParams::default(), &secret).await?;
            ctx.event(
                gsc,
                EventType::Normal,
                "KeyGenerated",
                format!(
                    "generated {} deploy key {} into Secret {name}: add status.publicKey to the repository as a deploy key with write access",
                    gsc.spec.deploy_key.type_.as_str(),
                    key.info.fingerprint
                ),
            )
            .await;
            Ok(Ok(KeyState {
                info: key.info,
                private: key.private_openssh,
                generated: true,
                known_hosts: None,
            }))
        }
        Some(secret) if is_generated_by(&secret, gsc) => {
            let recorded_type = secret
                .annotations()
                .get(api::KEY_TYPE_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            let rotated_for = secret
                .annotations()
                .get(api::ROTATED_FOR_ANNOTATION)
                .cloned();
            let type_changed = recorded_type != gsc.spec.deploy_key.type_.as_str();
            let rotation_asked = rotate.is_some() && rotate != rotated_for;
            let known_hosts = data_str(&secret, "known_hosts").filter(|s| !s.trim().is_empty());
            if type_changed || rotation_asked {
                let key = generate_key(gsc.spec.deploy_key.type_, comment).await?;
                let mut fresh =
                    key_secret(gsc, &name, &key, known_hosts.as_deref(), rotate.as_deref());
                fresh.metadata.resource_version = secret.metadata.resource_version.clone();
                secrets
                    .replace(&name, &PostParams::default(), &fresh)
                    .await?;
                let why = if type_changed {
                    format!(
                        "spec.deployKey.type changed to {}",
                        gsc.spec.deploy_key.type_.as_str()
                    )
                } else {
                    format!("{} was set", api::ROTATE_KEY_ANNOTATION)
                };
                ctx.event(
                    gsc,
                    EventType::Normal,
                    "KeyRotated",
                    format!(
                        "{why}: generated a new deploy key {} in Secret {name}; add the new status.publicKey to the repository and remove the old key",
                        key.info.fingerprint
                    ),
                )
                .await;
                return Ok(Ok(KeyState {
                    info: key.info,
                    private: key.private_openssh,
                    generated: true,
                    known_hosts,
                }));
            }
            Ok(
                read_identity(&secret, &name, true).map(|(info, private)| KeyState {
                    info,
                    private,
                    generated: true,
                    known_hosts,
                }),
            )
        }
        Some(secret) => {
            let known_hosts = data_str(&secret, "known_hosts").filter(|s| !s.trim().is_empty());
            Ok(
                read_identity(&secret, &name, false).map(|(info, private)| KeyState {
                    info,
                    private,
                    generated: false,
                    known_hosts,
                }),
            )
        }
    }
}

fn read_identity(
    secret: &Secret,
    name: &str,
    generated: bool,
) -> Result<(KeyInfo, Zeroizing<String>), Problem> {
    let origin = if generated {
        "generated"
    } else {
        "user-provided"
    };
    let Some(identity) = data_str(secret, "identity") else {
        return Err(Problem::stalled(
            "SecretInvalid",
            format!("the {origin} Secret {name} has no key `identity` (an OpenSSH private key): add it, or delete the Secret and the operator generates a new key (Flux-style keys: identity, identity.pub, known_hosts)"),
        ));
    };
    let identity = Zeroizing::new(identity);
    match keys::inspect(identity.as_bytes()) {
        Ok(info) => Ok((info, identity)),
        Err(e) => Err(Problem::stalled(
            "SecretInvalid",
            format!("Secret {name}: {e}"),
        )),
    }
}

async fn apply(gsc: Arc<GitSyncConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = gsc.namespace().unwrap_or_default();
    let name = gsc.name_any();
    // The cached object may predate our last status write (learned host keys live there).
    let gsc = match Api::<GitSyncConfig>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?
    {
        Some(fresh) => Arc::new(fresh),
        None => return Ok(Action::await_change()),
    };
    let prev = gsc.status.clone().unwrap_or_default();
    let validation = validate(&gsc.spec);
    let mut status = GitSyncConfigStatus {
        observed_generation: gsc.metadata.generation,
        last_handled_rotate_key: gsc.annotations().get(api::ROTATE_KEY_ANNOTATION).cloned(),
        learned_known_hosts: prev.learned_known_hosts.clone(),
        repository: prev.repository.clone(),
        tooljet: prev.tooljet.clone(),
        ..Default::default()
    };

    // The key is made even when the rest of the spec is wrong or disabled: users need the
    // public key before they can finish setting up the repository.
    let key = ensure_key(&gsc, &ctx).await?;
    let key_info: Result<KeyInfo, Problem> = match &key {
        Ok(k) => {
            status.public_key = Some(k.info.public_openssh.clone());
            status.public_key_fingerprint = Some(k.info.fingerprint.clone());
            match validation.as_ref().ok().and_then(|v| v.url.host()) {
                Some(host) => keys::check_host_compatibility(host, &k.info.algorithm)
                    .map(|_| k.info.clone())
                    .map_err(|m| Problem::stalled("KeyTypeUnsupported", m)),
                None => Ok(k.info.clone()),
            }
        }
        Err(p) => Err(p.clone()),
    };

    let mut repo: Option<Result<Option<String>, Problem>> = None;
    let mut tooljet: Option<Result<ToolJetStatus, Problem>> = None;
    if let (Ok(valid), Ok(k), Ok(_), true) = (&validation, &key, &key_info, gsc.spec.enabled) {
        // Once verified, periodic checks only read the branch head through the repository
        // worker's cache, shared with the config's AppSyncs; the write check (a dry-run push)
        // runs again on first contact and whenever the spec or the key changes.
        let verified = api::find(&prev.conditions, types::READY).is_some_and(|c| c.is_true())
            && prev.observed_generation == gsc.metadata.generation
            && prev.public_key_fingerprint.as_deref() == Some(k.info.fingerprint.as_str());
        let start = std::time::Instant::now();
        let (result, learned) = check_repository(&gsc, &ctx, valid, k, &prev, verified).await;
        ctx.metrics.git_op(
            if verified { "recheck" } else { "check" },
            start.elapsed(),
            result.is_ok(),
        );
        if let Some(hosts) = learned {
            record_host_keys(&gsc, &ctx, k, &hosts, &mut status).await?;
        }
        if let Ok(head) = &result {
            status.repository = Some(RepositoryStatus {
                branch: gsc.spec.repository.branch.clone(),
                head: head.clone(),
                last_checked_at: Some(now_rfc3339()),
            });
        }
        repo = Some(result);
        let tj = super::tooljet_check::check(&gsc, &ctx).await?;
        if let Ok(t) = &tj {
            status.tooljet = Some(t.clone());
        }
        tooljet = Some(tj);
    }

    let (conds, problem) = conditions(&Observations {
        validation: &validation,
        key: Some(&key_info),
        enabled: gsc.spec.enabled,
        repo: repo.as_ref(),
        tooljet: tooljet.as_ref(),
        branch: &gsc.spec.repository.branch,
    });
    let now = now_rfc3339();
    status.conditions = api::merge(&prev.conditions, conds, gsc.metadata.generation, &now);
    ctx.report_ready_transition(
        gsc.as_ref(),
        &prev.conditions,
        &status.conditions,
        &["Disabled", "AwaitingDeployKey"],
    )
    .await;

    let api: Api<GitSyncConfig> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": "gitsync.tooljet.io/v1alpha1",
        "kind": "GitSyncConfig",
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;

    let interval = validation
        .as_ref()
        .map(|v| v.interval)
        .unwrap_or(Duration::from_secs(300));
    let wait = next_check(
        problem.as_ref(),
        failing_for(&status.conditions),
        interval,
        ctx.options.retry_min,
        ctx.options.retry_max,
    );
    Ok(Action::requeue(wait))
}

/// The repository URL and transport of a Ready config, for AppSyncs: the key from its Secret
/// and the host keys it trusts (pinned, recorded in the Secret, or learned into status).
pub async fn repo_access(
    gsc: &GitSyncConfig,
    ctx: &Context,
) -> Result<Result<(RepoUrl, Transport), Problem>, Error> {
    let valid = match validate(&gsc.spec) {
        Ok(v) => v,
        Err(p) => return Ok(Err(p)),
    };
    let ns = gsc.namespace().unwrap_or_default();
    let name = gsc.key_secret_name();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(secret) = secrets.get_opt(&name).await? else {
        return Ok(Err(Problem::retrying(
            "GitSyncConfigNotReady",
            format!(
                "the deploy key Secret {ns}/{name} of GitSyncConfig {} does not exist yet",
                gsc.name_any()
            ),
        )));
    };
    let generated = is_generated_by(&secret, gsc);
    let (_, private) = match read_identity(&secret, &name, generated) {
        Ok(k) => k,
        Err(p) => return Ok(Err(p)),
    };
    let recorded = valid
        .pinned_known_hosts
        .clone()
        .or_else(|| data_str(&secret, "known_hosts").filter(|s| !s.trim().is_empty()))
        .or_else(|| {
            gsc.status
                .as_ref()
                .and_then(|s| s.learned_known_hosts.clone())
                .filter(|_| !generated)
        });
    let is_file = matches!(valid.url, RepoUrl::File { .. });
    let host_keys = match recorded {
        Some(kh) => HostKeyPolicy::Pinned(kh),
        None if is_file => HostKeyPolicy::TrustOnFirstUse,
        None => {
            return Ok(Err(Problem::retrying(
                "GitSyncConfigNotReady",
                format!(
                    "GitSyncConfig {} has not recorded the repository's host key yet",
                    gsc.name_any()
                ),
            )))
        }
    };
    Ok(Ok((
        valid.url,
        Transport {
            private_key: (!is_file).then_some(private),
            host_keys,
        },
    )))
}

async fn check_repository(
    gsc: &GitSyncConfig,
    ctx: &Context,
    valid: &Validated,
    key: &KeyState,
    prev: &GitSyncConfigStatus,
    verified: bool,
) -> (Result<Option<String>, Problem>, Option<String>) {
    let pinned_by_user = valid.pinned_known_hosts.is_some();
    let recorded = valid
        .pinned_known_hosts
        .clone()
        .or_else(|| key.known_hosts.clone())
        .or_else(|| prev.learned_known_hosts.clone().filter(|_| !key.generated));
    if let Some(kh) = &recorded {
        if let Err(e) = keys::validate_known_hosts(kh) {
            return (
                Err(Problem::stalled(
                    "InvalidKnownHosts",
                    format!(
                        "the recorded known_hosts (Secret {} key known_hosts): {e}",
                        gsc.key_secret_name()
                    ),
                )),
                None,
            );
        }
    }
    let is_file = matches!(valid.url, RepoUrl::File { .. });
    let transport = Transport {
        private_key: (!is_file).then(|| key.private.clone()),
        host_keys: match &recorded {
            Some(kh) => HostKeyPolicy::Pinned(kh.clone()),
            None => HostKeyPolicy::TrustOnFirstUse,
        },
    };
    if verified && recorded.is_some() {
        // Always read fresh (a changed host key or a revoked key shows at once); the result
        // refreshes the worker's cache, which the config's AppSyncs read within the interval.
        let head = ctx
            .workers
            .get(&valid.url)
            .remote_head(
                transport,
                &gsc.spec.repository.branch,
                std::time::Duration::ZERO,
            )
            .await;
        let result = head.map_err(|e| match &e {
            crate::git::worker::WorkerError::Git(f) => access_problem(
                crate::git::check::Stage::Read,
                f.kind,
                &f.detail,
                &valid.url,
                &gsc.spec.repository.branch,
                &key.info.fingerprint,
                pinned_by_user,
            ),
            other => Problem::retrying("GitError", other.to_string()),
        });
        return (result, None);
    }
    let outcome = check_access(
        &ctx.git,
        &valid.url,
        &gsc.spec.repository.branch,
        &transport,
    )
    .await;
    let result = outcome.result.map(|a| a.head).map_err(|(stage, f)| {
        access_problem(
            stage,
            f.kind,
            &f.detail,
            &valid.url,
            &gsc.spec.repository.branch,
            &key.info.fingerprint,
            pinned_by_user,
        )
    });
    (result, outcome.learned_known_hosts)
}

/// Stores host keys learned on first contact: in the generated Secret, or in status when the
/// Secret is the user's (never modified).
async fn record_host_keys(
    gsc: &GitSyncConfig,
    ctx: &Context,
    key: &KeyState,
    hosts: &str,
    status: &mut GitSyncConfigStatus,
) -> Result<(), Error> {
    let fingerprints: Vec<String> = hosts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(|k| (l, k)))
        .filter_map(|(l, _)| {
            let rest: Vec<&str> = l.split_whitespace().collect();
            let pk = ssh_key::PublicKey::from_openssh(&rest[1..].join(" ")).ok()?;
            Some(pk.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        })
        .collect();
    let place = if key.generated {
        let secrets: Api<Secret> =
            Api::namespaced(ctx.client.clone(), &gsc.namespace().unwrap_or_default());
        let patch = json!({"data": {"known_hosts": base64_encode(hosts.as_bytes())}});
        secrets
            .patch(
                &gsc.key_secret_name(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        format!("Secret {} key known_hosts", gsc.key_secret_name())
    } else {
        status.learned_known_hosts = Some(hosts.to_string());
        "status.learnedKnownHosts (the key Secret is user-provided and left unchanged)".to_string()
    };
    ctx.event(
        gsc,
        EventType::Normal,
        "HostKeyRecorded",
        format!(
            "first contact with {}: recorded host key {} in {place}; a different key will be refused",
            gsc.spec.repository.url,
            fingerprints.join(", ")
        ),
    )
    .await;
    Ok(())
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn cleanup(gsc: Arc<GitSyncConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = gsc.namespace().unwrap_or_default();
    super::tooljet_check::forget(&ctx, &ns, &gsc.name_any());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = gsc.key_secret_name();
    if let Some(secret) = secrets.get_opt(&name).await? {
        if is_generated_by(&secret, &gsc) {
            match secrets.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(config = %key_of(gsc.as_ref()), secret = %name, "deleted generated deploy key Secret");
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names() {
        for ok in ["master", "main", "release/v1", "feature_x-1"] {
            assert!(check_branch_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "x.lock", ".hidden", "a/.b", "a:b", "a~1", "/a", "a/",
        ] {
            assert_eq!(
                check_branch_name(bad).unwrap_err().reason,
                "InvalidBranch",
                "{bad}"
            );
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_interval("1s").is_err());
        assert!(parse_interval("soon").is_err());
    }

    fn validated() -> Result<Validated, Problem> {
        Ok(Validated {
            url: RepoUrl::parse("git@h:r.git").unwrap(),
            interval: Duration::from_secs(60),
            pinned_known_hosts: None,
        })
    }

    fn info() -> KeyInfo {
        KeyInfo {
            public_openssh: "ssh-ed25519 AAAA c".into(),
            fingerprint: "SHA256:x".into(),
            key_type: Some(KeyType::Ed25519),
            algorithm: "ssh-ed25519".into(),
        }
    }

    #[test]
    fn ready_when_everything_works() {
        let v = validated();
        let k = Ok(info());
        let r = Ok(Some("abc".to_string()));
        let t = Ok(ToolJetStatus::default());
        let (c, p) = conditions(&Observations {
            validation: &v,
            key: Some(&k),
            enabled: true,
            repo: Some(&r),
            tooljet: Some(&t),
            branch: "main",
        });
        assert!(p.is_none());
        assert!(api::find(&c, "Ready").unwrap().is_true());
        assert!(api::find(&c, "Stalled").is_none());
        assert!(api::find(&c, "Reconciling").is_none());
    }

    #[test]
    fn awaiting_key_is_reconciling_and_host_key_mismatch_is_stalled() {
        let v = validated();
        let k = Ok(info());
        for (reason, stalled) in [("AwaitingDeployKey", false), ("HostKeyMismatch", true)] {
            let r = Err(Problem {
                reason: reason.into(),
                message: "m".into(),
                stalled,
            });
            let (c, p) = conditions(&Observations {
                validation: &v,
                key: Some(&k),
                enabled: true,
                repo: Some(&r),
                tooljet: None,
                branch: "main",
            });
            let ready = api::find(&c, "Ready").unwrap();
            assert!(!ready.is_true());
            assert_eq!(ready.reason, reason);
            let t = if stalled { "Stalled" } else { "Reconciling" };
            assert!(api::find(&c, t).unwrap().is_true());
            assert_eq!(p.unwrap().reason, reason);
        }
    }

    #[test]
    fn disabled_reports_disabled_and_checks_nothing() {
        let v = validated();
        let k = Ok(info());
        let (c, p) = conditions(&Observations {
            validation: &v,
            key: Some(&k),
            enabled: false,
            repo: None,
            tooljet: None,
            branch: "main",
        });
        assert_eq!(api::find(&c, "Ready").unwrap().reason, "Disabled");
        assert_eq!(
            api::find(&c, "RepositoryReachable").unwrap().status,
            "Unknown"
        );
        assert!(api::find(&c, "Reconciling").is_none());
        assert_eq!(p.unwrap().reason, "Disabled");
    }

    #[test]
    fn backoff_grows_with_time_failing_and_is_bounded() {
        let p = Problem::retrying("AwaitingDeployKey", "");
        let (min, max, iv) = (
            Duration::from_secs(5),
            Duration::from_secs(300),
            Duration::from_secs(600),
        );
        assert_eq!(next_check(Some(&p), Duration::ZERO, iv, min, max), min);
        assert_eq!(
            next_check(Some(&p), Duration::from_secs(40), iv, min, max),
            Duration::from_secs(40)
        );
        assert_eq!(
            next_check(Some(&p), Duration::from_secs(4000), iv, min, max),
            max
        );
        assert_eq!(next_check(None, Duration::ZERO, iv, min, max), iv);
        let s = Problem::stalled("InvalidURL", "");
        assert_eq!(next_check(Some(&s), Duration::ZERO, iv, min, max), iv);
    }

    #[test]
    fn access_problems_say_what_to_do() {
        use crate::git::check::Stage;
        let url = RepoUrl::parse("git@github.com:a/b.git").unwrap();
        let p = access_problem(
            Stage::Read,
            GitFailureKind::AuthenticationFailed,
            "",
            &url,
            "main",
            "SHA256:x",
            false,
        );
        assert_eq!(p.reason, "AwaitingDeployKey");
        assert!(p.message.contains("status.publicKey") && p.message.contains("write access"));
        let p = access_problem(
            Stage::Write,
            GitFailureKind::ReadOnlyAccess,
            "",
            &url,
            "main",
            "SHA256:x",
            false,
        );
        assert_eq!(p.reason, "ReadOnlyAccess");
        let p = access_problem(
            Stage::Read,
            GitFailureKind::HostKeyMismatch,
            "",
            &url,
            "main",
            "SHA256:x",
            false,
        );
        assert!(p.stalled && p.message.contains("recorded on first contact"));
    }
}
