//! Why a forge call failed: the error a Kubernetes condition is made of (kind for the reason,
//! message for what to do), and the mapping of a host's non-2xx answer onto it.

use std::time::Duration;

use super::http;
use super::Provider;

/// What went wrong, coarsely, for mapping to a Kubernetes condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForgeErrorKind {
    /// The API URL, CA, token or repository path cannot be used as given.
    Config,
    /// 401: the token was rejected or has expired.
    Unauthorized,
    /// 403: the token lacks a permission (e.g. pull requests write).
    Forbidden,
    /// 404: the repository or pull request is not visible to the token.
    NotFound,
    /// 400/409/422 other than "already exists": e.g. the base branch is missing.
    Invalid,
    /// No answer: connection failed or timed out.
    Unreachable,
    /// 5xx, bad JSON, too large, or anything else.
    Unexpected,
}

/// Why a forge call failed. Messages say what to do, quote the host's message trimmed, and
/// never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The settings cannot be used as given.
    #[error("the {provider} API settings are not usable: {detail}")]
    Config {
        /// Which host.
        provider: Provider,
        /// What is wrong.
        detail: String,
    },
    /// 401.
    #[error("{provider} at {host} rejected the token while {action} (401{message}): the token in the Secret is wrong, expired or revoked; create a new one and update the Secret", message = http::said(message))]
    Unauthorized {
        /// Which host.
        provider: Provider,
        /// `host[:port]`.
        host: String,
        /// What was being done.
        action: String,
        /// The host's message.
        message: String,
    },
    /// 403.
    #[error("{provider} at {host} refused {action} (403{message}): the token lacks a permission; {hint}", message = http::said(message), hint = forbidden_hint(*provider))]
    Forbidden {
        /// Which host.
        provider: Provider,
        /// `host[:port]`.
        host: String,
        /// What was being done.
        action: String,
        /// The host's message.
        message: String,
    },
    /// 404.
    #[error("{provider} at {host} found nothing while {action} (404{message}): check the repository path {repository:?} and the API URL, and that the token can see the repository (hosts answer 404 for private repositories a token cannot read)", message = http::said(message))]
    NotFound {
        /// Which host.
        provider: Provider,
        /// `host[:port]`.
        host: String,
        /// What was being done.
        action: String,
        /// The repository path.
        repository: String,
        /// The host's message.
        message: String,
    },
    /// 400/405/409/412/422 other than "already exists".
    #[error("{provider} at {host} refused {action} ({status}{message}): check that both branches exist and that the head branch has commits the base lacks", message = http::said(message))]
    Invalid {
        /// Which host.
        provider: Provider,
        /// `host[:port]`.
        host: String,
        /// What was being done.
        action: String,
        /// HTTP status.
        status: u16,
        /// The host's message.
        message: String,
    },
    /// No answer within the deadline.
    #[error("{provider} at {host} did not answer within {} while {action}: check the API URL and that the operator may reach the host (network policies, proxies)", humantime::format_duration(*after))]
    Timeout {
        /// Which host.
        provider: Provider,
        /// `host[:port]`.
        host: String,
        /// What was being done.
        action: String,
        /// The deadline.
        after: Duration,
    },
    /// Connecting or TLS failed.
    #[error("{provider} at {host} cannot be reached while {action}: {detail}; check the API URL, the CA (caFile) and that the operator may reach the host")]
    Unreachable {
        /// Which host.
        provider: Provider,
        /// `host[:port]`.
        host: String,
        /// What was being done.
        action: String,
        /// The transport's error.
        detail: String,
    },
    /// Anything else.
    #[error("{provider} at {host} answered unexpectedly while {action} ({status}{detail}); if it persists, check the host's health and the API URL", status = status.map(|s| s.to_string()).unwrap_or_else(|| "no status".into()), detail = http::said(detail))]
    Unexpected {
        /// Which host.
        provider: Provider,
        /// `host[:port]`.
        host: String,
        /// What was being done.
        action: String,
        /// HTTP status, if one came.
        status: Option<u16>,
        /// The host's message or what was wrong with the answer.
        detail: String,
    },
}

fn forbidden_hint(p: Provider) -> &'static str {
    match p {
        Provider::GitHub => "a fine-grained token or GitHub App needs \"Pull requests: Read and write\" and \"Contents: Read\" on the repository, a classic token the repo scope",
        Provider::GitLab => "the token needs the api scope and at least the Developer role on the project",
        Provider::Gitea => "the token needs the write:repository scope and write access to the repository",
    }
}

impl ForgeError {
    /// The coarse kind, for condition reasons.
    pub fn kind(&self) -> ForgeErrorKind {
        match self {
            ForgeError::Config { .. } => ForgeErrorKind::Config,
            ForgeError::Unauthorized { .. } => ForgeErrorKind::Unauthorized,
            ForgeError::Forbidden { .. } => ForgeErrorKind::Forbidden,
            ForgeError::NotFound { .. } => ForgeErrorKind::NotFound,
            ForgeError::Invalid { .. } => ForgeErrorKind::Invalid,
            ForgeError::Timeout { .. } | ForgeError::Unreachable { .. } => {
                ForgeErrorKind::Unreachable
            }
            ForgeError::Unexpected { .. } => ForgeErrorKind::Unexpected,
        }
    }
}

/// The error for a non-2xx answer.
pub(super) fn status_error(
    provider: Provider,
    host: &str,
    repository: &str,
    action: &str,
    status: u16,
    message: String,
) -> ForgeError {
    let (host, action) = (host.to_string(), action.to_string());
    let rate_limited = message.to_ascii_lowercase().contains("rate limit");
    match status {
        401 => ForgeError::Unauthorized {
            provider,
            host,
            action,
            message,
        },
        403 if !rate_limited => ForgeError::Forbidden {
            provider,
            host,
            action,
            message,
        },
        404 => ForgeError::NotFound {
            provider,
            host,
            action,
            repository: repository.to_string(),
            message,
        },
        400 | 405 | 409 | 412 | 422 => ForgeError::Invalid {
            provider,
            host,
            action,
            status,
            message,
        },
        _ => ForgeError::Unexpected {
            provider,
            host,
            action,
            status: Some(status),
            detail: message,
        },
    }
}
