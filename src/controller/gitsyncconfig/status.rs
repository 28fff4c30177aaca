//! Step 4 of a GitSyncConfig pass, without IO: git failures turned into what the user must
//! do, and the kstatus conditions of what was observed.

use super::super::report::abnormal;
use super::super::Problem;
use super::validate::Validated;
use crate::api::{types, Condition, Reason, ToolJetStatus};
use crate::git::check::Stage;
use crate::git::{GitFailureKind, RepoUrl};
use crate::keys::KeyInfo;

/// Turns a git failure during the check into what the user must do.
pub fn access_problem(
    stage: Stage,
    kind: GitFailureKind,
    detail: &str,
    url: &RepoUrl,
    branch: &str,
    fingerprint: &str,
    pinned_by_user: bool,
) -> Problem {
    match (stage, kind) {
        (_, GitFailureKind::AuthenticationFailed) => Problem::retrying(
            Reason::AwaitingDeployKey,
            format!(
                "the repository {url} does not accept the deploy key {fingerprint} yet: add status.publicKey as a deploy key with write access (GitHub: Settings > Deploy keys > Allow write access; GitLab: Settings > Repository > Deploy keys > Grant write permissions). The operator retries with backoff."
            ),
        ),
        (_, GitFailureKind::ReadOnlyAccess) => Problem::retrying(
            Reason::ReadOnlyAccess,
            format!(
                "the deploy key {fingerprint} can read {url} but not write to branch {branch}: give the deploy key write access (GitHub: Allow write access; GitLab: Grant write permissions) and check branch protection. Pull-only AppSyncs still work. Git said: {detail}"
            ),
        ),
        (_, GitFailureKind::HostKeyMismatch) => Problem::stalled(
            Reason::HostKeyMismatch,
            if pinned_by_user {
                format!("the SSH host key of {url} is not among the keys pinned in spec.repository.knownHosts; connection refused. If the server's key really changed, verify its fingerprint out of band (ssh-keyscan) and update spec.repository.knownHosts. ssh said: {detail}")
            } else {
                format!("the SSH host key of {url} differs from the one recorded on first contact; connection refused (possible man-in-the-middle). If the server's key really changed, verify the new fingerprint out of band and set spec.repository.knownHosts, or delete the recorded known_hosts (key `known_hosts` of the deploy key Secret, or status.learnedKnownHosts) to trust the new key. ssh said: {detail}")
            },
        ),
        (_, GitFailureKind::Unreachable) => Problem::retrying(
            Reason::RepositoryUnreachable,
            format!("cannot connect to {url}: check the host name, port and network policies (egress to the git host). Retrying with backoff. Detail: {detail}"),
        ),
        (_, GitFailureKind::RepositoryNotFound) => Problem::retrying(
            Reason::RepositoryNotFound,
            format!("the repository {url} does not exist or the deploy key cannot see it: check spec.repository.url and that the key is added to this repository. Detail: {detail}"),
        ),
        (_, _) => Problem::retrying(Reason::GitError, format!("git failed on {url}: {detail}")),
    }
}

/// Inputs of the pure condition computation.
pub struct Observations<'a> {
    /// Spec validation.
    pub validation: &'a Result<Validated, Problem>,
    /// Deploy key.
    pub key: &'a Result<KeyInfo, Problem>,
    /// Commit signing key (`None`: `spec.commitSigning` not set): what it is, or what is wrong.
    pub signing: Option<&'a Result<String, Problem>>,
    /// `spec.enabled`.
    pub enabled: bool,
    /// Repository check (None when not attempted).
    pub repo: Option<&'a Result<Option<String>, Problem>>,
    /// ToolJet check (None when not attempted).
    pub tooljet: Option<&'a Result<ToolJetStatus, Problem>>,
    /// Branch, for messages.
    pub branch: &'a str,
}

fn disabled() -> Problem {
    Problem::retrying(
        Reason::Disabled,
        "spec.enabled is false: nothing is committed or pulled and no git or ToolJet traffic happens; set it to true to connect",
    )
}

/// Computes conditions, and the first problem (what `Ready` reports). Pure.
pub fn conditions(o: &Observations) -> (Vec<Condition>, Option<Problem>) {
    let mut out = Vec::new();
    let mut first: Option<Problem> = o.validation.as_ref().err().cloned();
    match o.key {
        Ok(info) => out.push(Condition::new(
            types::DEPLOY_KEY_READY,
            true,
            Reason::KeyAvailable,
            format!("deploy key {} ({})", info.fingerprint, info.algorithm),
        )),
        Err(p) => {
            first.get_or_insert_with(|| p.clone());
            out.push(Condition::new(
                types::DEPLOY_KEY_READY,
                false,
                p.reason,
                &p.message,
            ));
        }
    }
    // Before the repository: nothing may be committed while the key that must sign is broken.
    match o.signing {
        Some(Ok(msg)) => out.push(Condition::new(
            types::SIGNING_KEY_READY,
            true,
            Reason::KeyAvailable,
            msg,
        )),
        Some(Err(p)) => {
            first.get_or_insert_with(|| p.clone());
            out.push(Condition::new(
                types::SIGNING_KEY_READY,
                false,
                p.reason,
                &p.message,
            ));
        }
        None => {}
    }
    if !o.enabled && first.is_none() {
        first = Some(disabled());
    }
    let repo_ok = |h: &Option<String>| {
        match h {
        Some(sha) => format!("read and write access to branch {} verified (head {})", o.branch, super::super::short(sha)),
        None => format!("read and write access verified; branch {} does not exist yet and is created by the first push", o.branch),
    }
    };
    let tooljet_ok = |t: &ToolJetStatus| {
        format!(
            "ToolJet {} reachable, workspace {}",
            t.version.as_deref().unwrap_or("?"),
            t.workspace_id.as_deref().unwrap_or("?")
        )
    };
    let checks = [
        (
            types::REPOSITORY_REACHABLE,
            o.repo.map(|r| r.as_ref().map(repo_ok)),
        ),
        (
            types::TOOLJET_REACHABLE,
            o.tooljet.map(|r| r.as_ref().map(tooljet_ok)),
        ),
    ];
    for (type_, check) in checks {
        match check {
            Some(Ok(msg)) => out.push(Condition::new(type_, true, Reason::Connected, msg)),
            Some(Err(p)) => {
                first.get_or_insert_with(|| p.clone());
                out.push(Condition::new(type_, false, p.reason, &p.message));
            }
            None if !o.enabled => out.push(Condition {
                status: "Unknown".into(),
                ..Condition::new(
                    type_,
                    false,
                    Reason::Disabled,
                    "not checked while spec.enabled is false",
                )
            }),
            None => {}
        }
    }
    let ready = match &first {
        None => Condition::new(
            types::READY,
            true,
            Reason::Ready,
            "deploy key accepted, repository writable, ToolJet reachable",
        ),
        Some(p) => Condition::new(types::READY, false, p.reason, &p.message),
    };
    out.insert(0, ready);
    out.extend(first.as_ref().and_then(abnormal));
    (out, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{self, KeyType};
    use std::time::Duration;

    fn validated() -> Result<Validated, Problem> {
        Ok(Validated {
            url: RepoUrl::parse("git@h:r.git").unwrap(),
            interval: Duration::from_secs(60),
            pinned_known_hosts: None,
        })
    }

    fn info() -> Result<KeyInfo, Problem> {
        Ok(KeyInfo {
            public_openssh: "ssh-ed25519 AAAA c".into(),
            fingerprint: "SHA256:x".into(),
            key_type: Some(KeyType::Ed25519),
            algorithm: "ssh-ed25519".into(),
        })
    }

    #[test]
    fn ready_when_everything_works() {
        let (v, k) = (validated(), info());
        let r = Ok(Some("abc".to_string()));
        let t = Ok(ToolJetStatus::default());
        let (c, p) = conditions(&Observations {
            validation: &v,
            key: &k,
            signing: None,
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
        let (v, k) = (validated(), info());
        for (reason, stalled) in [
            (Reason::AwaitingDeployKey, false),
            (Reason::HostKeyMismatch, true),
        ] {
            let r = Err(Problem {
                reason,
                message: "m".into(),
                stalled,
            });
            let (c, p) = conditions(&Observations {
                validation: &v,
                key: &k,
                signing: None,
                enabled: true,
                repo: Some(&r),
                tooljet: None,
                branch: "main",
            });
            let ready = api::find(&c, "Ready").unwrap();
            assert!(!ready.is_true());
            assert_eq!(ready.reason(), Some(reason));
            let t = if stalled { "Stalled" } else { "Reconciling" };
            assert!(api::find(&c, t).unwrap().is_true());
            assert_eq!(p.unwrap().reason, reason);
        }
    }

    #[test]
    fn an_invalid_spec_is_stalled_but_the_key_is_still_shown() {
        let v = Err(Problem::stalled(Reason::InvalidURL, "use ssh"));
        let k = info();
        let (c, p) = conditions(&Observations {
            validation: &v,
            key: &k,
            signing: None,
            enabled: true,
            repo: None,
            tooljet: None,
            branch: "main",
        });
        assert_eq!(p.unwrap().reason, Reason::InvalidURL);
        assert!(api::find(&c, "DeployKeyReady").unwrap().is_true());
        assert_eq!(api::find(&c, "Stalled").unwrap().reason, "InvalidURL");
    }

    #[test]
    fn a_broken_signing_key_keeps_the_config_from_ready() {
        let (v, k) = (validated(), info());
        let r = Ok(None);
        let t = Ok(ToolJetStatus::default());
        let bad = Err(Problem::stalled(
            Reason::SigningKeyInvalid,
            "has a passphrase",
        ));
        let (c, p) = conditions(&Observations {
            validation: &v,
            key: &k,
            signing: Some(&bad),
            enabled: true,
            repo: Some(&r),
            tooljet: Some(&t),
            branch: "main",
        });
        assert_eq!(p.unwrap().reason, Reason::SigningKeyInvalid);
        let ready = api::find(&c, "Ready").unwrap();
        assert!(!ready.is_true() && ready.reason == "SigningKeyInvalid");
        assert!(api::find(&c, "SigningKeyReady").is_some_and(|c| !c.is_true()));
        assert!(api::find(&c, "Stalled").is_some_and(|c| c.is_true()));
        let good = Ok("commits are signed with SHA256:x".to_string());
        let (c, p) = conditions(&Observations {
            validation: &v,
            key: &k,
            signing: Some(&good),
            enabled: true,
            repo: Some(&r),
            tooljet: Some(&t),
            branch: "main",
        });
        assert!(p.is_none());
        assert!(api::find(&c, "Ready").unwrap().is_true());
        assert!(api::find(&c, "SigningKeyReady").unwrap().is_true());
    }

    #[test]
    fn disabled_reports_disabled_and_checks_nothing() {
        let (v, k) = (validated(), info());
        let (c, p) = conditions(&Observations {
            validation: &v,
            key: &k,
            signing: None,
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
        assert_eq!(p.unwrap().reason, Reason::Disabled);
    }

    #[test]
    fn access_problems_say_what_to_do() {
        let url = RepoUrl::parse("git@github.com:a/b.git").unwrap();
        let p = |stage, kind| access_problem(stage, kind, "", &url, "main", "SHA256:x", false);
        let auth = p(Stage::Read, GitFailureKind::AuthenticationFailed);
        assert_eq!(auth.reason, Reason::AwaitingDeployKey);
        assert!(auth.message.contains("status.publicKey") && auth.message.contains("write access"));
        assert_eq!(
            p(Stage::Write, GitFailureKind::ReadOnlyAccess).reason,
            Reason::ReadOnlyAccess
        );
        let hk = p(Stage::Read, GitFailureKind::HostKeyMismatch);
        assert!(hk.stalled && hk.message.contains("recorded on first contact"));
        assert_eq!(
            p(Stage::Read, GitFailureKind::Unreachable).reason,
            Reason::RepositoryUnreachable
        );
        assert_eq!(
            p(Stage::Read, GitFailureKind::RepositoryNotFound).reason,
            Reason::RepositoryNotFound
        );
        assert_eq!(
            p(Stage::Write, GitFailureKind::Other).reason,
            Reason::GitError
        );
    }
}
