//! The async ToolJet client: its state, constructor and accessors. The work is in the
//! submodules, lowest layer first: `http` (URLs, one HTTP exchange, transport errors,
//! redaction, backoff), `session` (session login), `transport` (one authenticated call with
//! retries and status mapping), then the operations: `apps` (listing, finding, exporting),
//! `workspaces` (workspaces and the server version), `import` (importing, renaming, deleting
//! and locking apps), `environments`, `constants` (names, and the values per environment) and
//! `datasources` (global data sources and their options). `replace_app` lives in `../replace.rs`.

mod apps;
mod constants;
mod datasources;
mod environments;
mod http;
mod import;
mod session;
mod transport;
mod workspaces;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use super::{ClientOptions, Credentials, Error};

/// How long an idle connection to ToolJet is kept. Every connection keeps the read buffer its
/// largest answer (an app listing, an export) grew, and one client exists per GitSyncConfig:
/// closing them between intervals (at least 30 s apart) returns that memory for a reconnect.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(20);

/// Idle connections kept per ToolJet host; a pass's bursts (`--concurrency` calls at once) open
/// more and close them when done.
const POOL_MAX_IDLE: usize = 4;

pub(crate) use apps::app_not_found;
pub(crate) use transport::Call;

/// ToolJet's `AppUpdateDto`/`AppCreateDto` limit app names to 50 characters.
pub(crate) const MAX_APP_NAME: usize = 50;

/// Async ToolJet client; cheap to clone, safe to share between tasks.
///
/// The server version is read once and cached; a session login is made lazily and renewed when
/// ToolJet answers 401.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    base: Url,
    pub(crate) credentials: Credentials,
    options: ClientOptions,
    version: OnceCell<String>,
    session: Mutex<Option<Session>>,
    /// Session tokens ToolJet issued, for redaction only.
    issued_tokens: std::sync::Mutex<Vec<SecretString>>,
}

/// A logged-in ToolJet session (session credentials only).
struct Session {
    token: SecretString,
    /// Workspaces this session's JWT is valid for (`organizationIds` of the JWT payload).
    orgs: BTreeSet<String>,
    /// The workspace ToolJet logged the user into by default.
    default_org: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Creates a client for the ToolJet at `base_url` (`http`/`https`, optionally with a path
    /// prefix; a trailing `/api` is accepted). Fails on an unusable URL.
    pub fn new(base_url: &str, credentials: Credentials) -> Result<Client, Error> {
        Client::with_options(base_url, credentials, ClientOptions::default())
    }

    /// Like [`Client::new`] with explicit timeouts, retries, size limits and transport rules.
    /// A plain `http://` URL to a host that is not loopback is refused here, before any
    /// request, unless `options.allow_insecure_http` is set.
    pub fn with_options(
        base_url: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Client, Error> {
        let url = normalise_base_url(base_url)?;
        if url.scheme() == "http" && !options.allow_insecure_http && !is_loopback(&url) {
            return Err(Error::InsecureUrl {
                url: url.to_string(),
            });
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder();
        for (host, ip) in &options.resolve {
            builder = builder.resolve(host, SocketAddr::new(*ip, 0));
        }
        let tls = crate::tls::client_config(None).map_err(|detail| Error::InvalidUrl {
            url: url.to_string(),
            detail: format!("cannot build an HTTP client: {detail}"),
        })?;
        let http = builder
            .tls_backend_preconfigured(tls)
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "tooljet-gitsync-operator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| Error::InvalidUrl {
                url: url.to_string(),
                detail: format!("cannot build an HTTP client: {}", http::error_chain(&e)),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: url,
                credentials,
                options,
                version: OnceCell::new(),
                session: Mutex::new(None),
                issued_tokens: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// The normalised base URL (without `/api`).
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// `"token"` or `"session"`.
    pub fn auth_mode(&self) -> &'static str {
        self.inner.credentials.mode()
    }

    pub(crate) fn token_mode(&self) -> bool {
        matches!(self.inner.credentials, Credentials::Token(_))
    }
}

/// Whether the URL's host is this machine by its very name (127.0.0.0/8, `::1` also as
/// `::ffff:127.x.y.z`, `localhost`), so plain http to it never crosses a network. Decided on
/// the URL, not on DNS: a name resolving to loopback today may not tomorrow.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Some(url::Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Checks `base_url` (http/https, a host, no credentials) and drops its query, fragment,
/// trailing slash and trailing `/api`.
fn normalise_base_url(base_url: &str) -> Result<Url, Error> {
    let raw = base_url.trim();
    let mut url = Url::parse(raw).map_err(|e| Error::InvalidUrl {
        // The raw text may contain userinfo; only echo it when it parses cleanly below.
        url: "<unparsable>".into(),
        detail: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("");
        let _ = url.set_password(None);
        return Err(Error::InvalidUrl {
            url: url.to_string(),
            detail: "the URL contains a user name or password; put credentials into the credentials Secret instead".into(),
        });
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(Error::InvalidUrl {
            url: url.to_string(),
            detail: format!("scheme {:?} is not http or https", url.scheme()),
        });
    }
    if url.host_str().is_none_or(str::is_empty) || url.cannot_be_a_base() {
        return Err(Error::InvalidUrl {
            url: url.to_string(),
            detail: "the URL has no host".into(),
        });
    }
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut segs = url.path_segments_mut().map_err(|_| Error::InvalidUrl {
            url: raw.to_string(),
            detail: "the URL cannot have a path".into(),
        })?;
        segs.pop_if_empty();
    }
    if url.path_segments().and_then(|mut s| s.next_back()) == Some("api") {
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop();
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(url: &str) -> bool {
        is_loopback(&Url::parse(url).unwrap())
    }

    #[test]
    fn loopback_hosts_by_name_and_address() {
        for yes in [
            "http://127.0.0.1:3000",
            "http://127.8.9.10/",
            "http://127.1/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:3000",
            "http://LOCALHOST./",
        ] {
            assert!(loopback(yes), "{yes}");
        }
        for no in [
            "http://tooljet.example.com",
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://128.0.0.1/",
            "http://[::2]/",
            "http://localhost.evil.example/",
            "http://mylocalhost/",
            "http://tooljet.localhost/",
        ] {
            assert!(!loopback(no), "{no}");
        }
    }

    fn build(url: &str, allow_insecure_http: bool) -> Result<Client, Error> {
        let options = ClientOptions {
            allow_insecure_http,
            ..ClientOptions::default()
        };
        Client::with_options(
            url,
            Credentials::Token(SecretString::from("tok-insecure")),
            options,
        )
    }

    #[test]
    fn plain_http_needs_loopback_or_the_opt_in() {
        let e = build("http://tooljet.example.com", false).unwrap_err();
        assert_eq!(e.reason(), "InsecureToolJetURL");
        assert!(!e.is_transient());
        let msg = e.to_string();
        assert!(msg.contains("use https"), "{msg}");
        assert!(
            msg.contains("spec.tooljet.allowInsecureHTTP: true"),
            "{msg}"
        );
        build("http://tooljet.example.com", true).unwrap();
        build("https://tooljet.example.com", false).unwrap();
        build("http://127.0.0.1:3000", false).unwrap();
        build("http://localhost:3000/api", false).unwrap();
        build("http://[::1]:3000", false).unwrap();
        // The scheme check comes after parsing, so userinfo is still refused first.
        let e = build("http://u:pw-secret@tooljet.example.com", false).unwrap_err();
        assert_eq!(e.reason(), "InvalidToolJetURL");
    }
}
