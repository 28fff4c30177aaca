//! A throw-away certificate authority and a TLS terminator for the HTTPS test servers (the
//! smart-HTTP git server and the GitHub/GitLab/Gitea API emulators).
//!
//! [`TestCa::new`] makes a self-signed CA (rcgen, ECDSA P-256) and one server certificate signed
//! by it for `127.0.0.1` and `localhost`, so one CA file serves every server a test starts.
//! [`serve_tls`] runs an axum router behind rustls on a free 127.0.0.1 port, on a runtime of
//! its own (a background thread), so that sync tests which block on a `git` subprocess and
//! async tests alike can use it; dropping the returned [`Served`] stops it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::oneshot;

/// A CA made at start plus a server certificate for 127.0.0.1/localhost signed by it.
pub struct TestCa {
    dir: tempfile::TempDir,
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// Generates the CA and the server certificate, and writes the CA to `ca.pem` in a
    /// temporary directory (see [`TestCa::ca_file`]).
    pub fn new() -> Result<TestCa> {
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tooljet-gitsync testkit CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().context("server key")?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &issuer)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![
                    server_cert.der().clone(),
                    CertificateDer::from(ca_cert.der().to_vec()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )?;
        // git (libcurl) and reqwest both speak HTTP/1.1; the servers only offer that.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let dir = tempfile::Builder::new().prefix("testca-").tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), &ca_pem)?;
        Ok(TestCa {
            dir,
            ca_pem,
            server: Arc::new(server),
        })
    }

    /// The CA certificate (PEM), for `caFile` Secrets or reqwest's `add_root_certificate`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Path of a file holding [`TestCa::ca_pem`], for `GIT_SSL_CAINFO` / `http.sslCAInfo`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The rustls server configuration presenting the 127.0.0.1/localhost certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.clone()
    }

    /// Directory of the CA file (scratch space living as long as the CA).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A router served over TLS on its own runtime; stops when dropped.
pub struct Served {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// The bound address (127.0.0.1, a free port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `router` over TLS (`tls`) on a free 127.0.0.1 port, HTTP/1.1, on a two-worker
/// runtime in a background thread. Children spawned by handlers run on that runtime's
/// threads: they are killed when it shuts down (`kill_on_drop`, PR_SET_PDEATHSIG).
pub fn serve_tls(router: Router, tls: Arc<rustls::ServerConfig>) -> Result<Served> {
    let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let thread = std::thread::Builder::new()
        .name(format!("tls-{}", addr.port()))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                loop {
                    let (tcp, peer) = tokio::select! {
                        _ = &mut rx => break,
                        r = listener.accept() => match r {
                            Ok(x) => x,
                            Err(_) => continue,
                        },
                    };
                    let acceptor = acceptor.clone();
                    let router = router.clone();
                    tokio::spawn(async move {
                        // A client that refuses the certificate simply hangs up here.
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let svc = hyper::service::service_fn(
                            move |mut req: hyper::Request<hyper::body::Incoming>| {
                                req.extensions_mut()
                                    .insert(axum::extract::ConnectInfo(peer));
                                let router = router.clone();
                                async move {
                                    use tower::ServiceExt;
                                    router.oneshot(req.map(axum::body::Body::new)).await
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            // Dropping the runtime cancels in-flight handlers (their children are killed).
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        })?;
    ready_rx
        .recv()
        .context("TLS server thread died at start")??;
    Ok(Served {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}
