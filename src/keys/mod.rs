//! Deploy keys: generation with `ssh-key`, inspection of user-provided keys, fingerprints, and
//! the host rules that restrict key types (Azure Repos and AWS CodeCommit accept RSA only).

use ssh_key::{rand_core::OsRng, Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey};
use zeroize::Zeroizing;

use crate::api::KeyType;

pub mod known_hosts;
pub use known_hosts::validate_known_hosts;

/// Why a key could not be made or used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Key generation failed inside the crypto library.
    #[error("could not generate a {0} key")]
    Generate(&'static str),
    /// The Secret's `identity` is not an OpenSSH private key.
    #[error("the `identity` key is not an unencrypted private key in OpenSSH format (-----BEGIN OPENSSH PRIVATE KEY-----); create it with `ssh-keygen -t ed25519 -N '' -f identity`")]
    Unparsable,
    /// The Secret's `identity` is protected by a passphrase.
    #[error("the `identity` key is protected by a passphrase; the operator needs an unencrypted key (`ssh-keygen -p -N '' -f identity` removes it)")]
    Encrypted,
}

/// A deploy key ready to be stored: the private half only ever goes into a Secret.
pub struct DeployKey {
    /// OpenSSH private key (PEM-like text), zeroized on drop.
    pub private_openssh: Zeroizing<String>,
    /// Public key info.
    pub info: KeyInfo,
}

/// What may be shown about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// One-line OpenSSH public key with comment, to paste as a deploy key.
    pub public_openssh: String,
    /// `SHA256:...`, as GitHub/GitLab show deploy keys.
    pub fingerprint: String,
    /// The key's type, when it is one the operator can generate.
    pub key_type: Option<KeyType>,
    /// OpenSSH algorithm name (`ssh-ed25519`, `ssh-rsa`, ...).
    pub algorithm: String,
}

/// Generates a fresh key pair of `key_type` with `comment` on the public half.
pub fn generate(key_type: KeyType, comment: &str) -> Result<DeployKey, KeyError> {
    let algorithm = match key_type {
        KeyType::Ed25519 => Algorithm::Ed25519,
        KeyType::EcdsaP256 => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        KeyType::Rsa4096 => Algorithm::Rsa { hash: None },
    };
    let mut key = PrivateKey::random(&mut OsRng, algorithm)
        .map_err(|_| KeyError::Generate(key_type.as_str()))?;
    key.set_comment(comment);
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .map_err(|_| KeyError::Generate(key_type.as_str()))?;
    Ok(DeployKey {
        private_openssh,
        info: info_of(&key)?,
    })
}

/// Reads a user-provided private key (a Secret's `identity`).
pub fn inspect(private_openssh: &[u8]) -> Result<KeyInfo, KeyError> {
    let key = PrivateKey::from_openssh(private_openssh).map_err(|_| KeyError::Unparsable)?;
    if key.is_encrypted() {
        return Err(KeyError::Encrypted);
    }
    info_of(&key)
}

fn info_of(key: &PrivateKey) -> Result<KeyInfo, KeyError> {
    let public = key.public_key();
    let public_openssh = public.to_openssh().map_err(|_| KeyError::Unparsable)?;
    let algorithm = key.algorithm();
    let key_type = match &algorithm {
        Algorithm::Ed25519 => Some(KeyType::Ed25519),
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        } => Some(KeyType::EcdsaP256),
        Algorithm::Rsa { .. } => Some(KeyType::Rsa4096),
        _ => None,
    };
    Ok(KeyInfo {
        public_openssh,
        fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
        key_type,
        algorithm: algorithm.as_str().to_string(),
    })
}

/// Git hosts that accept only some key types, and what they need. Checked before the user adds
/// the key, so nobody registers a key the host will never accept.
pub fn host_key_requirement(host: &str) -> Option<(&'static str, &'static str)> {
    let h = host.to_ascii_lowercase();
    if h.starts_with("git-codecommit.") && h.ends_with(".amazonaws.com") {
        Some(("ssh-rsa", "AWS CodeCommit accepts only RSA SSH keys (IAM)"))
    } else if h == "ssh.dev.azure.com" || h.ends_with(".visualstudio.com") {
        Some(("ssh-rsa", "Azure Repos accepts only RSA SSH keys"))
    } else {
        None
    }
}

/// Checks a key's algorithm against [`host_key_requirement`]; the error says what to do.
pub fn check_host_compatibility(host: &str, algorithm: &str) -> Result<(), String> {
    match host_key_requirement(host) {
        Some((needed, why)) if needed != algorithm => Err(format!(
            "{why}, but the deploy key is {algorithm}: set spec.deployKey.type to rsa-4096 (the key is regenerated), then add the new public key"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_show_their_type() {
        for t in [KeyType::Ed25519, KeyType::EcdsaP256] {
            let k = generate(t, "tooljet-gitsync/ns/name").unwrap();
            assert!(k
                .private_openssh
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
            let info = inspect(k.private_openssh.as_bytes()).unwrap();
            assert_eq!(info, k.info);
            assert_eq!(info.key_type, Some(t));
            assert!(info.public_openssh.ends_with(" tooljet-gitsync/ns/name"));
            assert!(info.fingerprint.starts_with("SHA256:"));
        }
    }

    #[test]
    fn rsa_key_is_4096_bits() {
        let k = generate(KeyType::Rsa4096, "c").unwrap();
        assert!(k.info.public_openssh.starts_with("ssh-rsa "));
        // 4096-bit modulus: the base64 blob of the public key is about 716 characters.
        let blob = k.info.public_openssh.split(' ').nth(1).unwrap();
        assert!(blob.len() > 700, "{}", blob.len());
        assert_eq!(k.info.key_type, Some(KeyType::Rsa4096));
    }

    #[test]
    fn garbage_is_unparsable_and_the_error_shows_no_input() {
        let err = inspect(b"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n").unwrap_err();
        assert!(matches!(err, KeyError::Unparsable));
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn rsa_only_hosts() {
        assert!(check_host_compatibility("ssh.dev.azure.com", "ssh-ed25519").is_err());
        assert!(check_host_compatibility("vs-ssh.visualstudio.com", "ssh-ed25519").is_err());
        assert!(check_host_compatibility(
            "git-codecommit.eu-west-1.amazonaws.com",
            "ecdsa-sha2-nistp256"
        )
        .is_err());
        assert!(check_host_compatibility("ssh.dev.azure.com", "ssh-rsa").is_ok());
        assert!(check_host_compatibility("github.com", "ssh-ed25519").is_ok());
    }
}
