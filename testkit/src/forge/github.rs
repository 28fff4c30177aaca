//! GitHub's REST API as the operator uses it: GitHub App installation tokens and pulls.
//!
//! Sources (docs.github.com):
//! - "Generating a JSON Web Token (JWT) for a GitHub App" (apps/creating-github-apps/
//!   authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app): RS256,
//!   `iat` (60 s in the past recommended), `exp` at most 10 minutes ahead, `iss` = client ID or
//!   App ID.
//! - "Generating an installation access token for a GitHub App" and REST "Create an
//!   installation access token for an app" (rest/apps/apps#create-an-installation-access-token-
//!   for-an-app): `POST /app/installations/{installation_id}/access_tokens` with
//!   `Authorization: Bearer <JWT>` answers 201 `{token, expires_at, permissions,
//!   repository_selection}`; tokens last one hour; the token is used for git over HTTPS as
//!   `x-access-token:<token>` ("Authenticating as a GitHub App installation").
//! - REST "Get a repository installation for the authenticated app"
//!   (rest/apps/apps#get-a-repository-installation-for-the-authenticated-app).
//! - REST pulls (rest/pulls/pulls): "Create a pull request" (201; 422 Validation Failed),
//!   "List pull requests" (`state`, `head=user:ref-name`, `base`, `sort`, `direction`,
//!   `per_page` ≤ 100 default 30, `page`; `Link` header per "Using pagination in the REST
//!   API"), "Get a pull request", "Update a pull request" (`title`, `body`, `state`, `base`),
//!   "Check if a pull request has been merged" (204/404), "Merge a pull request" (200
//!   `{sha, merged, message}`, 405 not mergeable, 409 head sha mismatch).
//!
//! The duplicate error body is GitHub's as clients quote it:
//! `{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom",
//! "message":"A pull request already exists for acme:feature."}],"documentation_url":...}`.
//! Everything is also served under `/api/v3` (GitHub Enterprise Server's API prefix).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{
    bearer, commits_ahead, link_header, lock, paginate, q_get, query_pairs, record,
    ApiRequestRecord, Common, MergeError, MergeMethod, PrState, PrStore, PullRequest,
};
use crate::httpgit::{Access, AuthOutcome, HttpGitServer, TokenGrant};
use crate::tls::{serve_tls, Served};

const DOCS: &str = "https://docs.github.com/rest";
const DOC_TOKEN: &str =
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
const DOC_CREATE_PR: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
const DOC_MERGE_PR: &str = "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request";

/// GitHub's message for a JWT it cannot decode (bad format, signature, key or algorithm).
pub const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
/// GitHub's message for a missing, non-numeric or past `exp`.
pub const JWT_BAD_EXP: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
/// GitHub's message for `exp` more than 10 minutes after `iat`.
pub const JWT_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
/// GitHub's message for a missing, non-numeric or future `iat`.
pub const JWT_BAD_IAT: &str =
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

/// One installation of the App.
#[derive(Clone, Debug)]
pub struct Installation {
    /// Installation id.
    pub id: u64,
    /// Account (user or organisation) it is installed on.
    pub account: String,
    /// Repositories (`owner/name`) selected.
    pub repos: BTreeSet<String>,
    /// `contents` permission: ReadWrite = `write`, ReadOnly = `read`.
    pub contents: Access,
    /// Suspended installations issue no tokens (403).
    pub suspended: bool,
}

/// A token the emulator issued.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The `ghs_...` token.
    pub token: String,
    /// For which installation.
    pub installation_id: u64,
    /// When it stops working.
    pub expires_at: SystemTime,
}

/// Shape of the installation tokens issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFormat {
    /// `ghs_` + 36 alphanumerics (40 characters), the long-standing format.
    Classic,
    /// `ghs_<APPID>_<JWT>`: the stateless format GitHub began rolling out on 2026-04-27
    /// ("Generating an installation access token for a GitHub App", note): a few hundred
    /// characters with `.`, `-` and `_`.
    Stateless,
}

struct GhState {
    token_format: TokenFormat,
    app_id: u64,
    client_id: String,
    public_key: RsaPublicKey,
    installations: BTreeMap<u64, Installation>,
    next_installation: u64,
    token_lifetime: Duration,
    issued: Vec<IssuedToken>,
    prs: PrStore,
    api_url: String,
}

type Shared = (Common, Arc<Mutex<GhState>>);

/// A running GitHub emulator; stops when dropped.
pub struct GitHubEmulator {
    served: Served,
    common: Common,
    state: Arc<Mutex<GhState>>,
    private_key_pem: String,
}

/// A fresh 2048-bit RSA key, PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`, as GitHub hands out App keys).
pub fn generate_rsa_key_pem() -> Result<String> {
    let key = RsaPrivateKey::new(&mut rand_core::OsRng, 2048)?;
    Ok(key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)?.to_string())
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Signs `claims` as an RS256 JWT with `private_key_pem` (PKCS#1 or PKCS#8).
pub fn sign_jwt(private_key_pem: &str, claims: &Value) -> Result<String> {
    let key = RsaPrivateKey::from_pkcs1_pem(private_key_pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(private_key_pem))
        .context("parsing the RSA private key")?;
    let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = b64(serde_json::to_string(claims)?.as_bytes());
    let input = format!("{header}.{payload}");
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key);
    let sig = signer.try_sign(input.as_bytes())?.to_bytes();
    Ok(format!("{input}.{}", b64(&sig)))
}

/// The JWT GitHub's docs describe for App `iss`: `iat` 60 s ago, `exp` 9 minutes ahead.
pub fn app_jwt(private_key_pem: &str, iss: &str) -> Result<String> {
    let now = unix_now();
    sign_jwt(
        private_key_pem,
        &json!({"iat": now - 60, "exp": now + 540, "iss": iss}),
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl GitHubEmulator {
    /// Starts the emulator at `https://127.0.0.1:<port>` (same CA as `git`) with a new App
    /// (random id, fresh RSA key) and no installations.
    pub fn start(git: &HttpGitServer) -> Result<GitHubEmulator> {
        let private_key_pem = generate_rsa_key_pem()?;
        let key = RsaPrivateKey::from_pkcs1_pem(&private_key_pem)?;
        let common = Common::new(git);
        let app_id = 100_000 + (rand_u64() % 900_000);
        let state = Arc::new(Mutex::new(GhState {
            token_format: TokenFormat::Classic,
            app_id,
            client_id: format!("Iv23li{:014x}", rand_u64() >> 8),
            public_key: key.to_public_key(),
            installations: BTreeMap::new(),
            next_installation: 40_000_000 + (rand_u64() % 1_000_000),
            token_lifetime: Duration::from_secs(3600),
            issued: Vec::new(),
            prs: PrStore::default(),
            api_url: String::new(),
        }));
        let shared: Shared = (common.clone(), state.clone());
        let api = Router::new()
            .route("/app", get(get_app))
            .route(
                "/app/installations/{installation_id}/access_tokens",
                post(create_token),
            )
            .route("/repos/{owner}/{repo}/installation", get(repo_installation))
            .route(
                "/repos/{owner}/{repo}/pulls",
                get(list_pulls).post(create_pull),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{number}",
                get(get_pull).patch(update_pull),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/merge",
                get(is_merged).put(merge_pull),
            )
            .fallback(not_found_route)
            .with_state(shared);
        let router = Router::new().nest("/api/v3", api.clone()).merge(api).layer(
            axum::middleware::from_fn_with_state(common.log.clone(), record),
        );
        let served = serve_tls(router, git.ca().server_config())?;
        lock(&state).api_url = served.base_url();
        Ok(GitHubEmulator {
            served,
            common,
            state,
            private_key_pem,
        })
    }

    /// API base URL (`GITHUB_API_URL`), `https://127.0.0.1:<port>`; `<that>/api/v3` works too.
    pub fn api_url(&self) -> String {
        self.served.base_url()
    }

    /// The App id (`iss` as a number or string).
    pub fn app_id(&self) -> u64 {
        lock(&self.state).app_id
    }

    /// The App's client id (`Iv23li...`, also accepted as `iss`).
    pub fn client_id(&self) -> String {
        lock(&self.state).client_id.clone()
    }

    /// The App's private key, PKCS#1 PEM (what a user puts into `githubAppPrivateKey`).
    pub fn private_key_pem(&self) -> String {
        self.private_key_pem.clone()
    }

    /// Installs the App on `account` for `repos` (`owner/name`), with `contents` write
    /// (ReadWrite) or read (ReadOnly), `pull_requests: write`, `metadata: read`.
    pub fn install(&self, account: &str, repos: &[&str], contents: Access) -> u64 {
        let mut st = lock(&self.state);
        st.next_installation += 1;
        let id = st.next_installation;
        st.installations.insert(
            id,
            Installation {
                id,
                account: account.to_string(),
                repos: repos.iter().map(|s| s.to_string()).collect(),
                contents,
                suspended: false,
            },
        );
        id
    }

    /// Removes an installation; its tokens are revoked.
    pub fn uninstall(&self, id: u64) {
        lock(&self.state).installations.remove(&id);
        self.revoke_tokens(id);
    }

    /// Suspends (or resumes) an installation.
    pub fn suspend(&self, id: u64, suspended: bool) {
        if let Some(i) = lock(&self.state).installations.get_mut(&id) {
            i.suspended = suspended;
        }
    }

    /// Lifetime of tokens issued from now on (GitHub: one hour).
    pub fn set_token_lifetime(&self, d: Duration) {
        lock(&self.state).token_lifetime = d;
    }

    /// Format of tokens issued from now on.
    pub fn set_token_format(&self, f: TokenFormat) {
        lock(&self.state).token_format = f;
    }

    /// Every token issued so far.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        lock(&self.state).issued.clone()
    }

    /// Revokes every token of installation `id` (git and API refuse them: 401).
    pub fn revoke_tokens(&self, id: u64) {
        for t in self.issued_tokens() {
            if t.installation_id == id {
                self.common.creds.revoke_token(&t.token);
            }
        }
    }

    /// Makes every issued token expire now.
    pub fn expire_tokens(&self) {
        for t in self.issued_tokens() {
            self.common.creds.expire_token(&t.token);
        }
    }

    /// Every API request so far.
    pub fn requests(&self) -> Vec<ApiRequestRecord> {
        self.common.requests()
    }

    /// Pull requests of `repo` (`owner/name`), by number.
    pub fn prs(&self, repo: &str) -> Vec<PullRequest> {
        lock(&self.state).prs.list(repo)
    }

    /// Merges PR `n` of `repo` as a user would in the UI (a merge commit).
    pub fn merge(&self, repo: &str, n: u64) -> Result<PullRequest> {
        lock(&self.state)
            .prs
            .merge(&self.common.repos, repo, n, MergeMethod::Merge, None, None)
            .map_err(|e| anyhow::anyhow!("merge {repo}#{n}: {e:?}"))
    }

    /// Closes PR `n` of `repo` without merging.
    pub fn close(&self, repo: &str, n: u64) -> Result<()> {
        let mut st = lock(&self.state);
        let p = st
            .prs
            .get_mut(repo, n)
            .with_context(|| format!("no PR {repo}#{n}"))?;
        p.state = PrState::Closed;
        p.closed_at = Some(super::now_rfc3339());
        Ok(())
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut b);
    u64::from_le_bytes(b)
}

fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = [0u8; 36];
    let _ = rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut b);
    let s: String = b
        .iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect();
    format!("ghs_{s}")
}

fn stateless_token(app_id: u64, installation: u64) -> String {
    let mut sig = [0u8; 64];
    let _ = rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut sig);
    format!(
        "ghs_{app_id}_{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(
            json!({"iid": installation, "exp": unix_now() + 3600, "n": rand_u64()})
                .to_string()
                .as_bytes()
        ),
        b64(&sig)
    )
}

fn respond(status: u16, body: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

/// GitHub's error body: `{message, documentation_url, status}`.
fn error(status: u16, message: &str, doc: &str) -> Response {
    respond(
        status,
        json!({"message": message, "documentation_url": doc, "status": status.to_string()}),
    )
}

async fn not_found_route() -> Response {
    error(404, "Not Found", DOCS)
}

/// Verifies the App JWT of the request; `Err` is the 401 to answer.
fn check_jwt(st: &GhState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(jwt) = bearer(headers, &["Bearer"]) else {
        return Err(error(401, "A JSON web token could not be decoded", DOCS));
    };
    let undecodable = || error(401, JWT_UNDECODABLE, DOCS);
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err(undecodable());
    }
    let dec =
        |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
    let (Ok(h), Ok(p), Ok(sig)) = (dec(parts[0]), dec(parts[1]), dec(parts[2])) else {
        return Err(undecodable());
    };
    let (Ok(h), Ok(claims)) = (
        serde_json::from_slice::<Value>(&h),
        serde_json::from_slice::<Value>(&p),
    ) else {
        return Err(undecodable());
    };
    if h.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(undecodable());
    }
    let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(st.public_key.clone());
    let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig.as_slice()) else {
        return Err(undecodable());
    };
    let input = format!("{}.{}", parts[0], parts[1]);
    if vk.verify(input.as_bytes(), &sig).is_err() {
        return Err(undecodable());
    }
    // iss: the App id (number or numeric string) or the client id.
    let iss_ok = match claims.get("iss") {
        Some(Value::Number(n)) => n.as_u64() == Some(st.app_id),
        Some(Value::String(s)) => s == &st.app_id.to_string() || s == &st.client_id,
        _ => false,
    };
    if !iss_ok {
        return Err(undecodable());
    }
    let now = unix_now();
    let Some(iat) = claims.get("iat").and_then(Value::as_i64) else {
        return Err(error(401, JWT_BAD_IAT, DOCS));
    };
    if iat > now + 60 {
        return Err(error(401, JWT_BAD_IAT, DOCS));
    }
    let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
        return Err(error(401, JWT_BAD_EXP, DOCS));
    };
    if exp <= now {
        return Err(error(401, JWT_BAD_EXP, DOCS));
    }
    if exp - iat > 600 {
        return Err(error(401, JWT_EXP_TOO_FAR, DOCS));
    }
    Ok(())
}

fn permissions(i: &Installation) -> Value {
    json!({
        "contents": if i.contents == Access::ReadWrite { "write" } else { "read" },
        "metadata": "read",
        "pull_requests": "write",
    })
}

fn installation_json(st: &GhState, i: &Installation) -> Value {
    json!({
        "id": i.id,
        "account": {"login": i.account, "id": 1000 + i.id % 1000, "type": "Organization"},
        "app_id": st.app_id,
        "client_id": st.client_id,
        "app_slug": "tooljet-gitsync-test",
        "target_type": "Organization",
        "repository_selection": "selected",
        "access_tokens_url": format!("{}/app/installations/{}/access_tokens", st.api_url, i.id),
        "repositories_url": format!("{}/installation/repositories", st.api_url),
        "html_url": format!("{}/organizations/{}/settings/installations/{}", st.api_url, i.account, i.id),
        "permissions": permissions(i),
        "events": [],
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "suspended_at": if i.suspended { Value::from("2026-01-02T00:00:00Z") } else { Value::Null },
    })
}

/// `GET /app` (JWT): the authenticated App ("Get the authenticated app").
async fn get_app(State((_, st)): State<Shared>, headers: HeaderMap) -> Response {
    let st = lock(&st);
    if let Err(r) = check_jwt(&st, &headers) {
        return r;
    }
    respond(
        200,
        json!({"id": st.app_id, "client_id": st.client_id, "slug": "tooljet-gitsync-test",
               "name": "tooljet-gitsync test", "owner": {"login": "testkit"},
               "permissions": {"contents": "write", "metadata": "read", "pull_requests": "write"},
               "events": [], "installations_count": st.installations.len()}),
    )
}

/// `POST /app/installations/{installation_id}/access_tokens` (JWT) — "Create an installation
/// access token for an app": 201 with the token; 404 for an unknown installation; 403 for a
/// suspended one; 422 when `repositories` names a repository outside the installation.
async fn create_token(
    State((common, st)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&st);
    if let Err(r) = check_jwt(&st, &headers) {
        return r;
    }
    let Some(inst) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| st.installations.get(&id).cloned())
    else {
        return error(404, "Not Found", DOC_TOKEN);
    };
    if inst.suspended {
        return error(403, "This installation has been suspended", DOC_TOKEN);
    }
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return error(400, "Problems parsing JSON", DOC_TOKEN),
        }
    };
    let mut repos = inst.repos.clone();
    if let Some(names) = req.get("repositories").and_then(Value::as_array) {
        let mut narrowed = BTreeSet::new();
        for n in names {
            let n = n.as_str().unwrap_or_default();
            let full = if n.contains('/') {
                n.to_string()
            } else {
                format!("{}/{n}", inst.account)
            };
            if !inst.repos.contains(&full) {
                return error(
                    422,
                    "There is at least one repository that does not exist or is not accessible to the parent installation.",
                    DOC_TOKEN,
                );
            }
            narrowed.insert(full);
        }
        repos = narrowed;
    }
    let mut access = inst.contents;
    if let Some(c) = req.pointer("/permissions/contents").and_then(Value::as_str) {
        match (c, inst.contents) {
            ("read", _) => access = Access::ReadOnly,
            ("write", Access::ReadWrite) => {}
            _ => {
                return error(
                    422,
                    "The permissions requested are not granted to this installation.",
                    DOC_TOKEN,
                )
            }
        }
    }
    let token = match st.token_format {
        TokenFormat::Classic => random_token(),
        TokenFormat::Stateless => stateless_token(st.app_id, inst.id),
    };
    let expires_at = SystemTime::now() + st.token_lifetime;
    common.creds.add_grant(
        &token,
        TokenGrant {
            access,
            username: Some("x-access-token".into()),
            repos: Some(repos.clone()),
            expires_at: Some(expires_at),
        },
    );
    st.issued.push(IssuedToken {
        token: token.clone(),
        installation_id: inst.id,
        expires_at,
    });
    let mut perms = permissions(&inst);
    perms["contents"] = json!(if access == Access::ReadWrite {
        "write"
    } else {
        "read"
    });
    let mut out = json!({
        "token": token,
        "expires_at": rfc3339(expires_at),
        "permissions": perms,
        "repository_selection": "selected",
    });
    if req.get("repositories").is_some() {
        out["repositories"] = repos
            .iter()
            .map(|r| json!({"full_name": r, "name": r.rsplit('/').next().unwrap_or(r)}))
            .collect();
    }
    respond(201, out)
}

/// `GET /repos/{owner}/{repo}/installation` (JWT) — "Get a repository installation for the
/// authenticated app": 200 installation, 404 when the App is not installed there.
async fn repo_installation(
    State((_, st)): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let st = lock(&st);
    if let Err(r) = check_jwt(&st, &headers) {
        return r;
    }
    let full = format!("{owner}/{repo}");
    match st.installations.values().find(|i| i.repos.contains(&full)) {
        Some(i) => respond(200, installation_json(&st, i)),
        None => error(
            404,
            "Not Found",
            "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app",
        ),
    }
}

/// Token auth for the repository routes (`Authorization: Bearer|token <t>`): 401 "Requires
/// authentication" without one, 401 "Bad credentials" for an unknown/expired one, 404 when
/// the token does not reach the repository (GitHub hides private repositories).
fn check_token(common: &Common, headers: &HeaderMap, repo: &str) -> Result<Access, Response> {
    let Some(t) = bearer(headers, &["Bearer", "token"]) else {
        return Err(error(401, "Requires authentication", DOCS));
    };
    match common.creds.check_token(&t, repo) {
        AuthOutcome::Granted(a) => Ok(a),
        AuthOutcome::Unauthenticated => Err(error(401, "Bad credentials", DOCS)),
        AuthOutcome::NoAccess => Err(error(404, "Not Found", DOCS)),
    }
}

fn repo_exists(common: &Common, repo: &str) -> Result<(), Response> {
    if common.repos.exists(repo) {
        Ok(())
    } else {
        Err(error(404, "Not Found", DOCS))
    }
}

fn branch_json(common: &Common, repo: &str, owner: &str, branch: &str, api: &str) -> Value {
    json!({
        "label": format!("{owner}:{branch}"),
        "ref": branch,
        "sha": common.repos.branch_sha(repo, branch),
        "user": {"login": owner},
        "repo": {"full_name": repo, "name": repo.rsplit('/').next().unwrap_or(repo),
                 "private": true, "url": format!("{api}/repos/{repo}"),
                 "html_url": format!("{}/{repo}", common.repos.base_url()),
                 "clone_url": common.repos.url(repo)},
    })
}

/// A pull request as "Get a pull request" shows it; `simple` = the list's shape (no
/// `merged`, `mergeable`, counts).
fn pr_json(common: &Common, api: &str, repo: &str, p: &PullRequest, simple: bool) -> Value {
    let owner = repo.split('/').next().unwrap_or(repo);
    let state = if p.state == PrState::Open {
        "open"
    } else {
        "closed"
    };
    let mut v = json!({
        "url": format!("{api}/repos/{repo}/pulls/{}", p.number),
        "id": p.id,
        "node_id": format!("PR_kwDO{:010}", p.id),
        "html_url": format!("{}/{repo}/pull/{}", common.repos.base_url(), p.number),
        "diff_url": format!("{}/{repo}/pull/{}.diff", common.repos.base_url(), p.number),
        "number": p.number,
        "state": state,
        "locked": false,
        "title": p.title,
        "user": {"login": p.author, "type": "Bot"},
        "body": p.body,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "closed_at": p.closed_at,
        "merged_at": p.merged_at,
        "merge_commit_sha": p.merge_commit_sha,
        "draft": false,
        "head": branch_json(common, repo, owner, &p.head, api),
        "base": branch_json(common, repo, owner, &p.base, api),
        "author_association": "NONE",
    });
    if !simple {
        let open = p.state == PrState::Open;
        v["merged"] = json!(p.state == PrState::Merged);
        v["mergeable"] = if open { json!(true) } else { Value::Null };
        v["mergeable_state"] = json!(if open { "clean" } else { "unknown" });
        v["comments"] = json!(0);
        v["commits"] =
            json!(commits_ahead(&common.repos, repo, &p.base, &p.head).unwrap_or_default());
    }
    v
}

fn validation_failed(errors: Value) -> Response {
    respond(
        422,
        json!({"message": "Validation Failed", "errors": errors, "documentation_url": DOC_CREATE_PR, "status": "422"}),
    )
}

/// `POST /repos/{owner}/{repo}/pulls` — "Create a pull request".
async fn create_pull(
    State((common, st)): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let repo = format!("{owner}/{name}");
    if let Err(r) = check_token(&common, &headers, &repo).and_then(|_| repo_exists(&common, &repo))
    {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Problems parsing JSON", DOC_CREATE_PR);
    };
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(|s| s.to_string());
    let (Some(head_raw), Some(base)) = (s("head"), s("base")) else {
        return validation_failed(
            json!([{"resource": "PullRequest", "field": if s("head").is_none() { "head" } else { "base" }, "code": "missing_field"}]),
        );
    };
    let Some(title) = s("title") else {
        return validation_failed(
            json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]),
        );
    };
    // `head` is `branch` or `owner:branch` (same-repository PRs only here).
    let head = match head_raw.split_once(':') {
        Some((o, b)) if o == owner => b.to_string(),
        Some(_) => {
            return validation_failed(
                json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
            )
        }
        None => head_raw.clone(),
    };
    if common.repos.branch_sha(&repo, &base).is_none() {
        return validation_failed(
            json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
        );
    }
    if common.repos.branch_sha(&repo, &head).is_none() {
        return validation_failed(
            json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
        );
    }
    let mut st = lock(&st);
    if st
        .prs
        .list(&repo)
        .iter()
        .any(|p| p.is_open() && p.head == head && p.base == base)
    {
        return validation_failed(json!([{"resource": "PullRequest", "code": "custom",
            "message": format!("A pull request already exists for {owner}:{head}.")}]));
    }
    if commits_ahead(&common.repos, &repo, &base, &head).unwrap_or(0) == 0 {
        return validation_failed(json!([{"resource": "PullRequest", "code": "custom",
            "message": format!("No commits between {base} and {head}")}]));
    }
    let pr = st.prs.create(
        &repo,
        &head,
        &base,
        &title,
        s("body"),
        "tooljet-gitsync[bot]",
    );
    let api = st.api_url.clone();
    let mut r = respond(201, pr_json(&common, &api, &repo, &pr, false));
    if let Ok(v) = HeaderValue::from_str(&format!("{api}/repos/{repo}/pulls/{}", pr.number)) {
        r.headers_mut().insert("location", v);
    }
    r
}

/// `GET /repos/{owner}/{repo}/pulls` — "List pull requests": `state` (open), `head`
/// (`user:ref-name`), `base`, `sort` (created), `direction` (desc for created), `per_page`
/// (30, at most 100), `page` (1); `Link` header with prev/next/last/first.
async fn list_pulls(
    State((common, st)): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    if let Err(r) = check_token(&common, &headers, &repo).and_then(|_| repo_exists(&common, &repo))
    {
        return r;
    }
    let q = query_pairs(uri.query().unwrap_or_default());
    let state = q_get(&q, "state").unwrap_or("open");
    if !["open", "closed", "all"].contains(&state) {
        return validation_failed(
            json!([{"resource": "PullRequest", "field": "state", "code": "invalid"}]),
        );
    }
    let head = q_get(&q, "head").map(|h| match h.split_once(':') {
        Some((o, b)) => (Some(o.to_string()), b.to_string()),
        None => (None, h.to_string()),
    });
    let base = q_get(&q, "base");
    let per_page = q_get(&q, "per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .clamp(1, 100);
    let page = q_get(&q, "page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize);
    let st = lock(&st);
    let mut list: Vec<PullRequest> = st
        .prs
        .list(&repo)
        .into_iter()
        .filter(|p| match state {
            "open" => p.is_open(),
            "closed" => !p.is_open(),
            _ => true,
        })
        .filter(|p| match &head {
            Some((o, b)) => o.as_deref().is_none_or(|o| o == owner) && &p.head == b,
            None => true,
        })
        .filter(|p| base.is_none_or(|b| p.base == b))
        .collect();
    let asc = q_get(&q, "direction") == Some("asc");
    list.sort_by_key(|p| p.number);
    if !asc {
        list.reverse();
    }
    let pg = paginate(&list, page, per_page);
    let api = st.api_url.clone();
    let items: Vec<Value> = pg
        .items
        .iter()
        .map(|p| pr_json(&common, &api, &repo, p, true))
        .collect();
    let mut r = respond(200, Value::Array(items));
    let url = format!("{api}{}", uri.path());
    if let Some(link) = link_header(
        &url,
        &q,
        &pg,
        "per_page",
        &["prev", "next", "last", "first"],
        false,
    ) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert("link", v);
        }
    }
    r
}

fn parse_number(n: &str) -> Option<u64> {
    n.parse().ok()
}

/// `GET /repos/{owner}/{repo}/pulls/{pull_number}` — "Get a pull request".
async fn get_pull(
    State((common, st)): State<Shared>,
    Path((owner, name, number)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    if let Err(r) = check_token(&common, &headers, &repo).and_then(|_| repo_exists(&common, &repo))
    {
        return r;
    }
    let st = lock(&st);
    match parse_number(&number).and_then(|n| st.prs.get(&repo, n)) {
        Some(p) => respond(200, pr_json(&common, &st.api_url, &repo, &p, false)),
        None => error(404, "Not Found", DOCS),
    }
}

/// `PATCH /repos/{owner}/{repo}/pulls/{pull_number}` — "Update a pull request": `title`,
/// `body`, `state` (`open`/`closed`), `base`. Reopening a merged PR is 422.
async fn update_pull(
    State((common, st)): State<Shared>,
    Path((owner, name, number)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let repo = format!("{owner}/{name}");
    if let Err(r) = check_token(&common, &headers, &repo).and_then(|_| repo_exists(&common, &repo))
    {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Problems parsing JSON", DOCS);
    };
    let mut st = lock(&st);
    let api = st.api_url.clone();
    let Some(p) = parse_number(&number).and_then(|n| st.prs.get_mut(&repo, n)) else {
        return error(404, "Not Found", DOCS);
    };
    if let Some(state) = req.get("state").and_then(Value::as_str) {
        match (state, p.state) {
            ("closed", PrState::Open) => {
                p.state = PrState::Closed;
                p.closed_at = Some(super::now_rfc3339());
            }
            ("open", PrState::Closed) => {
                p.state = PrState::Open;
                p.closed_at = None;
            }
            ("open", PrState::Merged) => {
                return validation_failed(json!([{"resource": "PullRequest", "code": "custom",
                    "message": "state cannot be changed. The pull request cannot be reopened because it has been merged."}]))
            }
            ("open" | "closed", _) => {}
            _ => {
                return validation_failed(
                    json!([{"resource": "PullRequest", "field": "state", "code": "invalid"}]),
                )
            }
        }
    }
    if let Some(t) = req.get("title").and_then(Value::as_str) {
        p.title = t.to_string();
    }
    if let Some(b) = req.get("body") {
        p.body = b.as_str().map(|s| s.to_string());
    }
    if let Some(b) = req.get("base").and_then(Value::as_str) {
        if common.repos.branch_sha(&repo, b).is_none() {
            return validation_failed(
                json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
            );
        }
        p.base = b.to_string();
    }
    p.updated_at = super::now_rfc3339();
    let p = p.clone();
    respond(200, pr_json(&common, &api, &repo, &p, false))
}

/// `GET /repos/{owner}/{repo}/pulls/{pull_number}/merge` — "Check if a pull request has been
/// merged": 204 if merged, 404 if not.
async fn is_merged(
    State((common, st)): State<Shared>,
    Path((owner, name, number)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    if let Err(r) = check_token(&common, &headers, &repo) {
        return r;
    }
    let st = lock(&st);
    match parse_number(&number).and_then(|n| st.prs.get(&repo, n)) {
        Some(p) if p.state == PrState::Merged => StatusCode::NO_CONTENT.into_response(),
        _ => error(404, "Not Found", DOCS),
    }
}

/// `PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge` — "Merge a pull request":
/// `commit_title`, `commit_message`, `sha`, `merge_method` (merge/squash/rebase; rebase is a
/// fast-forward here). 200 `{sha, merged: true, message: "Pull Request successfully merged"}`;
/// 405 "Pull Request is not mergeable" (closed, merged, conflicts); 409 "Head branch was
/// modified. Review and try the merge again." (sha mismatch); 403 with a read-only token.
async fn merge_pull(
    State((common, st)): State<Shared>,
    Path((owner, name, number)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let repo = format!("{owner}/{name}");
    let access = match check_token(&common, &headers, &repo) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if access != Access::ReadWrite {
        return error(403, "Resource not accessible by integration", DOC_MERGE_PR);
    }
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return error(400, "Problems parsing JSON", DOC_MERGE_PR),
        }
    };
    let method = match req
        .get("merge_method")
        .and_then(Value::as_str)
        .unwrap_or("merge")
    {
        "merge" => MergeMethod::Merge,
        "squash" => MergeMethod::Squash,
        "rebase" => MergeMethod::FastForward,
        _ => {
            return validation_failed(
                json!([{"resource": "PullRequest", "field": "merge_method", "code": "invalid"}]),
            )
        }
    };
    let Some(n) = parse_number(&number) else {
        return error(404, "Not Found", DOCS);
    };
    let mut st = lock(&st);
    let message = req.get("commit_title").and_then(Value::as_str).map(|t| {
        match req.get("commit_message").and_then(Value::as_str) {
            Some(m) => format!("{t}\n\n{m}"),
            None => t.to_string(),
        }
    });
    let sha = req.get("sha").and_then(Value::as_str);
    match st.prs.merge(&common.repos, &repo, n, method, message, sha) {
        Ok(p) => respond(
            200,
            json!({"sha": p.merge_commit_sha, "merged": true, "message": "Pull Request successfully merged"}),
        ),
        Err(MergeError::NotFound) => error(404, "Not Found", DOCS),
        Err(MergeError::ShaMismatch(_)) => error(
            409,
            "Head branch was modified. Review and try the merge again.",
            DOC_MERGE_PR,
        ),
        Err(MergeError::NotOpen | MergeError::Conflict | MergeError::BranchMissing) => {
            error(405, "Pull Request is not mergeable", DOC_MERGE_PR)
        }
        Err(MergeError::Git(e)) => error(500, &e, DOCS),
    }
}
