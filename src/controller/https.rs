//! Credentials of HTTPS repositories: the Secret of `spec.repository.auth` read with Flux's key
//! names (a token, or a GitHub App whose installation token the operator obtains and caches),
//! turned into the transport git uses. Parsing is pure; the edges are the Secret read and the
//! token exchange.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::gitsyncconfig::data_str;
use super::{Context, Failure, Problem};
use crate::api::{GitSyncConfig, Reason};
use crate::forge::github_app::{AppCredentials, AppTokenError, AppTokenErrorKind, GIT_USERNAME};
use crate::forge::{default_api_base, Provider};
use crate::git::{HttpsAuth, RepoUrl, Transport};

/// Secret keys (Flux's `GitRepository` names, so one Secret serves both).
pub const USERNAME: &str = "username";
/// Token or password.
pub const PASSWORD: &str = "password";
/// GitHub App ID (or client ID).
pub const GITHUB_APP_ID: &str = "githubAppID";
/// GitHub App installation ID.
pub const GITHUB_APP_INSTALLATION_ID: &str = "githubAppInstallationID";
/// GitHub App private key, PEM.
pub const GITHUB_APP_PRIVATE_KEY: &str = "githubAppPrivateKey";
/// GitHub Enterprise Server API base (`https://host/api/v3`).
pub const GITHUB_ENTERPRISE_API_URL: &str = "githubEnterpriseApiUrl";
/// Flux's name for the same.
pub const GITHUB_APP_BASE_URL: &str = "githubAppBaseURL";
/// PEM certificates of a private CA.
pub const CA_FILE: &str = "caFile";

/// Username sent with a token when the Secret names none (GitHub, GitLab and Gitea accept any).
pub const DEFAULT_USERNAME: &str = "git";

/// What the Secret authenticates with.
#[derive(Clone)]
pub enum AuthSecret {
    /// Basic auth: a PAT, project token or password.
    Basic {
        /// Username (default [`DEFAULT_USERNAME`]).
        username: String,
        /// The token.
        password: Zeroizing<String>,
    },
    /// A GitHub App installation.
    GitHubApp {
        /// App ID.
        app_id: String,
        /// Installation ID.
        installation_id: String,
        /// Private key, PEM.
        private_key: Zeroizing<String>,
        /// API base given in the Secret, if any.
        api_base: Option<String>,
    },
}

/// The Secret, parsed.
#[derive(Clone)]
pub struct ParsedAuth {
    /// How to authenticate.
    pub auth: AuthSecret,
    /// Private CA, PEM.
    pub ca_pem: Option<String>,
}

/// A usable HTTPS credential.
pub struct HttpsCredentials {
    /// What git gets.
    pub transport: Transport,
    /// Says which credential this is, for conditions (never its value).
    pub description: String,
    /// The App, when it is one (a token git rejects is dropped from the cache).
    pub app: Option<AppCredentials>,
}

/// Whether `gsc` reads its HTTPS credentials from Secret `name` (of its namespace).
pub fn references(gsc: &GitSyncConfig, name: &str) -> bool {
    gsc.spec
        .repository
        .auth
        .as_ref()
        .is_some_and(|a| a.secret_ref.name == name)
}

/// Trimmed value of `key`, `None` when absent or blank.
fn value(secret: &Secret, key: &str) -> Option<String> {
    data_str(secret, key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Reads the Secret's keys; names keys, never values, in what it says.
pub fn parse_auth_secret(secret: &Secret, ns: &str, name: &str) -> Result<ParsedAuth, Problem> {
    let invalid = |why: String| {
        Problem::stalled(
            Reason::RepositoryCredentialsInvalid,
            format!(
                "the HTTPS credentials Secret {ns}/{name} (spec.repository.auth.secretRef) {why}"
            ),
        )
    };
    let has = |key: &str| {
        secret.data.as_ref().is_some_and(|d| d.contains_key(key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(key))
    };
    let ca_pem = match value(secret, CA_FILE) {
        Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Some(pem),
        Some(_) => {
            return Err(invalid(format!(
                "has a key {CA_FILE} that holds no PEM certificate (-----BEGIN CERTIFICATE-----): put the private CA's certificates there, or remove the key"
            )))
        }
        None => None,
    };
    let app_keys = [
        GITHUB_APP_ID,
        GITHUB_APP_INSTALLATION_ID,
        GITHUB_APP_PRIVATE_KEY,
    ];
    let is_app = app_keys.iter().any(|k| has(k));
    if is_app && has(PASSWORD) {
        return Err(invalid(format!(
            "has both {PASSWORD} and GitHub App keys: keep either username and password (a token), or {GITHUB_APP_ID}, {GITHUB_APP_INSTALLATION_ID} and {GITHUB_APP_PRIVATE_KEY}"
        )));
    }
    if is_app {
        let missing: Vec<&str> = app_keys
            .iter()
            .copied()
            .filter(|k| value(secret, k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!(
                "is a GitHub App Secret but lacks {}: it needs {GITHUB_APP_ID}, {GITHUB_APP_INSTALLATION_ID} and {GITHUB_APP_PRIVATE_KEY} (PEM)",
                missing.join(", ")
            )));
        }
        let app_id = value(secret, GITHUB_APP_ID).unwrap_or_default();
        let installation_id = value(secret, GITHUB_APP_INSTALLATION_ID).unwrap_or_default();
        let id_like = |v: &str| {
            v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        };
        if !id_like(&app_id) {
            return Err(invalid(format!(
                "has a {GITHUB_APP_ID} that is not an App ID (digits) or client ID"
            )));
        }
        if installation_id.is_empty()
            || installation_id.len() > 20
            || !installation_id.chars().all(|c| c.is_ascii_digit())
        {
            return Err(invalid(format!(
                "has a {GITHUB_APP_INSTALLATION_ID} that is not a number (the installation's ID, from its settings URL .../installations/<id>)"
            )));
        }
        let private_key =
            Zeroizing::new(data_str(secret, GITHUB_APP_PRIVATE_KEY).unwrap_or_default());
        if !private_key.contains("PRIVATE KEY-----") {
            return Err(invalid(format!(
                "has a {GITHUB_APP_PRIVATE_KEY} that is not a PEM private key (-----BEGIN RSA PRIVATE KEY-----, as GitHub downloads it)"
            )));
        }
        let api_base =
            value(secret, GITHUB_ENTERPRISE_API_URL).or_else(|| value(secret, GITHUB_APP_BASE_URL));
        if let Some(base) = &api_base {
            if !base.starts_with("https://")
                || base.contains('@')
                || base.chars().any(char::is_whitespace)
            {
                return Err(invalid(format!(
                    "has a {GITHUB_ENTERPRISE_API_URL} that is not an https:// URL without credentials (GitHub Enterprise Server: https://<host>/api/v3)"
                )));
            }
        }
        return Ok(ParsedAuth {
            auth: AuthSecret::GitHubApp {
                app_id,
                installation_id,
                private_key,
                api_base,
            },
            ca_pem,
        });
    }
    let Some(password) = data_str(secret, PASSWORD).map(|p| Zeroizing::new(p.trim().to_string()))
    else {
        return Err(invalid(format!(
            "has no key {PASSWORD}: it needs {PASSWORD} (a token with read and write access to the repository; {USERNAME} optional, default {DEFAULT_USERNAME}), or the GitHub App keys {GITHUB_APP_ID}, {GITHUB_APP_INSTALLATION_ID} and {GITHUB_APP_PRIVATE_KEY}"
        )));
    };
    if password.is_empty() {
        return Err(invalid(format!("has an empty {PASSWORD}")));
    }
    if password.chars().any(char::is_control) {
        return Err(invalid(format!(
            "has a {PASSWORD} with a line break or control character inside"
        )));
    }
    let username = value(secret, USERNAME).unwrap_or_else(|| DEFAULT_USERNAME.to_string());
    if username.chars().any(|c| c.is_control() || c == ':') {
        return Err(invalid(format!(
            "has a {USERNAME} with ':' or a control character"
        )));
    }
    Ok(ParsedAuth {
        auth: AuthSecret::Basic { username, password },
        ca_pem,
    })
}

/// A short keyed digest: tells a rotated token from the old one within this process (the
/// identities live in memory only), and reveals nothing about it (the key is random per
/// process, so the digest cannot be checked against guesses elsewhere).
fn short_digest(parts: &[&[u8]]) -> String {
    use hmac::Mac;
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(rand::random::<[u8; 32]>);
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
        mac.update(b"\0");
    }
    let d = mac.finalize().into_bytes();
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The API base of an App: the Secret's, else github.com's or GitHub Enterprise Server's at
/// the repository's host.
pub fn app_api_base(url: &RepoUrl, given: Option<&str>) -> String {
    match (given, url.https_host()) {
        (Some(base), _) => base.trim_end_matches('/').to_string(),
        (None, Some((host, port))) => default_api_base(Provider::GitHub, host, Some(port)),
        (None, None) => "https://api.github.com".into(),
    }
}

/// What went wrong getting an installation token, as the user must act on it.
pub fn app_problem(e: &AppTokenError, ns: &str, name: &str) -> Problem {
    let detail = e.to_string();
    match e.kind() {
        AppTokenErrorKind::Config | AppTokenErrorKind::KeyInvalid => Problem::stalled(
            Reason::RepositoryCredentialsInvalid,
            format!("the GitHub App in Secret {ns}/{name} cannot be used: {detail}"),
        ),
        AppTokenErrorKind::JwtRejected => Problem::retrying(
            Reason::GitHubAppRejected,
            format!("GitHub refused the App of Secret {ns}/{name}: check {GITHUB_APP_ID} and that {GITHUB_APP_PRIVATE_KEY} is a current key of that App (and the node's clock). {detail}"),
        ),
        AppTokenErrorKind::InstallationNotFound
        | AppTokenErrorKind::InstallationSuspended
        | AppTokenErrorKind::RepositoryNotInstalled => Problem::retrying(
            Reason::GitHubAppNotInstalled,
            format!("the GitHub App of Secret {ns}/{name} cannot reach the repository: install it on the repository (or on all repositories) and check {GITHUB_APP_INSTALLATION_ID}. {detail}"),
        ),
        AppTokenErrorKind::Unreachable => Problem::retrying(
            Reason::RepositoryUnreachable,
            format!("cannot get a GitHub App installation token: {detail}"),
        ),
        AppTokenErrorKind::Unexpected => Problem::retrying(
            Reason::GitError,
            format!("cannot get a GitHub App installation token: {detail}"),
        ),
    }
}

/// The credentials Secret of a config, read and parsed.
#[derive(Clone)]
pub struct AuthSource {
    /// What it holds.
    pub parsed: ParsedAuth,
    /// Its namespace (the config's).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl AuthSource {
    /// Which credential this is, for conditions (never its value).
    pub fn summary(&self) -> String {
        let (ns, name) = (&self.namespace, &self.name);
        match &self.parsed.auth {
            AuthSecret::Basic { username, .. } => {
                format!("token of user {username} in Secret {ns}/{name}")
            }
            AuthSecret::GitHubApp {
                app_id,
                installation_id,
                ..
            } => format!(
                "GitHub App {app_id} (installation {installation_id}) in Secret {ns}/{name}"
            ),
        }
    }

    /// Names the credential, stable across App token refreshes, with a short digest of its
    /// secret part so that a rotated token or key is another credential; never the value.
    pub fn identity(&self) -> String {
        let (ns, name) = (&self.namespace, &self.name);
        match &self.parsed.auth {
            AuthSecret::Basic { username, password } => format!(
                "token:{ns}/{name}:{}",
                short_digest(&[username.as_bytes(), password.as_bytes()])
            ),
            AuthSecret::GitHubApp {
                app_id,
                installation_id,
                private_key,
                api_base,
            } => format!(
                "app:{ns}/{name}:{app_id}/{installation_id}:{}",
                short_digest(&[
                    private_key.as_bytes(),
                    api_base.as_deref().unwrap_or_default().as_bytes()
                ])
            ),
        }
    }
}

/// Reads and parses the config's credentials Secret (no network IO beyond the apiserver).
pub async fn read(gsc: &GitSyncConfig, ctx: &Context) -> Result<AuthSource, Failure> {
    let ns = gsc.namespace().unwrap_or_default();
    let Some(auth) = gsc.spec.repository.auth.as_ref() else {
        return Err(Problem::stalled(
            Reason::InvalidSpec,
            "an HTTPS repository needs spec.repository.auth.secretRef: a Secret with a token (username, password) or a GitHub App",
        )
        .into());
    };
    let name = auth.secret_ref.name.clone();
    let Some(secret) = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?
    else {
        return Err(Problem::retrying(
            Reason::RepositoryCredentialsNotFound,
            format!("the HTTPS credentials Secret {ns}/{name} named by spec.repository.auth.secretRef does not exist: create it with keys username and password (a token), or the GitHub App keys {GITHUB_APP_ID}, {GITHUB_APP_INSTALLATION_ID} and {GITHUB_APP_PRIVATE_KEY}; it is picked up at once"),
        )
        .into());
    };
    let parsed = parse_auth_secret(&secret, &ns, &name)?;
    Ok(AuthSource {
        parsed,
        namespace: ns,
        name,
    })
}

/// Reads the config's credentials and makes the transport.
pub async fn credentials(
    gsc: &GitSyncConfig,
    ctx: &Context,
    url: &RepoUrl,
) -> Result<HttpsCredentials, Failure> {
    let source = read(gsc, ctx).await?;
    transport(ctx, url, &source).await.map_err(Failure::from)
}

/// The transport for `source`; an App's installation token comes from the shared cache
/// (fetched when missing or about to expire).
pub async fn transport(
    ctx: &Context,
    url: &RepoUrl,
    source: &AuthSource,
) -> Result<HttpsCredentials, Problem> {
    let (ns, name) = (source.namespace.as_str(), source.name.as_str());
    let identity = source.identity();
    let origin = url.https_origin().unwrap_or_default();
    let ca_pem = source.parsed.ca_pem.clone();
    match &source.parsed.auth {
        AuthSecret::Basic { username, password } => Ok(HttpsCredentials {
            description: source.summary(),
            transport: Transport::https(HttpsAuth {
                username: username.clone(),
                password: password.clone(),
                ca_pem,
                identity,
                origin,
            }),
            app: None,
        }),
        AuthSecret::GitHubApp {
            app_id,
            installation_id,
            private_key,
            api_base,
        } => {
            let creds = AppCredentials {
                api_base: app_api_base(url, api_base.as_deref()),
                app_id: app_id.clone(),
                installation_id: installation_id.clone(),
                private_key_pem: private_key.clone(),
                ca_pem: ca_pem.clone(),
            };
            let repo = url.repo_path();
            let token = ctx
                .app_tokens
                .token(&creds, Some(&repo))
                .await
                .map_err(|e| app_problem(&e, ns, name))?;
            Ok(HttpsCredentials {
                description: source.summary(),
                transport: Transport::https(HttpsAuth {
                    username: GIT_USERNAME.to_string(),
                    password: token.token,
                    ca_pem,
                    identity,
                    origin,
                }),
                app: Some(creds),
            })
        }
    }
}

/// Drops the cached App token of `creds` for `url` (git refused it: revoked early).
pub fn forget_token(ctx: &Context, url: &RepoUrl, creds: &HttpsCredentials) {
    if let Some(app) = &creds.app {
        ctx.app_tokens.invalidate(app, Some(&url.repo_path()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn refused(pairs: &[(&str, &str)]) -> Problem {
        match parse_auth_secret(&secret(pairs), "ns", "creds") {
            Ok(_) => panic!("accepted {pairs:?}"),
            Err(p) => p,
        }
    }

    const KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n";

    #[test]
    fn tokens_and_apps_parse_with_flux_key_names() {
        let p = parse_auth_secret(&secret(&[("password", "ghp_abc\n")]), "ns", "c").unwrap();
        match p.auth {
            AuthSecret::Basic { username, password } => {
                assert_eq!(username, "git");
                assert_eq!(password.as_str(), "ghp_abc", "trailing newline dropped");
            }
            AuthSecret::GitHubApp { .. } => panic!("not an app"),
        }
        let p = parse_auth_secret(
            &secret(&[
                ("githubAppID", "12345"),
                ("githubAppInstallationID", "678"),
                ("githubAppPrivateKey", KEY),
                ("githubAppBaseURL", "https://ghe.corp/api/v3/"),
                (
                    "caFile",
                    "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----",
                ),
            ]),
            "ns",
            "c",
        )
        .unwrap();
        assert!(p.ca_pem.is_some());
        match p.auth {
            AuthSecret::GitHubApp {
                app_id,
                installation_id,
                api_base,
                ..
            } => {
                assert_eq!(
                    (app_id.as_str(), installation_id.as_str()),
                    ("12345", "678")
                );
                let url = RepoUrl::parse("https://ghe.corp/acme/apps.git").unwrap();
                assert_eq!(
                    app_api_base(&url, api_base.as_deref()),
                    "https://ghe.corp/api/v3"
                );
                assert_eq!(app_api_base(&url, None), "https://ghe.corp/api/v3");
                let gh = RepoUrl::parse("https://github.com/acme/apps.git").unwrap();
                assert_eq!(app_api_base(&gh, None), "https://api.github.com");
            }
            AuthSecret::Basic { .. } => panic!("an app"),
        }
    }

    #[test]
    fn bad_secrets_name_the_key_never_the_value() {
        for (pairs, needle) in [
            (vec![("username", "bot")], "has no key password"),
            (vec![("password", "  ")], "empty password"),
            (vec![("password", "a\nb")], "line break"),
            (
                vec![("password", "s3cr3t"), ("username", "a:b")],
                "username",
            ),
            (vec![("password", "s3cr3t"), ("githubAppID", "1")], "both"),
            (
                vec![("githubAppID", "1"), ("githubAppPrivateKey", KEY)],
                "githubAppInstallationID",
            ),
            (
                vec![
                    ("githubAppID", "1"),
                    ("githubAppInstallationID", "x"),
                    ("githubAppPrivateKey", KEY),
                ],
                "not a number",
            ),
            (
                vec![
                    ("githubAppID", "1"),
                    ("githubAppInstallationID", "2"),
                    ("githubAppPrivateKey", "s3cr3t"),
                ],
                "not a PEM private key",
            ),
            (
                vec![
                    ("githubAppID", "1"),
                    ("githubAppInstallationID", "2"),
                    ("githubAppPrivateKey", KEY),
                    ("githubEnterpriseApiUrl", "http://ghe/api/v3"),
                ],
                "https://",
            ),
            (vec![("password", "s3cr3t"), ("caFile", "s3cr3t")], "caFile"),
        ] {
            let p = refused(&pairs);
            assert_eq!(p.reason, Reason::RepositoryCredentialsInvalid, "{pairs:?}");
            assert!(p.stalled);
            assert!(p.message.contains(needle), "{pairs:?}: {}", p.message);
            assert!(p.message.contains("ns/creds"), "{}", p.message);
            assert!(!p.message.contains("s3cr3t"), "{}", p.message);
        }
    }

    #[test]
    fn identities_hold_no_secret() {
        let d = short_digest(&[b"git", b"ghp_secret"]);
        assert_eq!(d.len(), 16);
        assert_ne!(d, short_digest(&[b"git", b"ghp_other"]));
        assert!(!d.contains("secret"));
    }
}
