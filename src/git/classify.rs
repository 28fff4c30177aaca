//! Turns what `git`/`ssh`/curl print on failure into a condition reason and a message that says
//! what to do. Pure, so every message seen in the wild can be pinned in a unit test.

use std::fmt;

/// The classes of git failure a user can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitFailureKind {
    /// The server refused the key: it is not (yet) a deploy key of the repository.
    AuthenticationFailed,
    /// The key may read but not write.
    ReadOnlyAccess,
    /// The server's host key differs from the pinned or recorded one.
    HostKeyMismatch,
    /// The host cannot be reached (DNS, refused, timeout).
    Unreachable,
    /// The HTTPS server's certificate is not trusted (unknown CA, wrong name, expired).
    CertificateUntrusted,
    /// The repository does not exist (or the key cannot see it).
    RepositoryNotFound,
    /// A push was rejected because the remote moved on.
    NonFastForward,
    /// Anything else.
    Other,
}

/// A classified git failure; `detail` is the tail of stderr, which never holds key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitFailure {
    /// Class.
    pub kind: GitFailureKind,
    /// Last meaningful lines git printed.
    pub detail: String,
}

impl fmt::Display for GitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for GitFailure {}

/// Classifies stderr of a failed git command.
pub fn classify(stderr: &str) -> GitFailure {
    let s = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    let kind = if has(&[
        "remote host identification has changed",
        "host key verification failed",
        "host key is known for",
        "host key for",
    ]) {
        GitFailureKind::HostKeyMismatch
    } else if has(&[
        "server certificate verification failed",
        "ssl certificate problem",
        "no alternative certificate subject name",
        "ssl: certificate subject name",
        "certificate has expired",
        "self-signed certificate",
        "self signed certificate",
    ]) {
        GitFailureKind::CertificateUntrusted
    } else if has(&[
        "marked as read only",
        "read-only",
        "read only",
        "not allowed to push",
        "write access to repository not granted",
        "does not have write access",
        "permission to write",
        "insufficient permission",
        // Smart HTTP: a credential that may fetch but not open receive-pack (GitHub, Gitea).
        "the requested url returned error: 403",
    ]) {
        GitFailureKind::ReadOnlyAccess
    } else if has(&[
        "permission denied (publickey",
        "permission denied, please try again",
        "authentication failed",
        "too many authentication failures",
        "no supported authentication methods",
        "the requested url returned error: 401",
        "could not read username",
        "could not read password",
        "invalid username or password",
        "bad credentials",
    ]) {
        GitFailureKind::AuthenticationFailed
    } else if has(&[
        "could not resolve hostname",
        "connection refused",
        "connection timed out",
        "operation timed out",
        "no route to host",
        "network is unreachable",
        "connection reset",
        "connection closed by",
        "kex_exchange_identification",
        "timed out after",
        "failed to connect to",
        "couldn't connect to server",
        "could not resolve host",
        "operation too slow",
        "empty reply from server",
        // The server (or a proxy) failed, not the mirror: retried, no local repair.
        "the requested url returned error: 5",
        "the requested url returned error: 429",
        "the requested url returned error: 407",
        "proxy connect aborted",
        "received http code 407",
    ]) {
        GitFailureKind::Unreachable
    } else if has(&[
        "repository not found",
        "does not appear to be a git repository",
        "not a git repository",
        "no such repository",
        "project you were looking for could not be found",
        "the requested url returned error: 404",
    ]) {
        GitFailureKind::RepositoryNotFound
    } else if has(&[
        "non-fast-forward",
        "fetch first",
        "[rejected]",
        "cannot lock ref",
    ]) {
        GitFailureKind::NonFastForward
    } else {
        GitFailureKind::Other
    };
    GitFailure {
        kind,
        detail: tail(stderr),
    }
}

/// The last few non-noise lines, bounded, for messages.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("@@@")
                && !l.starts_with("warning: permanently added")
                && !l.to_ascii_lowercase().starts_with("hint:")
        })
        .collect();
    let start = lines.len().saturating_sub(3);
    let mut out = lines[start..].join(" / ");
    if out.len() > 400 {
        let mut cut = 400;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_messages() {
        let cases = [
            ("git@127.0.0.1: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.", GitFailureKind::AuthenticationFailed),
            ("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@\nHost key verification failed.\nfatal: Could not read from remote repository.", GitFailureKind::HostKeyMismatch),
            ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.", GitFailureKind::HostKeyMismatch),
            ("ERROR: The key you are authenticating with has been marked as read only.\nfatal: Could not read from remote repository.", GitFailureKind::ReadOnlyAccess),
            ("remote: GitLab: You are not allowed to push code to this project.", GitFailureKind::ReadOnlyAccess),
            ("ssh: Could not resolve hostname nohost.invalid: Name or service not known\r\nfatal: Could not read from remote repository.", GitFailureKind::Unreachable),
            ("ssh: connect to host 127.0.0.1 port 1: Connection refused\r\nfatal: Could not read from remote repository.", GitFailureKind::Unreachable),
            ("ERROR: Repository not found.\nfatal: Could not read from remote repository.", GitFailureKind::RepositoryNotFound),
            ("fatal: '/tmp/x/missing.git' does not appear to be a git repository\nfatal: Could not read from remote repository.", GitFailureKind::RepositoryNotFound),
            (" ! [rejected]        HEAD -> main (fetch first)\nerror: failed to push some refs", GitFailureKind::NonFastForward),
            ("fatal: Authentication failed for 'https://127.0.0.1:41234/acme/apps.git/'", GitFailureKind::AuthenticationFailed),
            ("remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/acme/apps.git/'", GitFailureKind::AuthenticationFailed),
            ("fatal: unable to access 'https://127.0.0.1:41234/acme/apps.git/': The requested URL returned error: 403", GitFailureKind::ReadOnlyAccess),
            ("remote: Permission to acme/apps.git denied to bot.\nfatal: unable to access 'https://github.com/acme/apps.git/': The requested URL returned error: 403", GitFailureKind::ReadOnlyAccess),
            ("remote: Repository not found.\nfatal: repository 'https://github.com/acme/nope.git/' not found", GitFailureKind::RepositoryNotFound),
            ("fatal: unable to access 'https://127.0.0.1:41234/x.git/': server certificate verification failed. CAfile: /etc/ssl/certs/ca-certificates.crt CRLfile: none", GitFailureKind::CertificateUntrusted),
            ("fatal: unable to access 'https://h/x.git/': SSL certificate problem: unable to get local issuer certificate", GitFailureKind::CertificateUntrusted),
            ("fatal: unable to access 'https://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server", GitFailureKind::Unreachable),
            ("fatal: unable to access 'https://nohost.invalid/x.git/': Could not resolve host: nohost.invalid", GitFailureKind::Unreachable),
            ("fatal: unable to access 'https://h/x.git/': The requested URL returned error: 502", GitFailureKind::Unreachable),
            ("fatal: something new", GitFailureKind::Other),
        ];
        for (stderr, kind) in cases {
            assert_eq!(classify(stderr).kind, kind, "{stderr}");
        }
    }

    #[test]
    fn detail_is_bounded_and_skips_banners() {
        let f = classify(&format!("@@@@@\n{}\nlast line", "x".repeat(1000)));
        assert!(f.detail.len() <= 404);
        assert!(!f.detail.contains("@@@"));
    }
}
