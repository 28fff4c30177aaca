//! `GitSyncConfig`: one ToolJet workspace bound to one git repository.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Binds a ToolJet workspace to a git repository, with a deploy key the operator generates.
#[allow(clippy::duplicated_attributes)] // printcolumn is repeated on purpose
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "gitsync.tooljet.io",
    version = "v1alpha1",
    kind = "GitSyncConfig",
    namespaced,
    status = "GitSyncConfigStatus",
    shortname = "gsc",
    category = "tooljet",
    doc = "Binds one ToolJet workspace to one git repository over SSH, with a generated deploy key.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.repository.url"),
    printcolumn(
        name = "Branch",
        type_ = "string",
        json_path = ".spec.repository.branch"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Key",
        type_ = "string",
        json_path = ".status.publicKeyFingerprint"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncConfigSpec {
    /// ToolJet's "Connect" switch: when false nothing is committed or pulled and no git traffic happens.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The git repository.
    pub repository: RepositorySpec,
    /// The SSH deploy key.
    #[serde(default)]
    pub deploy_key: DeployKeySpec,
    /// The ToolJet instance and workspace.
    pub tooljet: ToolJetSpec,
    /// Author of commits when an AppSync names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_author: Option<Author>,
    /// Sign every commit the operator makes with an SSH key (git's `gpgsig` header), so git
    /// hosts show them as verified. While set, nothing is committed unsigned: a missing or
    /// unusable key stops pushes (Ready=False) until it is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_signing: Option<CommitSigningSpec>,
    /// How often the repository and ToolJet are checked (Go duration, e.g. `5m`, `1h30m`).
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// Git host webhooks: a delivery to the path in `status.webhook` makes the operator check
    /// the repository at once instead of at the next interval (needs `--webhook-addr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
}

/// Where the webhook's shared secret is.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Secret in the same namespace whose key `token` is the webhook's secret, as entered at the
    /// git host (GitHub/Gitea/Bitbucket: the HMAC secret; GitLab: the secret token).
    pub secret_ref: SecretRef,
}

/// Where the apps are kept.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// SSH URL: scp-like `git@github.com:org/repo.git`, `ssh://git@host:2222/org/repo.git`;
    /// HTTPS URL `https://github.com/org/repo.git` (with `auth`); or `file:///path/repo.git`
    /// for local mirrors.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Branch to commit to and read from (ToolJet's default is `master`).
    #[serde(default = "default_branch")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: String,
    /// Pinned SSH host keys in known_hosts format. When empty, the key seen on first contact is
    /// recorded and any later change is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
    /// Credentials for an HTTPS URL (required there, refused for SSH URLs, which use the
    /// deploy key): a token, or a GitHub App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RepositoryAuth>,
}

/// HTTPS credentials, in a Secret of the config's namespace with Flux's key names, so one
/// Secret serves both: `username` (default `git`) and `password` (a token), or
/// `githubAppID`, `githubAppInstallationID` and `githubAppPrivateKey` (PEM), with optional
/// `githubEnterpriseApiUrl`; `caFile` (PEM) trusts a private CA for git and the API.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryAuth {
    /// The Secret holding the credentials.
    pub secret_ref: SecretRef,
}

/// The deploy key Secret (keys `identity`, `identity.pub`, `known_hosts`, as Flux uses them).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeployKeySpec {
    /// Secret name, default `<name>-deploy-key`. An existing Secret is used as is and never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,
    /// Key type to generate; Azure Repos and AWS CodeCommit need `rsa-4096`.
    #[serde(default, rename = "type")]
    pub type_: KeyType,
}

/// Deploy key algorithms.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519 (ToolJet's default).
    #[default]
    #[serde(rename = "ed25519")]
    Ed25519,
    /// ECDSA on NIST P-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA, 4096 bits.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyType {
    /// The name used in the spec and in Secret annotations.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }
}

/// The ToolJet side of the binding.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolJetSpec {
    /// Base URL of the ToolJet server.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,
    /// Workspace id, slug or name.
    #[schemars(length(min = 1, max = 255))]
    pub workspace: String,
    /// Secret with key `token` (External API) or keys `email` and `password` (session login).
    pub credentials_secret_ref: SecretRef,
    /// Allow a plain `http://` URL to a host that is not loopback. Off by default because the
    /// token or password would cross the network unencrypted; turn on only if that traffic
    /// never leaves a trusted network (e.g. a service mesh with mTLS). Loopback needs no opt-in.
    #[serde(default, rename = "allowInsecureHTTP")]
    pub allow_insecure_http: bool,
    /// Workspace constants kept in ToolJet from Secrets or ConfigMaps: every key of a source
    /// is a constant (ToolJet exports carry none, so an app pulled here needs them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub constants: Vec<ConstantSource>,
    /// Data-source credentials kept in ToolJet from Secrets (exports carry no secret option,
    /// so a data source an import creates here has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub data_sources: Vec<DataSourceCredentials>,
}

/// Where constants come from: exactly one of `secretRef` and `configMapRef`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConstantSource {
    /// A Secret in the GitSyncConfig's namespace; every key becomes a constant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// A ConfigMap in the GitSyncConfig's namespace; every key becomes a constant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<SecretRef>,
    /// The ToolJet environment (`development`, `staging` or `production`); every environment
    /// when absent. ToolJet's Community Edition writes one value to every environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub environment: Option<String>,
    /// Keys made Global constants (`{{constants.KEY}}`, visible to the app's users); every
    /// other key is a Secret constant (`{{secrets.KEY}}`, resolved on the server only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub global: Vec<String>,
    /// Delete the constants the operator created from this source when their key leaves it.
    /// Constants it did not create are never deleted.
    #[serde(default)]
    pub prune: bool,
}

/// The credentials of one data source of the workspace.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceCredentials {
    /// The data source's name, as the app's export names it.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// The ToolJet environment; every environment when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub environment: Option<String>,
    /// The Secret whose keys are option names (`password`, `api_key`, ...); each is written as
    /// an encrypted option, every other option of the data source is kept as it is.
    pub options_from: OptionsFrom,
}

/// Where a data source's secret options come from.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OptionsFrom {
    /// A Secret in the GitSyncConfig's namespace.
    pub secret_ref: SecretRef,
}

/// Reference to a Secret in the same namespace.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where the commit signing key is.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitSigningSpec {
    /// Secret in the config's namespace whose key `identity` holds an unencrypted OpenSSH
    /// private key (ed25519, ecdsa-p256, or RSA of at least 2048 bits). Naming the deploy key
    /// Secret signs with the deploy key.
    pub secret_ref: SecretRef,
}

/// A git author.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct Author {
    /// Display name.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^<>\r\n]+$"))]
    pub name: String,
    /// E-mail address.
    #[schemars(length(min = 3, max = 256), regex(pattern = r"^[^<>\s]+@[^<>\s]+$"))]
    pub email: String,
}

impl Default for Author {
    fn default() -> Self {
        Author {
            name: "ToolJet GitSync".into(),
            email: "gitsync@tooljet-gitsync.local".into(),
        }
    }
}

/// Observed state of a GitSyncConfig.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncConfigStatus {
    /// Generation the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, DeployKeyReady, SigningKeyReady (with `spec.commitSigning`), RepositoryReachable,
    /// ToolJetReachable, Reconciling, Stalled.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The public deploy key: add it to the repository with write access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// SHA256 fingerprint of the public key, as git hosts show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_fingerprint: Option<String>,
    /// What the last repository check saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryStatus>,
    /// What the last ToolJet check saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tooljet: Option<ToolJetStatus>,
    /// Host keys learned on first contact, kept here when the key Secret is the user's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_known_hosts: Option<String>,
    /// The last `gitsync.tooljet.io/rotate-key` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_rotate_key: Option<String>,
    /// The constants and data-source credentials kept in ToolJet (names only, never values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<ValuesStatus>,
    /// Where the git host delivers webhooks for this config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookStatus>,
    /// The key commits are signed with, while `spec.commitSigning` is set and its key usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_signing: Option<CommitSigningStatus>,
}

/// The receiver's address for this config.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    /// Path on the receiver (`/hook/<sha256 of token, name and namespace>`, as Flux makes it);
    /// it changes when the token does.
    pub path: String,
    /// The full URL to give the git host, when the operator knows its public address
    /// (`--webhook-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The public half of the commit signing key: register it with the git host as a signing key.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitSigningStatus {
    /// SHA256 fingerprint, as `ssh-keygen -lf` and the git hosts show it.
    pub fingerprint: String,
    /// The public key in OpenSSH form: add it as a signing key (GitHub: Settings > SSH and GPG
    /// keys > New SSH key, type Signing Key; GitLab: Preferences > SSH Keys, usage Signing) and
    /// to an allowed-signers file for `git verify-commit`.
    pub public_key: String,
}

/// What the operator keeps in the workspace from `spec.tooljet.constants` and `dataSources`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValuesStatus {
    /// Constants in the workspace as the sources declare them (at most 200 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constants: Vec<ManagedConstant>,
    /// Declared data sources and where their credentials stand (at most 50 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_sources: Vec<ManagedDataSource>,
    /// Keys that were not sent because ToolJet would refuse them, with why (never a value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Said when a per-environment value was asked for: what ToolJet editions do with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One constant the operator keeps.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedConstant {
    /// Constant name.
    pub name: String,
    /// `Global` or `Secret`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Environments it is kept in.
    pub environments: Vec<String>,
}

/// One declared data source.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDataSource {
    /// Data-source name.
    pub name: String,
    /// Environments its credentials are kept in.
    pub environments: Vec<String>,
    /// The option names written (the Secret's keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// `Applied`, or `Waiting` while the workspace has no data source of that name (an
    /// import creates it; its credentials are written then).
    pub state: String,
}

/// Repository facts from the last check.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// Branch checked.
    pub branch: String,
    /// Commit at the head of the branch; absent for an empty repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// When the repository was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<String>,
}

/// ToolJet facts from the last check.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolJetStatus {
    /// Server version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Resolved workspace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_branch() -> String {
    "master".into()
}
fn default_interval() -> String {
    "5m".into()
}

impl GitSyncConfig {
    /// Name of the deploy key Secret.
    pub fn key_secret_name(&self) -> String {
        self.spec.deploy_key.secret_name.clone().unwrap_or_else(|| {
            format!(
                "{}-deploy-key",
                self.metadata.name.as_deref().unwrap_or("gitsync")
            )
        })
    }
}
