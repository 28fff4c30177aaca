//! What every forge call shares: one reqwest client with the user's CA added to the system
//! roots, an overall deadline and a body limit per request, and host messages made safe to
//! show (secrets redacted, cut short).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;

/// Largest answer body read from a forge API; a pull request or a token is a few KiB.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// Longest host message quoted in an error.
const MAX_QUOTE: usize = 300;

/// `User-Agent` of every call (GitHub refuses requests without one).
pub(crate) const USER_AGENT: &str = concat!("tooljet-gitsync-operator/", env!("CARGO_PKG_VERSION"));

/// One answer, read whole (within [`MAX_BODY`]).
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why no answer came.
#[derive(Debug)]
pub(crate) enum Transport {
    /// The deadline passed.
    Timeout,
    /// Connecting, TLS or reading failed.
    Failed(String),
    /// The body is larger than [`MAX_BODY`].
    TooLarge,
}

/// Builds the one client of a forge client or token cache: `ca_pem` (a bundle, Flux's
/// `caFile`) is trusted in addition to the system roots; redirects are never followed, so a
/// credential header never reaches another host.
pub(crate) fn build_client(
    ca_pem: Option<&str>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The CA bundle is trusted besides the system roots; one configuration per bundle.
    let tls = crate::tls::client_config(ca_pem)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| format!("cannot build an HTTPS client: {}", error_chain(&e)))
}

/// Checks an API base URL: https, or plain http to a loopback host only (a token must never
/// cross a network in clear); no credentials, query or fragment. The trailing `/` is dropped.
pub(crate) fn parse_api_base(api_base: &str) -> Result<Url, String> {
    let mut url = Url::parse(api_base.trim())
        .map_err(|e| format!("the API URL {:?} is not a URL: {e}", api_base.trim()))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "the API URL {url} is plain http to a host that is not this machine; use https"
            ))
        }
        other => return Err(format!("the API URL {url} has scheme {other:?}; use https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the API URL {url} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the API URL must not carry credentials; put the token in the Secret".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the API URL {url} must not have a query or fragment"
        ));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

/// `base` with `segments` appended, each percent-encoded as one segment (a `/` inside a
/// segment becomes `%2F`, as GitLab's project paths need).
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut u = base.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.pop_if_empty();
        p.extend(segments);
    }
    u
}

/// `host[:port]` of a URL, for messages.
pub(crate) fn host_label(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.to_string(),
    }
}

/// Whether the URL's host is this machine by its very name (decided on the URL, not on DNS).
pub(crate) fn is_loopback(url: &Url) -> bool {
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

/// A credential header value, marked sensitive so it is never logged by the HTTP stack.
pub(crate) fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Sends `req` and reads the whole answer within `timeout` and [`MAX_BODY`].
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Reply, Transport> {
    let work = async {
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(Transport::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Transport::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Transport::Timeout),
    }
}

fn transport(e: reqwest::Error) -> Transport {
    let e = e.without_url();
    if e.is_timeout() {
        Transport::Timeout
    } else {
        Transport::Failed(error_chain(&e))
    }
}

/// Text of an error and its sources.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// The host's own words from an error body: GitHub/Gitea `message` (plus GitHub's
/// `errors[].message`), GitLab `message` (a string, a list, or field -> list) or `error`;
/// a non-JSON body as text. Made safe with [`quote`].
pub(crate) fn host_message(body: &[u8], secrets: &[&str]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => message_of(&v),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    quote(&text, secrets)
}

fn message_of(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let flat = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join("; "),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::Array(items) => format!(
                        "{k} {}",
                        items
                            .iter()
                            .map(|i| i
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| i.to_string()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    other => format!(
                        "{k} {}",
                        other
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| other.to_string())
                    ),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    };
    let mut parts = Vec::new();
    if let Some(m) = v.get("message") {
        parts.push(flat(m));
    } else if let Some(e) = v.get("error") {
        parts.push(flat(e));
    }
    // GitHub's validation details: `errors: [{message}|{resource, field, code}]`.
    if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
        for e in errors {
            if let Some(m) = e.get("message").and_then(|m| m.as_str()) {
                parts.push(m.to_string());
            } else if let (Some(field), Some(code)) = (
                e.get("field").and_then(|f| f.as_str()),
                e.get("code").and_then(|c| c.as_str()),
            ) {
                parts.push(format!("{field} {code}"));
            } else if let Some(s) = e.as_str() {
                parts.push(s.to_string());
            }
        }
    }
    parts.retain(|p| !p.trim().is_empty());
    parts.join(": ")
}

/// Secrets shorter than this are not redacted (they would match everywhere).
const MIN_SECRET: usize = 4;

/// Text from a host made safe to put into an error: whitespace runs and control characters
/// collapsed to one space, every secret (and anything from a PEM header on) removed, cut to
/// [`MAX_QUOTE`] characters.
pub(crate) fn quote(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    let mut secrets: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|s| s.len() >= MIN_SECRET)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(s, "[REDACTED]");
    }
    if let Some(at) = out.find("-----BEGIN") {
        out.truncate(at);
        out.push_str("[REDACTED]");
    }
    let collapsed = out
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match collapsed.char_indices().nth(MAX_QUOTE) {
        None => collapsed,
        Some((at, _)) => format!("{}…", collapsed.get(..at).unwrap_or_default()),
    }
}

/// `" (host: <message>)"`-style suffix, empty when the host said nothing.
pub(crate) fn said(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// Whether an RFC 8288 `Link` header names a `rel="next"` page.
pub(crate) fn link_has_next(headers: &HeaderMap) -> bool {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            part.split(';').skip(1).any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| r.trim_matches('"').split_whitespace().any(|r| r == "next"))
                    .unwrap_or(false)
            })
        })
}

/// A serde error about an answer (callers redact the token from it, as from every detail).
pub(crate) fn serde_detail(what: &str, e: &serde_json::Error) -> String {
    format!("the answer is not {what}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_rules() {
        assert!(parse_api_base("https://api.github.com/").is_ok());
        assert_eq!(
            parse_api_base("https://git.example.com/api/v4/")
                .unwrap()
                .as_str(),
            "https://git.example.com/api/v4"
        );
        assert!(parse_api_base("http://127.0.0.1:3000/api/v1").is_ok());
        assert!(parse_api_base("http://localhost/api/v1").is_ok());
        assert!(parse_api_base("http://git.example.com/api/v1").is_err());
        assert!(parse_api_base("ftp://git.example.com").is_err());
        assert!(parse_api_base("https://u:p@git.example.com").is_err());
        assert!(parse_api_base("https://git.example.com/?x=1").is_err());
        assert!(parse_api_base("not a url").is_err());
    }

    #[test]
    fn join_encodes_slashes_in_a_segment() {
        let base = parse_api_base("https://gl.example.com/api/v4").unwrap();
        assert_eq!(
            join(&base, &["projects", "group/sub/name", "merge_requests"]).as_str(),
            "https://gl.example.com/api/v4/projects/group%2Fsub%2Fname/merge_requests"
        );
    }

    #[test]
    fn host_messages_of_each_forge() {
        let gh = br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for acme:feature."}],"documentation_url":"x"}"#;
        assert_eq!(
            host_message(gh, &[]),
            "Validation Failed: A pull request already exists for acme:feature."
        );
        let gh_field = br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"base","code":"invalid"}]}"#;
        assert_eq!(
            host_message(gh_field, &[]),
            "Validation Failed: base invalid"
        );
        let gl = br#"{"message":["Another open merge request already exists for this source branch: !3"]}"#;
        assert_eq!(
            host_message(gl, &[]),
            "Another open merge request already exists for this source branch: !3"
        );
        let gl_field = br#"{"message":{"source_branch":["does not exist"]}}"#;
        assert_eq!(host_message(gl_field, &[]), "source_branch does not exist");
        assert_eq!(
            host_message(br#"{"error":"title is missing"}"#, &[]),
            "title is missing"
        );
        assert_eq!(
            host_message(b"<html>\n  Bad   gateway</html>", &[]),
            "<html> Bad gateway</html>"
        );
    }

    #[test]
    fn quotes_never_carry_secrets() {
        let q = quote("token ghp_secret123 was bad", &["ghp_secret123"]);
        assert!(!q.contains("ghp_secret123"), "{q}");
        let q = quote("key: -----BEGIN RSA PRIVATE KEY-----\nMIIE...", &[]);
        assert!(!q.contains("MIIE"), "{q}");
        let long = "x".repeat(1000);
        assert!(quote(&long, &[]).chars().count() <= MAX_QUOTE + 1);
    }

    #[test]
    fn link_next() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                r#"<https://x/r?page=2>; rel="next", <https://x/r?page=5>; rel="last""#,
            ),
        );
        assert!(link_has_next(&h));
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                r#"<https://x/r?page=1>; rel="prev", <https://x/r?page=1>; rel="first""#,
            ),
        );
        assert!(!link_has_next(&h));
        assert!(!link_has_next(&HeaderMap::new()));
    }
}
