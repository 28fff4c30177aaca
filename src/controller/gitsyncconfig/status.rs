//! Step 4 of a GitSyncConfig pass, without IO: git failures turned into what the user must
//! do, and the kstatus conditions of what was observed.

use super::super::report::abnormal;
use super::super::Problem;
use super::validate::Validated;
use crate::api::{types, Condition, Reason, ToolJetStatus};
use crate::git::check::Stage;
use crate::git::{GitFailureKind, RepoUrl};
use crate::keys::KeyInfo;

/// What the repository was reached with, for messages.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    /// The deploy key, and whether the host keys were pinned by the user.
    Key {
        /// Its fingerprint.
        fingerprint: &'a str,
        /// `spec.repository.knownHosts` is set.
        pinned_by_user: bool,
    },
    /// HTTPS credentials, as [`crate::controller::https::AuthSource::summary`] names them.
    Https(&'a str),
}

/// What the config authenticates with, as the credentials condition reports it.
#[derive(Clone, Debug)]
pub enum Credential {
    /// The deploy key (SSH and file URLs).
    Key(KeyInfo),
    /// A token or GitHub App (HTTPS URLs), by its summary.
    Https(String),
}

/// Turns a git failure during the check into what the user must do.
pub fn access_problem(
    stage: Stage,
    kind: GitFailureKind,
    detail: &str,
    url: &RepoUrl,
    branch: &str,
    via: Via<'_>,
) -> Problem {
    let (fingerprint, pinned_by_user) = match via {
        Via::Key {
            fingerprint,
            pinned_by_user,
        } => (fingerprint, pinned_by_user),
        Via::Https(what) => return https_problem(stage, kind, detail, url, branch, what),
    };
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
        (_, GitFailureKind::CertificateUntrusted) => certificate_problem(url, detail),
        (_, _) => Problem::retrying(Reason::GitError, format!("git failed on {url}: {detail}")),
    }
}

fn certificate_problem(url: &RepoUrl, detail: &str) -> Problem {
    Problem::retrying(
        Reason::CertificateUntrusted,
        format!("the TLS certificate of {url} does not verify, so nothing was sent: for a private CA, put its PEM certificates in the credentials Secret under caFile; otherwise check the host name in the URL and the certificate's expiry. Git said: {detail}"),
    )
}

/// The same for HTTPS credentials, which the user fixes in their Secret or on the git host.
fn https_problem(
    stage: Stage,
    kind: GitFailureKind,
    detail: &str,
    url: &RepoUrl,
    branch: &str,
    what: &str,
) -> Problem {
    match kind {
        // Refused before any write was tried: not a missing write permission.
        GitFailureKind::ReadOnlyAccess if stage == Stage::Read => Problem::retrying(
            Reason::AuthenticationFailed,
            format!("{url} refused the {what} access to the repository (HTTP 403): check that the token may read it (GitHub: the organisation's SAML SSO authorization of the token, IP allow lists, a fine-grained token's repository selection). Git said: {detail}"),
        ),
        GitFailureKind::AuthenticationFailed => Problem::retrying(
            Reason::AuthenticationFailed,
            format!("{url} refused the {what}: the token is wrong, expired or revoked (or the App's token was refused). Put a valid token in the Secret; it is picked up at once. Git said: {detail}"),
        ),
        GitFailureKind::ReadOnlyAccess => Problem::retrying(
            Reason::ReadOnlyAccess,
            format!("the {what} can read {url} but not write to branch {branch}: give the token write access (GitHub: Contents read and write; GitLab: write_repository; Gitea: write:repository; a GitHub App: Contents read and write permission) and check branch protection. Pull-only AppSyncs still work. Git said: {detail}"),
        ),
        GitFailureKind::RepositoryNotFound => Problem::retrying(
            Reason::RepositoryNotFound,
            format!("the repository {url} does not exist or the {what} cannot see it: check spec.repository.url and that the token (or App installation) is granted this repository. Detail: {detail}"),
        ),
        GitFailureKind::CertificateUntrusted => certificate_problem(url, detail),
        GitFailureKind::Unreachable => Problem::retrying(
            Reason::RepositoryUnreachable,
            format!("cannot connect to {url}: check the host name, port, proxy (HTTPS_PROXY) and network policies (egress to the git host). Retrying with backoff. Detail: {detail}"),
        ),
        _ => Problem::retrying(Reason::GitError, format!("git failed on {url}: {detail}")),
    }
}

/// Inputs of the pure condition computation.
pub struct Observations<'a> {
    /// Spec validation.
    pub validation: &'a Result<Validated, Problem>,
    /// Deploy key, or HTTPS credentials.
    pub key: &'a Result<Credential, Problem>,
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
    let https = o.validation.as_ref().is_ok_and(|v| v.url.is_https())
        || matches!(o.key, Ok(Credential::Https(_)));
    let key_type = if https {
        types::CREDENTIALS_READY
    } else {
        types::DEPLOY_KEY_READY
    };
    match o.key {
        Ok(Credential::Key(info)) => out.push(Condition::new(
            key_type,
            true,
            Reason::KeyAvailable,
            format!("deploy key {} ({})", info.fingerprint, info.algorithm),
        )),
        Ok(Credential::Https(what)) => out.push(Condition::new(
            key_type,
            true,
            Reason::CredentialsAvailable,
            format!("HTTPS with the {what}"),
        )),
        Err(p) => {
            first.get_or_insert_with(|| p.clone());
            out.push(Condition::new(key_type, false, p.reason, &p.message));
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
            if https {
                "credentials accepted, repository writable, ToolJet reachable"
            } else {
                "deploy key accepted, repository writable, ToolJet reachable"
            },
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

    fn info() -> Result<Credential, Problem> {
        Ok(Credential::Key(KeyInfo {
            public_openssh: "ssh-ed25519 AAAA c".into(),
            fingerprint: "SHA256:x".into(),
            key_type: Some(KeyType::Ed25519),
            algorithm: "ssh-ed25519".into(),
        }))
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
        let via = Via::Key {
            fingerprint: "SHA256:x",
            pinned_by_user: false,
        };
        let p = |stage, kind| access_problem(stage, kind, "", &url, "main", via);
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
        // Over HTTPS the token is what the user fixes, never a deploy key.
        let https = RepoUrl::parse("https://github.com/a/b.git").unwrap();
        let what = "token of user bot in Secret ns/creds";
        let h = |kind| access_problem(Stage::Write, kind, "", &https, "main", Via::Https(what));
        let auth = h(GitFailureKind::AuthenticationFailed);
        assert_eq!(auth.reason, Reason::AuthenticationFailed);
        assert!(auth.message.contains(what) && !auth.message.contains("deploy key"));
        let ro = h(GitFailureKind::ReadOnlyAccess);
        assert!(ro.message.contains("write access") && !ro.message.contains("deploy key"));
        assert_eq!(
            h(GitFailureKind::CertificateUntrusted).reason,
            Reason::CertificateUntrusted
        );
        assert!(h(GitFailureKind::CertificateUntrusted)
            .message
            .contains("caFile"));
    }

    #[test]
    fn https_configs_report_credentials_not_a_deploy_key() {
        let v: Result<Validated, Problem> = Ok(Validated {
            url: RepoUrl::parse("https://h/r.git").unwrap(),
            interval: Duration::from_secs(60),
            pinned_known_hosts: None,
        });
        let k = Ok(Credential::Https("token of user git in Secret ns/c".into()));
        let r = Ok(None);
        let (c, p) = conditions(&Observations {
            validation: &v,
            key: &k,
            signing: None,
            enabled: true,
            repo: Some(&r),
            tooljet: None,
            branch: "main",
        });
        assert!(p.is_none());
        assert!(api::find(&c, "DeployKeyReady").is_none());
        let cr = api::find(&c, "CredentialsReady").unwrap();
        assert!(cr.is_true() && cr.message.contains("ns/c"));
        assert!(api::find(&c, "Ready")
            .unwrap()
            .message
            .contains("credentials accepted"));
    }
}
