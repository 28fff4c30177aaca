//! One TLS client configuration per trusted CA bundle, shared by every HTTP client the
//! operator makes (ToolJet, pull-request APIs, GitHub App tokens). reqwest would build a
//! platform verifier per client, which reads and parses the system's whole CA bundle each
//! time: per ToolJet client, per renewal and per pull-request pass, in memory and in time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// Distinct CA bundles kept at once; more (a tenant cycling `caFile`s) start the cache over.
const MAX_BUNDLES: usize = 64;

type Cache = HashMap<Option<[u8; 32]>, Arc<rustls::ClientConfig>>;

fn cache() -> &'static Mutex<Cache> {
    static CACHE: std::sync::OnceLock<Mutex<Cache>> = std::sync::OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The configuration trusting the system's roots and, when given, the PEM certificates of
/// `extra_ca_pem` besides them; for `reqwest::ClientBuilder::tls_backend_preconfigured`.
/// Only HTTP/1.1 is offered (the clients speak nothing else).
pub fn client_config(extra_ca_pem: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let extra = extra_ca_pem.map(str::trim).filter(|p| !p.is_empty());
    let key = extra.map(|p| Sha256::digest(p.as_bytes()).into());
    if let Some(c) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok((**c).clone());
    }
    let built = Arc::new(build(extra)?);
    let mut m = cache().lock().unwrap_or_else(|e| e.into_inner());
    if m.len() >= MAX_BUNDLES {
        m.clear();
    }
    m.insert(key, built.clone());
    Ok((*built).clone())
}

fn build(extra: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match extra {
        None => rustls_platform_verifier::Verifier::new(provider.clone()),
        Some(pem) => {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("the CA certificate (caFile) is not PEM: {e}"))?;
            if certs.is_empty() {
                return Err("the CA certificate (caFile) holds no PEM certificate".into());
            }
            rustls_platform_verifier::Verifier::new_with_extra_roots(certs, provider.clone())
        }
    }
    .map_err(|e| format!("cannot set up certificate verification: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_per_bundle() {
        let first = client_config(None).unwrap();
        assert_eq!(first.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let cached = |k: &Option<[u8; 32]>| cache().lock().unwrap().get(k).cloned();
        let kept = cached(&None).expect("cached");
        // A blank bundle is none; asking again reuses what was built (the system bundle was
        // parsed once).
        client_config(Some("  ")).unwrap();
        assert!(Arc::ptr_eq(&kept, &cached(&None).expect("cached")));
        let e = client_config(Some("not pem")).unwrap_err();
        assert!(e.contains("caFile"), "{e}");
    }
}
