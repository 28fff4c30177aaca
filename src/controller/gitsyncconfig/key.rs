//! The deploy key Secret: found, generated or rotated (Flux's keys `identity`,
//! `identity.pub`, `known_hosts`), and the host keys learned on first contact recorded in it.
//! A Secret the user brought is read, never modified or deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use zeroize::Zeroizing;

use super::super::report::Note;
use super::super::{Context, Error, Failure, Problem};
use crate::api::{self, GitSyncConfig, GitSyncConfigStatus, KeyType, Reason};
use crate::keys::{self, KeyInfo};

/// The key as the pass found or made it.
pub struct KeyState {
    /// Public facts.
    pub info: KeyInfo,
    /// Private half, for the ssh call only.
    pub private: Zeroizing<String>,
    /// Whether the operator generated (and owns) the Secret.
    pub generated: bool,
    /// The Secret's `known_hosts`.
    pub known_hosts: Option<String>,
}

/// Whether `secret` is the one the operator generated for `gsc` (owner and label).
pub fn is_generated_by(secret: &Secret, gsc: &GitSyncConfig) -> bool {
    let uid = gsc.metadata.uid.as_deref();
    secret
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| Some(r.uid.as_str()) == uid))
        && secret
            .labels()
            .get(api::MANAGED_BY_LABEL)
            .map(String::as_str)
            == Some(api::MANAGED_BY)
}

/// A Secret value as text (`data`, or `stringData` of an object not yet stored).
pub fn data_str(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
        })
}

async fn generate_key(key_type: KeyType, comment: String) -> Result<keys::DeployKey, Error> {
    tokio::task::spawn_blocking(move || keys::generate(key_type, &comment))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(e.to_string()))
}

/// The generated Secret for `key`. Pure.
pub fn key_secret(
    gsc: &GitSyncConfig,
    name: &str,
    key: &keys::DeployKey,
    known_hosts: Option<&str>,
    rotated_for: Option<&str>,
) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        "identity".to_string(),
        ByteString(key.private_openssh.as_bytes().to_vec()),
    );
    data.insert(
        "identity.pub".to_string(),
        ByteString(format!("{}\n", key.info.public_openssh).into_bytes()),
    );
    data.insert(
        "known_hosts".to_string(),
        ByteString(known_hosts.unwrap_or_default().as_bytes().to_vec()),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        api::KEY_TYPE_ANNOTATION.to_string(),
        gsc.spec.deploy_key.type_.as_str().to_string(),
    );
    if let Some(v) = rotated_for {
        annotations.insert(api::ROTATED_FOR_ANNOTATION.to_string(), v.to_string());
    }
    let mut labels = BTreeMap::new();
    labels.insert(
        api::MANAGED_BY_LABEL.to_string(),
        api::MANAGED_BY.to_string(),
    );
    labels.insert(api::CONFIG_LABEL.to_string(), gsc.name_any());
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: gsc.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: gsc.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// What to do with the Secret found. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyDecision {
    /// No Secret: generate one.
    Generate,
    /// The generated Secret must get a new key (type changed or rotation asked).
    Rotate(String),
    /// Use the Secret as it is.
    Use {
        /// Whether the operator generated it.
        generated: bool,
    },
}

/// Decides from the Secret (if any) and the spec. Pure.
pub fn decide(secret: Option<&Secret>, gsc: &GitSyncConfig) -> KeyDecision {
    let Some(secret) = secret else {
        return KeyDecision::Generate;
    };
    if !is_generated_by(secret, gsc) {
        return KeyDecision::Use { generated: false };
    }
    let annotation = |k: &str| secret.annotations().get(k).cloned();
    let rotate = gsc.annotations().get(api::ROTATE_KEY_ANNOTATION).cloned();
    let wanted = gsc.spec.deploy_key.type_.as_str();
    if annotation(api::KEY_TYPE_ANNOTATION).as_deref() != Some(wanted) {
        return KeyDecision::Rotate(format!("spec.deployKey.type changed to {wanted}"));
    }
    if rotate.is_some() && rotate != annotation(api::ROTATED_FOR_ANNOTATION) {
        return KeyDecision::Rotate(format!("{} was set", api::ROTATE_KEY_ANNOTATION));
    }
    KeyDecision::Use { generated: true }
}

/// Finds, generates or rotates the deploy key; the Event to publish comes back with it.
pub async fn ensure_key(
    gsc: &GitSyncConfig,
    ctx: &Context,
) -> Result<(KeyState, Option<Note>), Failure> {
    let ns = gsc.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = gsc.key_secret_name();
    let comment = format!("tooljet-gitsync/{ns}/{}", gsc.name_any());
    let rotate = gsc.annotations().get(api::ROTATE_KEY_ANNOTATION).cloned();
    let found = secrets.get_opt(&name).await?;
    let known_hosts = found
        .as_ref()
        .and_then(|s| data_str(s, "known_hosts"))
        .filter(|s| !s.trim().is_empty());
    let type_ = gsc.spec.deploy_key.type_;
    match (decide(found.as_ref(), gsc), found) {
        (KeyDecision::Generate, _) => {
            let key = generate_key(type_, comment).await?;
            let secret = key_secret(gsc, &name, &key, None, rotate.as_deref());
            secrets.create(&PostParams::default(), &secret).await?;
            let note = Note::normal(Reason::KeyGenerated, format!(
                "generated {} deploy key {} into Secret {name}: add status.publicKey to the repository as a deploy key with write access",
                type_.as_str(), key.info.fingerprint
            ));
            Ok((state(key, true, None), Some(note)))
        }
        (KeyDecision::Rotate(why), Some(old)) => {
            let key = generate_key(type_, comment).await?;
            let mut fresh = key_secret(gsc, &name, &key, known_hosts.as_deref(), rotate.as_deref());
            fresh.metadata.resource_version = old.metadata.resource_version.clone();
            secrets
                .replace(&name, &PostParams::default(), &fresh)
                .await?;
            let note = Note::normal(Reason::KeyRotated, format!(
                "{why}: generated a new deploy key {} in Secret {name}; add the new status.publicKey to the repository and remove the old key",
                key.info.fingerprint
            ));
            Ok((state(key, true, known_hosts), Some(note)))
        }
        (KeyDecision::Use { generated }, Some(secret)) => {
            let (info, private) = read_identity(&secret, &name, generated)?;
            let key = KeyState {
                info,
                private,
                generated,
                known_hosts,
            };
            Ok((key, None))
        }
        (_, None) => Err(Error::Internal("key decision without a Secret".into()).into()),
    }
}

fn state(key: keys::DeployKey, generated: bool, known_hosts: Option<String>) -> KeyState {
    KeyState {
        info: key.info,
        private: key.private_openssh,
        generated,
        known_hosts,
    }
}

/// The private key of a Secret, checked to be a usable unencrypted OpenSSH key.
pub fn read_identity(
    secret: &Secret,
    name: &str,
    generated: bool,
) -> Result<(KeyInfo, Zeroizing<String>), Problem> {
    let origin = if generated {
        "generated"
    } else {
        "user-provided"
    };
    let Some(identity) = data_str(secret, "identity") else {
        return Err(Problem::stalled(
            Reason::SecretInvalid,
            format!("the {origin} Secret {name} has no key `identity` (an OpenSSH private key): add it, or delete the Secret and the operator generates a new key (Flux-style keys: identity, identity.pub, known_hosts)"),
        ));
    };
    let identity = Zeroizing::new(identity);
    match keys::inspect(identity.as_bytes()) {
        Ok(info) => Ok((info, identity)),
        Err(e) => Err(Problem::stalled(
            Reason::SecretInvalid,
            format!("Secret {name}: {e}"),
        )),
    }
}

/// Stores host keys learned on first contact: in the generated Secret, or in status when the
/// Secret is the user's (never modified). Returns the Event to publish.
pub async fn record_host_keys(
    gsc: &GitSyncConfig,
    ctx: &Context,
    key: &KeyState,
    hosts: &str,
    status: &mut GitSyncConfigStatus,
) -> Result<Note, Error> {
    let place = if key.generated {
        let secrets: Api<Secret> =
            Api::namespaced(ctx.client.clone(), &gsc.namespace().unwrap_or_default());
        let patch = serde_json::json!({"data": {"known_hosts": base64_encode(hosts.as_bytes())}});
        secrets
            .patch(
                &gsc.key_secret_name(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        format!("Secret {} key known_hosts", gsc.key_secret_name())
    } else {
        status.learned_known_hosts = Some(hosts.to_string());
        "status.learnedKnownHosts (the key Secret is user-provided and left unchanged)".to_string()
    };
    Ok(Note::normal(
        Reason::HostKeyRecorded,
        format!(
            "first contact with {}: recorded host key {} in {place}; a different key will be refused",
            gsc.spec.repository.url,
            keys::known_hosts::fingerprints(hosts).join(", ")
        ),
    ))
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Deletes the generated key Secret of a deleted GitSyncConfig; a user's own is kept.
pub async fn delete_generated(gsc: &GitSyncConfig, ctx: &Context) -> Result<bool, Error> {
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &gsc.namespace().unwrap_or_default());
    let name = gsc.key_secret_name();
    let Some(secret) = secrets.get_opt(&name).await? else {
        return Ok(false);
    };
    if !is_generated_by(&secret, gsc) {
        return Ok(false);
    }
    match secrets.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gsc() -> GitSyncConfig {
        let spec: api::GitSyncConfigSpec = serde_json::from_value(serde_json::json!({
            "repository": {"url": "git@h:r.git"},
            "tooljet": {"url": "http://t", "workspace": "w", "credentialsSecretRef": {"name": "c"}},
        }))
        .unwrap();
        let mut g = GitSyncConfig::new("sales", spec);
        g.metadata.namespace = Some("team".into());
        g.metadata.uid = Some("uid-1".into());
        g
    }

    #[test]
    fn key_decisions() {
        let g = gsc();
        assert_eq!(decide(None, &g), KeyDecision::Generate);
        let key = keys::generate(KeyType::Ed25519, "c").unwrap();
        let ours = key_secret(&g, "k", &key, None, None);
        assert_eq!(
            decide(Some(&ours), &g),
            KeyDecision::Use { generated: true }
        );
        let mut foreign = ours.clone();
        foreign.metadata.owner_references = None;
        assert_eq!(
            decide(Some(&foreign), &g),
            KeyDecision::Use { generated: false }
        );
        let mut ecdsa = g.clone();
        ecdsa.spec.deploy_key.type_ = KeyType::EcdsaP256;
        assert!(
            matches!(decide(Some(&ours), &ecdsa), KeyDecision::Rotate(w) if w.contains("ecdsa-p256"))
        );
        let mut rotate = g.clone();
        rotate.metadata.annotations =
            Some([(api::ROTATE_KEY_ANNOTATION.to_string(), "1".to_string())].into());
        assert!(matches!(
            decide(Some(&ours), &rotate),
            KeyDecision::Rotate(_)
        ));
        let handled = key_secret(&g, "k", &key, None, Some("1"));
        assert_eq!(
            decide(Some(&handled), &rotate),
            KeyDecision::Use { generated: true }
        );
    }

    #[test]
    fn secrets_without_a_usable_identity_are_refused() {
        let g = gsc();
        let key = keys::generate(KeyType::Ed25519, "c").unwrap();
        let mut s = key_secret(&g, "k", &key, None, None);
        assert!(read_identity(&s, "k", true).is_ok());
        s.data.as_mut().unwrap().remove("identity");
        assert_eq!(
            read_identity(&s, "k", true).unwrap_err().reason,
            Reason::SecretInvalid
        );
    }
}
