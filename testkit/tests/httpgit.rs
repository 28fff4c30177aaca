//! The HTTPS git server against the real git CLI: credentials come from a credential helper
//! reading the environment (never the command line or the URL), the CA from GIT_SSL_CAINFO.

use std::path::Path;
use std::process::{Command, Output};

use tooljet_gitsync_testkit::httpgit::{git_https_env, Access, HttpGitServer};
use tooljet_gitsync_testkit::tls::TestCa;

fn git_env(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    Command::new("git")
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "git failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn clone_push_ls_remote_with_a_helper_and_the_ca_file() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("acme/apps").unwrap();
    assert_eq!(
        url,
        format!("https://127.0.0.1:{}/acme/apps.git", srv.port())
    );
    let first = srv
        .commit_files("acme/apps", "main", &[("README.md", b"hi\n")], "first")
        .unwrap();
    let password = "s3cret-Pa55word-xyz";
    srv.add_user("alice", password, Access::ReadWrite);
    let env = git_https_env(&srv.ca_file(), "alice", password);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    let ls = ok(&git_env(t, &env, &["ls-remote", &url]));
    assert!(ls.contains(&format!("{first}\trefs/heads/main")), "{ls}");

    ok(&git_env(t, &env, &["clone", "-q", &url, "c"]));
    let c = t.join("c");
    std::fs::write(c.join("app.json"), "{}\n").unwrap();
    ok(&git_env(&c, &env, &["add", "app.json"]));
    ok(&git_env(&c, &env, &["commit", "-q", "-m", "second"]));
    ok(&git_env(&c, &env, &["push", "-q", "origin", "HEAD:main"]));
    let local = ok(&git_env(&c, &env, &["rev-parse", "HEAD"]));
    let remote = srv.git("acme/apps", &["rev-parse", "main"]).unwrap();
    assert_eq!(remote.trim(), local);

    let log = srv.requests();
    // git's credential flow: a first anonymous request is challenged, then retried.
    assert!(log.iter().any(|r| r.status == 401 && r.username.is_none()));
    assert!(log
        .iter()
        .any(|r| r.status == 200 && r.username.as_deref() == Some("alice")));
    for r in &log {
        assert!(
            !r.path.contains(password) && !r.query.contains(password),
            "{r:?}"
        );
    }
    assert_eq!(srv.push_count(), 1);
    assert!(srv.fetch_count() >= 1);
    assert!(log
        .iter()
        .any(|r| r.git_protocol.as_deref() == Some("version=2")));
}

#[test]
fn a_token_works_with_any_username_and_revoking_it_locks_out() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("tok").unwrap();
    srv.commit_files("tok", "main", &[("a", b"a")], "a")
        .unwrap();
    srv.add_token("glpat-abcdef123456", Access::ReadWrite);
    let tmp = tempfile::tempdir().unwrap();
    for user in ["oauth2", "x-token-auth", "anything"] {
        let env = git_https_env(&srv.ca_file(), user, "glpat-abcdef123456");
        ok(&git_env(tmp.path(), &env, &["ls-remote", &url]));
    }
    srv.credentials().revoke_token("glpat-abcdef123456");
    let env = git_https_env(&srv.ca_file(), "oauth2", "glpat-abcdef123456");
    let o = git_env(tmp.path(), &env, &["ls-remote", &url]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Authentication failed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_read_only_user_fetches_but_is_refused_on_push_with_403() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("ro").unwrap();
    srv.commit_files("ro", "main", &[("a", b"a")], "a").unwrap();
    srv.add_user("reader", "pw-reader-1", Access::ReadOnly);
    let env = git_https_env(&srv.ca_file(), "reader", "pw-reader-1");
    let tmp = tempfile::tempdir().unwrap();
    ok(&git_env(tmp.path(), &env, &["clone", "-q", &url, "c"]));
    let c = tmp.path().join("c");
    ok(&git_env(
        &c,
        &env,
        &["commit", "-q", "--allow-empty", "-m", "nope"],
    ));
    let before = srv.git("ro", &["rev-parse", "main"]).unwrap();
    let o = git_env(&c, &env, &["push", "origin", "HEAD:main"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
    assert_eq!(srv.git("ro", &["rev-parse", "main"]).unwrap(), before);
    assert!(srv.requests().iter().any(|r| r.status == 403
        && r.path.ends_with("/info/refs")
        && r.query == "service=git-receive-pack"
        && r.username.as_deref() == Some("reader")));
    assert_eq!(srv.push_count(), 0);
}

#[test]
fn a_wrong_password_a_removed_user_and_no_credentials_get_401() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("p").unwrap();
    srv.add_user("alice", "right-pw", Access::ReadWrite);
    let tmp = tempfile::tempdir().unwrap();
    let env = git_https_env(&srv.ca_file(), "alice", "wrong-pw");
    let o = git_env(tmp.path(), &env, &["ls-remote", &url]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Authentication failed"),
        "{}",
        stderr(&o)
    );
    srv.remove_user("alice");
    let env = git_https_env(&srv.ca_file(), "alice", "right-pw");
    let o = git_env(tmp.path(), &env, &["ls-remote", &url]);
    assert!(!o.status.success());
    assert!(srv
        .requests()
        .iter()
        .all(|r| r.status == 401 && r.path.ends_with("/info/refs")));

    // Without any helper: the raw challenge.
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", "--cacert"])
        .arg(srv.ca_file())
        .arg(format!("{url}/info/refs?service=git-upload-pack"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&o.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(
        head.contains("www-authenticate: basic realm=\"tooljet-gitsync testkit\""),
        "{head}"
    );
}

#[test]
fn git_refuses_a_server_whose_ca_it_does_not_trust() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("x").unwrap();
    srv.add_user("alice", "pw", Access::ReadWrite);
    let other = TestCa::new().unwrap();
    let env = git_https_env(&other.ca_file(), "alice", "pw");
    let tmp = tempfile::tempdir().unwrap();
    let o = git_env(tmp.path(), &env, &["ls-remote", &url]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("SSL certificate problem") || e.contains("certificate verif"),
        "{e}"
    );
    // Nothing reached the CGI: the handshake failed before any request.
    assert!(srv.requests().is_empty());
}

#[test]
fn gzip_request_bodies_and_chunked_pushes_reach_http_backend() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("big").unwrap();
    let base = srv
        .commit_files("big", "main", &[("a", b"a")], "a")
        .unwrap();
    // 60 branches: the clone's want list is over 1 KiB, so git gzips the upload-pack POST.
    for i in 0..60 {
        let sha = srv
            .commit_files(
                "big",
                &format!("feature-{i:02}"),
                &[("f", format!("{i}").as_bytes())],
                "f",
            )
            .unwrap();
        assert_ne!(sha, base);
    }
    srv.add_user("alice", "pw-alice", Access::ReadWrite);
    let env = git_https_env(&srv.ca_file(), "alice", "pw-alice");
    let tmp = tempfile::tempdir().unwrap();
    ok(&git_env(
        tmp.path(),
        &env,
        &["clone", "-q", "--mirror", &url, "m"],
    ));
    let refs = ok(&git_env(&tmp.path().join("m"), &env, &["for-each-ref"]));
    assert_eq!(refs.lines().count(), 61);
    assert!(
        srv.requests().iter().any(|r| r.is_fetch()
            && r.status == 200
            && r.content_encoding.as_deref() == Some("gzip")),
        "{:?}",
        srv.requests()
    );

    // A push larger than http.postBuffer (1 MiB) is sent chunked, without Content-Length.
    ok(&git_env(tmp.path(), &env, &["clone", "-q", &url, "c"]));
    let c = tmp.path().join("c");
    let mut blob = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    while blob.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blob.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(c.join("random.bin"), &blob).unwrap();
    ok(&git_env(&c, &env, &["add", "random.bin"]));
    ok(&git_env(&c, &env, &["commit", "-q", "-m", "big"]));
    ok(&git_env(&c, &env, &["push", "-q", "origin", "HEAD:main"]));
    let local = ok(&git_env(&c, &env, &["rev-parse", "HEAD"]));
    assert_eq!(
        srv.git("big", &["rev-parse", "main"]).unwrap().trim(),
        local
    );
}

#[test]
fn a_stalling_credential_is_let_in_and_never_answered() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("s").unwrap();
    srv.add_user("wedged", "pw", Access::Stalls);
    let env = git_https_env(&srv.ca_file(), "wedged", "pw");
    let tmp = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let o = git_env(
        tmp.path(),
        &env,
        &[
            "-c",
            "http.lowSpeedLimit=1",
            "-c",
            "http.lowSpeedTime=2",
            "ls-remote",
            &url,
        ],
    );
    assert!(!o.status.success());
    let took = start.elapsed();
    assert!(took >= std::time::Duration::from_secs(2), "{took:?}");
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
}
