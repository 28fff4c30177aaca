//! `spec.commitSigning`: the signing key, read from its Secret (key `identity`) by the config's
//! reconcile (for its conditions and `status.commitSigning`) and again for every push, so that a
//! key that went missing or broke stops the push instead of letting an unsigned commit out.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::super::{Context, Error, Failure, Problem};
use super::data_str;
use crate::api::{CommitSigningStatus, GitSyncConfig, Reason};
use crate::git::CommitSigner;

/// The Secret key holding the signing key, as in the deploy key Secret (so it can be reused).
pub const SIGNING_KEY: &str = "identity";

/// Whether `gsc` signs its commits with the key in Secret `name` (its namespace).
pub fn references(gsc: &GitSyncConfig, name: &str) -> bool {
    gsc.spec
        .commit_signing
        .as_ref()
        .is_some_and(|s| s.secret_ref.name == name)
}

/// Drops the parsed key of a deleted config from memory.
pub fn forget(gsc: &GitSyncConfig, ctx: &Context) {
    let Some(signing) = &gsc.spec.commit_signing else {
        return;
    };
    let prefix = format!(
        "{}/{}@",
        gsc.namespace().unwrap_or_default(),
        signing.secret_ref.name
    );
    if let Ok(mut m) = ctx.signers.lock() {
        m.retain(|k, _| !k.starts_with(&prefix));
    }
}

/// What status shows of a signer (public facts only).
pub fn status_of(signer: &CommitSigner) -> CommitSigningStatus {
    CommitSigningStatus {
        fingerprint: signer.fingerprint().to_owned(),
        public_key: signer.public_openssh().to_owned(),
    }
}

/// The signing key of `gsc`, when it asks for signed commits; a Problem when the Secret or its
/// key is missing or the key cannot sign. Messages name the Secret and the key, never a value.
/// `known`: a Secret of the config's namespace just read (the deploy key's), used instead of a
/// second read when it is the signing Secret.
pub async fn load(
    gsc: &GitSyncConfig,
    ctx: &Context,
    known: Option<&Secret>,
) -> Result<Option<Arc<CommitSigner>>, Failure> {
    let Some(signing) = &gsc.spec.commit_signing else {
        return Ok(None);
    };
    let ns = gsc.namespace().unwrap_or_default();
    let name = &signing.secret_ref.name;
    let secret = match known.filter(|s| s.metadata.name.as_deref() == Some(name.as_str())) {
        Some(s) => Some(s.clone()),
        None => {
            Api::<Secret>::namespaced(ctx.client.clone(), &ns)
                .get_opt(name)
                .await?
        }
    };
    let identity = identity_of(gsc, secret.as_ref())?;
    // Parsed once per Secret version: every AppSync pass loads the key, and an RSA key makes a
    // trial signature while parsed.
    let meta = secret.as_ref().map(|s| &s.metadata);
    let uid = meta.and_then(|m| m.uid.as_deref()).unwrap_or_default();
    let rv = meta
        .and_then(|m| m.resource_version.as_deref())
        .unwrap_or_default();
    let version = format!("{ns}/{name}@{uid}/{rv}");
    if let Some(signer) = ctx
        .signers
        .lock()
        .ok()
        .and_then(|m| m.get(&version).cloned())
    {
        return Ok(Some(signer));
    }
    let parsed =
        tokio::task::spawn_blocking(move || CommitSigner::from_openssh(identity.as_bytes()))
            .await
            .map_err(|e| Error::Internal(format!("parsing the signing key: {e}")))?;
    match parsed {
        Ok(signer) => {
            let signer = Arc::new(signer);
            if let Ok(mut m) = ctx.signers.lock() {
                // One entry per Secret: an older version's key goes.
                let prefix = format!("{ns}/{name}@");
                m.retain(|k, _| !k.starts_with(&prefix));
                m.insert(version, signer.clone());
            }
            Ok(Some(signer))
        }
        Err(e) => Err(Problem::stalled(
            Reason::SigningKeyInvalid,
            format!(
                "Secret {ns}/{name} key `{SIGNING_KEY}` (spec.commitSigning.secretRef) cannot sign commits: {e}. Nothing is committed until it can."
            ),
        )
        .into()),
    }
}

/// The key text of the signing Secret, or what to do when there is none. Pure.
pub fn identity_of(
    gsc: &GitSyncConfig,
    secret: Option<&Secret>,
) -> Result<zeroize::Zeroizing<String>, Problem> {
    let ns = gsc.namespace().unwrap_or_default();
    let name = gsc
        .spec
        .commit_signing
        .as_ref()
        .map(|s| s.secret_ref.name.as_str())
        .unwrap_or_default();
    let create = format!(
        "ssh-keygen -t ed25519 -N '' -C tooljet-gitsync -f identity && kubectl -n {ns} create secret generic {name} --from-file=identity"
    );
    let Some(secret) = secret else {
        return Err(Problem::retrying(
            Reason::SigningKeyNotFound,
            format!(
                "the signing key Secret {ns}/{name} (spec.commitSigning.secretRef) does not exist: create it with an unencrypted OpenSSH private key under key `{SIGNING_KEY}` ({create}), or name the deploy key Secret {} to sign with the deploy key. Nothing is committed until then.",
                gsc.key_secret_name()
            ),
        ));
    };
    match data_str(secret, SIGNING_KEY).filter(|s| !s.trim().is_empty()) {
        Some(text) => Ok(zeroize::Zeroizing::new(text)),
        None => Err(Problem::retrying(
            Reason::SigningKeyNotFound,
            format!(
                "the signing key Secret {ns}/{name} (spec.commitSigning.secretRef) has no key `{SIGNING_KEY}`: add an unencrypted OpenSSH private key under `{SIGNING_KEY}` (ssh-keygen -t ed25519 -N '' -C tooljet-gitsync -f identity). Nothing is committed until then."
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api;
    use k8s_openapi::ByteString;

    fn gsc() -> GitSyncConfig {
        let spec: api::GitSyncConfigSpec = serde_json::from_value(serde_json::json!({
            "repository": {"url": "git@h:r.git"},
            "tooljet": {"url": "http://t", "workspace": "w", "credentialsSecretRef": {"name": "c"}},
            "commitSigning": {"secretRef": {"name": "signer"}},
        }))
        .unwrap();
        let mut g = GitSyncConfig::new("sales", spec);
        g.metadata.namespace = Some("team".into());
        g
    }

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn missing_secrets_and_keys_say_what_to_create() {
        let g = gsc();
        assert!(references(&g, "signer") && !references(&g, "other"));
        let p = identity_of(&g, None).unwrap_err();
        assert_eq!(p.reason, Reason::SigningKeyNotFound);
        assert!(
            p.message.contains("team/signer") && p.message.contains("ssh-keygen -t ed25519 -N ''")
        );
        assert!(p.message.contains("sales-deploy-key"), "{}", p.message);
        let p = identity_of(&g, Some(&secret(&[("other", "top-secret")]))).unwrap_err();
        assert_eq!(p.reason, Reason::SigningKeyNotFound);
        assert!(p.message.contains("no key `identity`") && !p.message.contains("top-secret"));
        let id = identity_of(&g, Some(&secret(&[("identity", "k")]))).unwrap();
        assert_eq!(id.as_str(), "k");
    }

    #[test]
    fn status_shows_public_facts_only() {
        let key = crate::keys::generate(api::KeyType::Ed25519, "c").unwrap();
        let signer = CommitSigner::from_openssh(key.private_openssh.as_bytes()).unwrap();
        let st = status_of(&signer);
        assert_eq!(st.fingerprint, key.info.fingerprint);
        assert_eq!(st.public_key, key.info.public_openssh);
        let json = serde_json::to_string(&st).unwrap();
        assert!(!json.contains("PRIVATE"));
    }
}
