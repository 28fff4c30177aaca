//! Commit signing with an SSH key, as `git commit -S` does with `gpg.format=ssh`: the commit
//! object without its `gpgsig` header is signed as an SSH signature (`SshSig`, namespace
//! `git`, SHA-512) and the armored signature becomes the `gpgsig` header, so `git
//! verify-commit` with an allowed-signers file and the git hosts show the commit as verified.
//!
//! Pure: no IO. The private key never leaves this module: not in `Debug`, not in errors.

use rsa::signature::SignatureEncoding;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey, SshSig};
use zeroize::Zeroizing;

/// The namespace git signs commits and tags in (`ssh-keygen -Y sign -n git`).
pub const NAMESPACE: &str = "git";

/// The key types the operator signs with, for messages.
pub const SUPPORTED: &str =
    "ssh-ed25519, ecdsa-sha2-nistp256 and ssh-rsa (at least 2048 bits; signed as rsa-sha2-512)";

/// Why a signing key cannot be used, or a signature not made. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Not an OpenSSH private key at all.
    #[error("the key `identity` is not a private key in OpenSSH format (-----BEGIN OPENSSH PRIVATE KEY-----); create one with `ssh-keygen -t ed25519 -N '' -C tooljet-gitsync -f identity`")]
    Unparsable,
    /// Protected by a passphrase.
    #[error("the key has a passphrase; the operator needs an unencrypted key (remove it with `ssh-keygen -p -N '' -f identity`, or create a new one with `ssh-keygen -t ed25519 -N '' -f identity`)")]
    Encrypted,
    /// A key type the operator cannot sign with.
    #[error("the key is {algorithm}, which the operator cannot sign commits with; supported: {SUPPORTED}")]
    Unsupported {
        /// OpenSSH algorithm name.
        algorithm: String,
    },
    /// The key parsed but signing failed (e.g. an RSA key below 2048 bits).
    #[error(
        "signing with the key {fingerprint} ({algorithm}) failed: {detail}; supported: {SUPPORTED}"
    )]
    Failed {
        /// The key's fingerprint.
        fingerprint: String,
        /// OpenSSH algorithm name.
        algorithm: String,
        /// What the crypto library said (never key material).
        detail: String,
    },
}

/// A parsed signing key. Shared (`Arc`) by the jobs of one config; the private half is
/// zeroized on drop by `ssh-key` and shown nowhere.
pub struct CommitSigner {
    key: PrivateKey,
    /// RSA keys sign through `rsa` (see Cargo.toml); its key zeroizes itself on drop too.
    rsa: Option<rsa::pkcs1v15::SigningKey<sha2::Sha512>>,
    fingerprint: String,
    public_openssh: String,
}

impl std::fmt::Debug for CommitSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitSigner")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl CommitSigner {
    /// Parses an unencrypted OpenSSH private key (a Secret's `identity`) and makes a trial
    /// signature, so that a key that cannot sign is refused here, before anything is committed.
    pub fn from_openssh(private_openssh: &[u8]) -> Result<CommitSigner, SignError> {
        // Keys pasted on Windows arrive with CRLF line ends, which the PEM parser refuses.
        let text = Zeroizing::new(
            String::from_utf8_lossy(private_openssh)
                .replace("\r\n", "\n")
                .trim()
                .to_owned(),
        );
        let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|_| SignError::Unparsable)?;
        if key.is_encrypted() {
            return Err(SignError::Encrypted);
        }
        let algorithm = key.algorithm();
        let supported = matches!(
            algorithm,
            Algorithm::Ed25519
                | Algorithm::Rsa { .. }
                | Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256
                }
        );
        if !supported {
            return Err(SignError::Unsupported {
                algorithm: algorithm.as_str().to_owned(),
            });
        }
        let public = key.public_key();
        let public_openssh = public.to_openssh().map_err(|_| SignError::Unparsable)?;
        let fingerprint = public.fingerprint(HashAlg::Sha256).to_string();
        let rsa = match key.key_data().rsa() {
            Some(pair) => Some(rsa_signing_key(pair).map_err(|detail| SignError::Failed {
                fingerprint: fingerprint.clone(),
                algorithm: "ssh-rsa".into(),
                detail,
            })?),
            None => None,
        };
        let signer = CommitSigner {
            fingerprint,
            public_openssh,
            rsa,
            key,
        };
        signer.sign(b"tooljet-gitsync trial signature\n")?;
        Ok(signer)
    }

    /// `SHA256:…`, as `ssh-keygen -lf` and the git hosts show the key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The public key in OpenSSH form (`ssh-ed25519 AAAA… comment`), to register as a signing
    /// key with the git host and to list in an allowed-signers file.
    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
    }

    /// The key's OpenSSH algorithm name.
    pub fn algorithm(&self) -> &'static str {
        match self.key.algorithm() {
            Algorithm::Ed25519 => "ssh-ed25519",
            Algorithm::Rsa { .. } => "ssh-rsa",
            _ => "ecdsa-sha2-nistp256",
        }
    }

    /// The armored SSH signature (`-----BEGIN SSH SIGNATURE-----`) of `payload`, the commit
    /// object as git serializes it without the `gpgsig` header.
    pub fn sign(&self, payload: &[u8]) -> Result<String, SignError> {
        let failed = |e: ssh_key::Error| SignError::Failed {
            fingerprint: self.fingerprint.clone(),
            algorithm: self.algorithm().to_owned(),
            detail: e.to_string(),
        };
        let sig = match &self.rsa {
            Some(rsa_key) => {
                // What ssh-key's own sign does, with the RSA step done right.
                let data =
                    SshSig::signed_data(NAMESPACE, HashAlg::Sha512, payload).map_err(failed)?;
                let raw = rsa::signature::Signer::try_sign(rsa_key, &data).map_err(|e| {
                    SignError::Failed {
                        fingerprint: self.fingerprint.clone(),
                        algorithm: "ssh-rsa".into(),
                        detail: e.to_string(),
                    }
                })?;
                let signature = ssh_key::Signature::new(
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    raw.to_vec(),
                )
                .map_err(failed)?;
                SshSig::new(
                    self.key.public_key().key_data().clone(),
                    NAMESPACE,
                    HashAlg::Sha512,
                    signature,
                )
                .map_err(failed)?
            }
            None => self
                .key
                .sign(NAMESPACE, HashAlg::Sha512, payload)
                .map_err(failed)?,
        };
        sig.to_pem(LineEnding::LF).map_err(failed)
    }
}

/// The `rsa` signing key (rsa-sha2-512, PKCS#1 v1.5) of an OpenSSH RSA key pair; below 2048
/// bits is refused, as OpenSSH does.
fn rsa_signing_key(
    pair: &ssh_key::private::RsaKeypair,
) -> Result<rsa::pkcs1v15::SigningKey<sha2::Sha512>, String> {
    let int = |m: &ssh_key::Mpint| {
        m.as_positive_bytes()
            .map(rsa::BigUint::from_bytes_be)
            .ok_or_else(|| "the key holds a negative or empty number".to_string())
    };
    let key = rsa::RsaPrivateKey::from_components(
        int(&pair.public.n)?,
        int(&pair.public.e)?,
        int(&pair.private.d)?,
        vec![int(&pair.private.p)?, int(&pair.private.q)?],
    )
    .map_err(|_| "the RSA key is inconsistent".to_string())?;
    let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
    if bits < 2048 {
        return Err(format!("the RSA key has {bits} bits, fewer than 2048"));
    }
    Ok(rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::rand_core::OsRng;
    use ssh_key::{PublicKey, SshSig};

    fn key(algorithm: Algorithm) -> Zeroizing<String> {
        let mut k = PrivateKey::random(&mut OsRng, algorithm).unwrap();
        k.set_comment("signer@test");
        k.to_openssh(LineEnding::LF).unwrap()
    }

    fn roundtrip(algorithm: Algorithm) {
        let pem = key(algorithm);
        let signer = CommitSigner::from_openssh(pem.as_bytes()).unwrap();
        let payload = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nmsg\n";
        let armored = signer.sign(payload).unwrap();
        assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----\n"));
        assert!(armored.trim_end().ends_with("-----END SSH SIGNATURE-----"));
        let sig: SshSig = armored.parse().unwrap();
        assert_eq!(sig.namespace(), "git");
        assert_eq!(sig.hash_alg(), HashAlg::Sha512);
        let public = PublicKey::from_openssh(signer.public_openssh()).unwrap();
        assert_eq!(
            public.fingerprint(HashAlg::Sha256).to_string(),
            signer.fingerprint()
        );
        public.verify(NAMESPACE, payload, &sig).unwrap();
        // Another payload, or another namespace, does not verify.
        assert!(public.verify(NAMESPACE, b"other", &sig).is_err());
        assert!(public.verify("file", payload, &sig).is_err());
        assert!(signer.public_openssh().ends_with(" signer@test"));
        // Debug shows the fingerprint and nothing of the private key.
        let debug = format!("{signer:?}");
        assert!(debug.contains(signer.fingerprint()), "{debug}");
        let secret_line = pem.lines().nth(1).unwrap();
        assert!(!debug.contains(&secret_line[..20]), "{debug}");
    }

    #[test]
    fn ed25519_signatures_verify() {
        roundtrip(Algorithm::Ed25519);
    }

    #[test]
    fn rsa_signatures_verify_and_use_sha512() {
        let pem = key(Algorithm::Rsa { hash: None });
        let signer = CommitSigner::from_openssh(pem.as_bytes()).unwrap();
        let sig: SshSig = signer.sign(b"x").unwrap().parse().unwrap();
        assert_eq!(
            sig.algorithm(),
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            }
        );
        assert_eq!(signer.algorithm(), "ssh-rsa");
        roundtrip(Algorithm::Rsa { hash: None });
    }

    #[test]
    fn ecdsa_p256_signatures_verify() {
        roundtrip(Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        });
    }

    #[test]
    fn crlf_keys_are_accepted() {
        let pem = key(Algorithm::Ed25519).replace('\n', "\r\n");
        assert!(CommitSigner::from_openssh(pem.as_bytes()).is_ok());
    }

    #[test]
    fn encrypted_keys_are_refused() {
        let pem = keygen_with(&["-t", "ed25519"], "hunter2");
        let err = CommitSigner::from_openssh(pem.as_bytes()).unwrap_err();
        assert_eq!(err, SignError::Encrypted);
        assert!(err.to_string().contains("passphrase"), "{err}");
        assert!(err.to_string().contains("unencrypted key"), "{err}");
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        for input in [
            &b"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END OPENSSH PRIVATE KEY-----\n"[..],
            b"c2VjcmV0LXZhbHVl",
            b"",
            b"\xff\xfe secret-value",
        ] {
            let err = CommitSigner::from_openssh(input).unwrap_err();
            assert_eq!(err, SignError::Unparsable);
            let msg = err.to_string();
            assert!(!msg.contains("c2VjcmV0") && !msg.contains("secret-value"), "{msg}");
            assert!(msg.contains("ssh-keygen -t ed25519 -N ''"), "{msg}");
        }
    }

    /// A key made by the real `ssh-keygen` (the tool users make their keys with).
    fn keygen(args: &[&str]) -> Zeroizing<String> {
        keygen_with(args, "")
    }

    fn keygen_with(args: &[&str], passphrase: &str) -> Zeroizing<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let st = std::process::Command::new("ssh-keygen")
            .args(args)
            .args(["-q", "-N", passphrase, "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        Zeroizing::new(std::fs::read_to_string(path).unwrap())
    }

    #[test]
    fn ssh_keygen_keys_are_accepted() {
        for args in [&["-t", "ed25519"][..], &["-t", "rsa", "-b", "3072"]] {
            let pem = keygen(args);
            assert!(
                CommitSigner::from_openssh(pem.as_bytes()).is_ok(),
                "{args:?}"
            );
        }
    }

    #[test]
    fn unsupported_types_name_the_supported_ones() {
        let pem = keygen(&["-t", "ecdsa", "-b", "384"]);
        let err = CommitSigner::from_openssh(pem.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            SignError::Unsupported {
                algorithm: "ecdsa-sha2-nistp384".into()
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("ecdsa-sha2-nistp384")
                && msg.contains("ssh-ed25519")
                && msg.contains("ssh-rsa"),
            "{msg}"
        );
    }

    #[test]
    fn small_rsa_keys_are_refused_before_any_commit() {
        let pem = keygen(&["-t", "rsa", "-b", "1024"]);
        match CommitSigner::from_openssh(pem.as_bytes()) {
            Err(SignError::Failed {
                algorithm, detail, ..
            }) => {
                assert_eq!(algorithm, "ssh-rsa");
                assert!(detail.contains("1024 bits"), "{detail}");
            }
            other => panic!("a 1024-bit RSA key was accepted: {other:?}"),
        }
    }
}
