//! Host keys: validating known_hosts text, choosing which recorded keys are trusted, and the
//! fingerprints shown when a key is recorded on first contact.

/// Validates known_hosts text (spec.repository.knownHosts or a Secret's `known_hosts`) so a
/// typo is reported as such instead of as a failed connection.
pub fn validate_known_hosts(text: &str) -> Result<usize, String> {
    let mut entries = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        line.parse::<ssh_key::known_hosts::Entry>().map_err(|_| {
            format!(
                "line {} is not a known_hosts entry (expected `host key-type base64-key`, as printed by `ssh-keyscan host`)",
                i + 1
            )
        })?;
        entries += 1;
    }
    if entries == 0 {
        return Err("no host keys in it (expected lines as printed by `ssh-keyscan host`)".into());
    }
    Ok(entries)
}

/// Where the host keys a connection trusts come from, strongest first: the keys pinned in
/// the spec, those recorded in the deploy key Secret, or (for a user's own Secret, which is
/// never modified) those recorded in status. `None`: nothing recorded yet (first contact).
pub fn trusted(
    pinned: Option<&str>,
    in_secret: Option<&str>,
    in_status: Option<&str>,
    secret_is_generated: bool,
) -> Option<String> {
    let present = |s: &&str| !s.trim().is_empty();
    pinned
        .filter(present)
        .or_else(|| in_secret.filter(present))
        .or_else(|| in_status.filter(present).filter(|_| !secret_is_generated))
        .map(str::to_string)
}

/// SHA-256 fingerprints (`SHA256:...`) of the keys in known_hosts text; unreadable lines are
/// skipped.
pub fn fingerprints(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let _host = parts.next()?;
            let rest: Vec<&str> = parts.collect();
            let pk = ssh_key::PublicKey::from_openssh(&rest.join(" ")).ok()?;
            Some(pk.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::KeyType;

    #[test]
    fn known_hosts_validation() {
        let k = crate::keys::generate(KeyType::Ed25519, "").unwrap();
        let line = format!("[127.0.0.1]:2222 {}", k.info.public_openssh.trim());
        assert_eq!(validate_known_hosts(&format!("# c\n{line}\n")), Ok(1));
        assert!(validate_known_hosts("github.com ssh-ed25519").is_err());
        assert!(validate_known_hosts("\n# only a comment\n").is_err());
    }

    #[test]
    fn pinned_wins_then_secret_then_status_for_own_secrets_only() {
        assert_eq!(
            trusted(Some("p"), Some("s"), Some("l"), false).as_deref(),
            Some("p")
        );
        assert_eq!(
            trusted(Some(" "), Some("s"), Some("l"), false).as_deref(),
            Some("s")
        );
        assert_eq!(
            trusted(None, Some(""), Some("l"), false).as_deref(),
            Some("l")
        );
        assert_eq!(trusted(None, None, Some("l"), true), None);
        assert_eq!(trusted(None, None, None, false), None);
    }

    #[test]
    fn fingerprints_of_recorded_lines() {
        let k = crate::keys::generate(KeyType::Ed25519, "").unwrap();
        let text = format!("[h]:22 {}\ngarbage\n", k.info.public_openssh.trim());
        assert_eq!(fingerprints(&text), vec![k.info.fingerprint.clone()]);
    }
}
