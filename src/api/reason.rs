//! Every condition and Event reason the operator writes, as one enum: users, `kubectl wait`,
//! alerting rules and the Argo CD health check match on these names, so they are API. The
//! README's troubleshooting tables are checked against [`Reason::ALL`] by a test.

use std::fmt;

macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// A CamelCase condition or Event reason.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum Reason {
            $($(#[doc = $doc])+ $name,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)+];

            /// The reason as written to conditions and Events.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)+
                }
            }

            /// The reason of that name, if it is one.
            pub fn parse(s: &str) -> Option<Reason> {
                match s {
                    $(stringify!($name) => Some(Reason::$name),)+
                    _ => None,
                }
            }

            /// The doc line of the reason (what it means).
            pub const fn doc(self) -> &'static str {
                match self {
                    $(Reason::$name => concat!($($doc),+),)+
                }
            }
        }
    };
}

reasons! {
    // --- all good
    /// GitSyncConfig: deploy key accepted, repository writable, ToolJet reachable.
    Ready,
    /// A per-part check (repository, ToolJet) succeeded.
    Connected,
    /// The deploy key (or signing key) Secret holds a usable key.
    KeyAvailable,
    /// HTTPS: the credentials Secret holds a usable token or GitHub App.
    CredentialsAvailable,
    /// Push: the last pass committed the app.
    Committed,
    /// Pull: the last pass imported or replaced the app.
    Pulled,
    /// Nothing to do: git and ToolJet agree.
    UpToDate,
    /// Pull, Manual policy: a newer commit touches the app.
    UpdateAvailable,
    /// AppSyncSet: some generated AppSyncs have not finished their first pass yet.
    AppsPending,
    /// AppSyncSet: some selected apps' AppSyncs are not Ready (see `status.apps.failingApps`).
    AppsNotReady,
    // --- switched off
    /// GitSyncConfig `spec.enabled` is false.
    Disabled,
    /// AppSync `spec.suspend` is true.
    Suspended,
    // --- spec
    /// The repository URL cannot be parsed.
    InvalidURL,
    /// The repository URL uses a transport the operator does not support (HTTPS, git://, paths).
    UnsupportedURL,
    /// `spec.repository.branch` is no valid git branch name.
    InvalidBranch,
    /// `spec.repository.knownHosts` or the recorded known_hosts cannot be parsed.
    InvalidKnownHosts,
    /// `spec.interval` is no duration, or below the minimum.
    InvalidInterval,
    /// The chosen key type cannot work with the git host (RSA-only hosts).
    KeyTypeUnsupported,
    /// The AppSync references a GitSyncConfig in another namespace without the operator's flag.
    CrossNamespaceRefDenied,
    /// AppSyncSet `spec.apps.include`/`exclude` holds a pattern that is no glob.
    InvalidAppSelector,
    /// AppSyncSet: more apps selected than one set generates AppSyncs for.
    TooManyApps,
    // --- deploy key and repository
    /// The deploy key Secret lacks `identity` or it is not an unencrypted OpenSSH private key.
    SecretInvalid,
    /// `spec.commitSigning.secretRef` names a Secret that does not exist or has no key `identity`.
    SigningKeyNotFound,
    /// The signing key cannot sign: not an OpenSSH private key, a passphrase, or an unsupported type.
    SigningKeyInvalid,
    /// The repository does not accept the deploy key yet.
    AwaitingDeployKey,
    /// The deploy key can read but not push.
    ReadOnlyAccess,
    /// The server's SSH host key is not the pinned or recorded one.
    HostKeyMismatch,
    /// The git server cannot be reached.
    RepositoryUnreachable,
    /// The repository does not exist or the key cannot see it.
    RepositoryNotFound,
    /// A git command failed for a reason not classified further.
    GitError,
    /// The git server refused the key during a push or fetch.
    AuthenticationFailed,
    /// `spec.repository.auth.secretRef` names a Secret that does not exist.
    RepositoryCredentialsNotFound,
    /// The HTTPS credentials Secret lacks `password`, or the GitHub App keys, or holds bad values.
    RepositoryCredentialsInvalid,
    /// GitHub refused the App: wrong App ID, a private key that is not the App's, or revoked.
    GitHubAppRejected,
    /// The GitHub App installation does not exist, is suspended, or does not include the repository.
    GitHubAppNotInstalled,
    /// The HTTPS server's certificate is not trusted: unknown CA (set `caFile`), wrong name or expired.
    CertificateUntrusted,
    /// The repository's content cannot be read as ToolJet's layout.
    InvalidRepositoryContent,
    /// Other writers kept moving the branch; nothing was forced.
    PushRejected,
    /// `spec.pull.revision` is no branch, tag or commit.
    RevisionNotFound,
    // --- ToolJet
    /// The ToolJet credentials Secret does not exist.
    CredentialsSecretNotFound,
    /// The ToolJet credentials Secret has neither `token` nor `email` and `password`.
    CredentialsInvalid,
    /// Credentials given to the ToolJet client are unusable.
    InvalidCredentials,
    /// `spec.tooljet.url` is no http(s) URL.
    InvalidToolJetURL,
    /// ToolJet refused the token or password.
    ToolJetUnauthorized,
    /// The External API is off, not licensed, or Community Edition.
    ToolJetFeatureUnavailable,
    /// `spec.tooljet.workspace` matches no workspace visible to the credentials.
    WorkspaceNotFound,
    /// ToolJet cannot be reached.
    ToolJetUnreachable,
    /// ToolJet did not answer in time.
    ToolJetTimeout,
    /// ToolJet answered with a server error.
    ToolJetServerError,
    /// ToolJet answered with something the operator cannot read.
    ToolJetInvalidResponse,
    /// ToolJet refused a request as invalid.
    ToolJetRejected,
    /// ToolJet answered 404 for something other than a workspace, app or version.
    ToolJetNotFound,
    /// A failed replace could not be rolled back cleanly.
    ToolJetRollbackFailed,
    // --- the app
    /// `spec.app` names no app (empty, or `id:` without an id).
    InvalidApp,
    /// `spec.pull.revision` cannot be a branch, tag or commit sha.
    InvalidRevision,
    /// The GitSyncConfig named by `spec.gitSyncConfigRef` does not exist.
    GitSyncConfigNotFound,
    /// The GitSyncConfig is not Ready yet.
    GitSyncConfigNotReady,
    /// The GitSyncConfig has `spec.enabled: false`.
    GitSyncConfigDisabled,
    /// Push: no such app in the workspace.
    AppNotFound,
    /// Push: `spec.push.version` names no version of the app.
    AppVersionNotFound,
    /// The app's name cannot be a folder.
    AppNameRefused,
    /// The app's folder would collide with another app's.
    FolderCollision,
    /// Push: the planner refused the change for another reason (its message says which).
    PushRefused,
    /// An app name ToolJet would refuse (over 50 characters, empty).
    InvalidAppName,
    /// An export (from ToolJet or in git) is no valid app export.
    InvalidExport,
    /// Pull: `.meta/meta.json` at the revision has no such app.
    AppNotInGit,
    /// Pull: the version in git is not `spec.pull.expectVersion`.
    VersionMismatch,
    /// Pull: the target workspace has an app of that name this AppSync did not create.
    NameConflict,
    /// Pull: the export comes from a newer ToolJet than the target.
    ToolJetVersionTooNew,
    /// Pull: the export exceeds ToolJet's import limit.
    PayloadTooLarge,
    /// Pull: the app references constants or secrets the target workspace lacks.
    WorkspaceConstantsMissing,
    /// `spec.direction` differs from the direction this AppSync has synced in.
    DirectionChanged,
    /// Pull: the app in git is another git app than the one this AppSync imported.
    GitAppChanged,
    /// Pull: an import or replace could not finish or be undone yet; retried from its journal.
    SwapIncomplete,
    /// The Kubernetes API refused a request of the operator (RBAC, admission, names, quotas).
    KubernetesAPIRefused,
    /// Push: another AppSync pushes the same app at another version.
    PushConflict,
    /// The operator failed internally (a bug or the machine); retried.
    InternalError,
    // --- Events only
    /// AppSyncSet: AppSyncs were generated for new apps.
    AppAdded,
    /// AppSyncSet: the AppSyncs of apps no longer found or selected were deleted (nothing in
    /// git or ToolJet).
    AppRemoved,
    /// AppSyncSet: an AppSync the set did not generate already handles an app; it wins.
    AppSyncOverlap,
    /// Event: a deploy key was generated.
    KeyGenerated,
    /// Event: a generated deploy key was replaced by a new one.
    KeyRotated,
    /// Event: the host key seen on first contact was recorded.
    HostKeyRecorded,
    // --- tooljet hardening
    /// `spec.tooljet.url` is plain http to a host that is not loopback, without `allowInsecureHTTP`.
    InsecureToolJetURL,
    // --- git hardening
    /// The repository's worker did not answer in time (a slow or stuck repository); retried.
    RepositoryBusy,
    /// The repository is in ToolJet's newer GitSync layout (`apps/<name>/app/app.json`), which the operator does not read or write.
    UnsupportedRepositoryLayout,
    /// `spec.repository.url` is a `file://` URL the operator does not accept (no `--allow-file-urls`, or inside its data directory).
    FileURLNotAllowed,
    // --- constants and data-source credentials
    /// GitSyncConfig: the declared constants and data-source credentials are in the workspace.
    ValuesApplied,
    /// GitSyncConfig: `spec.tooljet.constants` or `dataSources` with token credentials (ToolJet's External API has no route for them).
    ConstantsNeedSession,
    /// GitSyncConfig: a Secret or ConfigMap named in `spec.tooljet.constants` or `dataSources` does not exist.
    ValuesSourceNotFound,
    /// GitSyncConfig: a constant ToolJet would refuse (name pattern or length, empty or too long value); not sent.
    InvalidConstant,
    /// GitSyncConfig: ToolJet failed a constants or data-source call; retried.
    ValuesFailed,
    /// A spec entry the CRD schema cannot express the rule of (e.g. exactly one of two fields).
    InvalidSpec,
    // --- pull-request mode
    /// Push: the change is committed to its branch and waits in an open pull request.
    PullRequestOpen,
    /// Event: a pull request was opened for the AppSync's changes.
    PullRequestOpened,
    /// Event: the AppSync's pull request was merged; the next change opens a new one.
    PullRequestMerged,
    /// Event: the AppSync's pull request was closed without merging; the next change opens a new one.
    PullRequestClosed,
    /// The git host's pull-request API refused or failed (token scope, base branch, host down).
    PullRequestFailed,
    // --- webhooks
    /// GitSyncConfig: deliveries to `status.webhook.path` trigger a repository check at once.
    WebhookReady,
    /// GitSyncConfig: the Secret named in `spec.webhook.secretRef`, or its key `token`, does not exist.
    WebhookSecretNotFound,
    /// GitSyncConfig: the webhook token is empty or unusable (it must be 16 to 1024 bytes, no line breaks).
    WebhookSecretInvalid,
    /// GitSyncConfig: `spec.webhook` is set but the operator runs no receiver (`--webhook-addr`, chart `webhook.enabled`).
    WebhookReceiverDisabled,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_camel_case() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert!(r.as_str().starts_with(|c: char| c.is_ascii_uppercase()));
            assert!(r.as_str().chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(!r.doc().is_empty());
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
    }

    /// The reasons the README's troubleshooting section documents: the backticked names in
    /// the first column of its tables.
    fn documented() -> std::collections::BTreeSet<String> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("## Troubleshooting by condition reason")
            .expect("README has a troubleshooting section");
        let section = &readme[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        section[..end]
            .lines()
            .filter_map(|l| l.strip_prefix('|'))
            .filter_map(|l| l.split('|').next())
            .flat_map(|cell| {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|name| {
                name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name.chars().all(|c| c.is_ascii_alphanumeric())
            })
            .collect()
    }

    #[test]
    fn readme_documents_every_reason_and_no_stale_one() {
        let documented = documented();
        let missing: Vec<&str> = Reason::ALL
            .iter()
            .map(|r| r.as_str())
            .filter(|r| !documented.contains(*r))
            .collect();
        assert!(
            missing.is_empty(),
            "README troubleshooting lacks: {missing:?}"
        );
        let stale: Vec<&String> = documented
            .iter()
            .filter(|d| Reason::parse(d).is_none())
            .collect();
        assert!(
            stale.is_empty(),
            "README documents reasons the operator never writes: {stale:?}"
        );
    }
}
