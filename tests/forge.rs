//! `forge`: the pull-request clients against the testkit's GitHub, GitLab and Gitea emulators
//! (real branches on the HTTPS git server, TLS with the test CA), and GitHub App installation
//! tokens used as real git passwords.

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tooljet_gitsync_operator::forge::{
    AppCredentials, AppTokenError, AppTokenErrorKind, AppTokens, ForgeClient, ForgeError,
    ForgeErrorKind, InstallationToken, PrState, Provider,
};
use tooljet_gitsync_testkit::forge::gitea::GiteaEmulator;
use tooljet_gitsync_testkit::forge::github::{generate_rsa_key_pem, GitHubEmulator};
use tooljet_gitsync_testkit::forge::gitlab::GitLabEmulator;
use tooljet_gitsync_testkit::forge::{ApiRequestRecord, PullRequest as HostPr};
use tooljet_gitsync_testkit::httpgit::{git_https_env, Access, HttpGitServer, TokenGrant};
use zeroize::Zeroizing;

const TIMEOUT: Duration = Duration::from_secs(20);

enum Emu {
    GitHub(GitHubEmulator),
    GitLab(GitLabEmulator),
    Gitea(GiteaEmulator),
}

impl Emu {
    fn prs(&self, repo: &str) -> Vec<HostPr> {
        match self {
            Emu::GitHub(e) => e.prs(repo),
            Emu::GitLab(e) => e.prs(repo),
            Emu::Gitea(e) => e.prs(repo),
        }
    }
    fn merge(&self, repo: &str, n: u64) {
        match self {
            Emu::GitHub(e) => e.merge(repo, n).map(|_| ()),
            Emu::GitLab(e) => e.merge(repo, n).map(|_| ()),
            Emu::Gitea(e) => e.merge(repo, n).map(|_| ()),
        }
        .unwrap()
    }
    fn close(&self, repo: &str, n: u64) {
        match self {
            Emu::GitHub(e) => e.close(repo, n),
            Emu::GitLab(e) => e.close(repo, n),
            Emu::Gitea(e) => e.close(repo, n),
        }
        .unwrap()
    }
    fn requests(&self) -> Vec<ApiRequestRecord> {
        match self {
            Emu::GitHub(e) => e.requests(),
            Emu::GitLab(e) => e.requests(),
            Emu::Gitea(e) => e.requests(),
        }
    }
}

/// A git server with `repo` (main + branches made by [`branch`]) and one forge emulator.
struct Host {
    srv: HttpGitServer,
    emu: Emu,
    provider: Provider,
    api: String,
    repo: String,
}

impl Host {
    fn start(provider: Provider, repo: &str) -> Host {
        let srv = HttpGitServer::start().unwrap();
        srv.create_repo(repo).unwrap();
        srv.commit_files(repo, "main", &[("README", b"hello")], "init")
            .unwrap();
        let (emu, api) = match provider {
            Provider::GitHub => {
                let e = GitHubEmulator::start(&srv).unwrap();
                // The GitHub Enterprise Server prefix, as default_api_base gives it.
                let api = format!("{}/api/v3", e.api_url());
                (Emu::GitHub(e), api)
            }
            Provider::GitLab => {
                let e = GitLabEmulator::start(&srv).unwrap();
                let api = e.api_url();
                (Emu::GitLab(e), api)
            }
            Provider::Gitea => {
                let e = GiteaEmulator::start(&srv).unwrap();
                let api = e.api_url();
                (Emu::Gitea(e), api)
            }
        };
        Host {
            srv,
            emu,
            provider,
            api,
            repo: repo.to_string(),
        }
    }

    /// A branch off main with one commit of its own.
    fn branch(&self, name: &str) {
        self.srv.create_branch(&self.repo, name, "main").unwrap();
        let file = format!("apps/{}.json", name.replace('/', "-"));
        self.srv
            .commit_files(&self.repo, name, &[(file.as_str(), b"{}")], name)
            .unwrap();
    }

    fn client(&self, token: &str) -> ForgeClient {
        ForgeClient::new(
            self.provider,
            &self.api,
            &self.repo,
            Zeroizing::new(token.to_string()),
            Some(&self.srv.ca_pem()),
            TIMEOUT,
        )
        .unwrap()
    }

    /// The web page of PR `n`, as each host shows it.
    fn web_url(&self, n: u64) -> String {
        let base = self.srv.base_url();
        match &self.emu {
            Emu::GitHub(_) => format!("{base}/{}/pull/{n}", self.repo),
            Emu::GitLab(_) => format!("{base}/{}/-/merge_requests/{n}", self.repo),
            Emu::Gitea(e) => format!("{}/{}/pulls/{n}", e.url(), self.repo),
        }
    }

    fn list_requests(&self) -> usize {
        self.emu
            .requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && (r.path.ends_with("/pulls") || r.path.ends_with("/merge_requests"))
            })
            .count()
    }
}

fn assert_clean(e: &dyn std::fmt::Display, secrets: &[&str]) {
    let text = e.to_string();
    for s in secrets {
        assert!(!text.contains(s), "{text:?} contains a secret");
    }
}

/// open → the web URL; open again → the same PR; find_open; update; merged; closed; a wrong
/// token; paging past the first page.
async fn lifecycle(provider: Provider, repo: &str) {
    let h = Host::start(provider, repo);
    let token = "tok-rw-0123456789";
    h.srv.add_token(token, Access::ReadWrite);
    h.branch("tooljet/prod");
    let c = h.client(token);

    let pr = c
        .open("tooljet/prod", "main", "Promote prod", "first body")
        .await
        .unwrap();
    assert_eq!(pr.number, 1);
    assert_eq!(pr.url, h.web_url(1));
    assert_eq!(pr.state, PrState::Open);
    assert_eq!(
        (pr.head_branch.as_str(), pr.base_branch.as_str()),
        ("tooljet/prod", "main")
    );
    assert_eq!(pr.merge_commit, None);

    // Again for the same head: the same PR, still one on the host.
    let again = c
        .open("tooljet/prod", "main", "Promote prod", "first body")
        .await
        .unwrap();
    assert_eq!(again, pr);
    assert_eq!(h.emu.prs(repo).len(), 1);

    assert_eq!(
        c.find_open("tooljet/prod", "main").await.unwrap(),
        Some(pr.clone())
    );
    assert_eq!(c.find_open("tooljet/none", "main").await.unwrap(), None);
    assert_eq!(c.find_open("tooljet/prod", "other").await.unwrap(), None);

    let updated = c.update(1, "Promote prod v2", "second body").await.unwrap();
    assert_eq!(updated.number, 1);
    let host_pr = &h.emu.prs(repo)[0];
    assert_eq!(host_pr.title, "Promote prod v2");
    assert_eq!(host_pr.body.as_deref(), Some("second body"));

    // Merged on the host: Merged, with the merge commit now at the tip of main.
    h.emu.merge(repo, 1);
    let merged = c.get(1).await.unwrap();
    assert_eq!(merged.state, PrState::Merged);
    let tip = h.srv.repos().branch_sha(repo, "main").unwrap();
    assert_eq!(merged.merge_commit.as_deref(), Some(tip.as_str()));
    assert_eq!(c.find_open("tooljet/prod", "main").await.unwrap(), None);

    // Closed without merging.
    h.branch("tooljet/staging");
    let pr2 = c
        .open("tooljet/staging", "main", "Staging", "")
        .await
        .unwrap();
    h.emu.close(repo, pr2.number);
    let closed = c.get(pr2.number).await.unwrap();
    assert_eq!((closed.state, closed.merge_commit), (PrState::Closed, None));

    // No such PR.
    let e = c.get(99).await.unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::NotFound, "{e}");

    // A wrong token.
    let bad = h.client("tok-wrong-9876543210");
    for e in [
        bad.open("tooljet/staging", "main", "x", "y")
            .await
            .unwrap_err(),
        bad.get(1).await.unwrap_err(),
        bad.find_open("tooljet/prod", "main").await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ForgeErrorKind::Unauthorized, "{e}");
        assert_clean(&e, &["tok-wrong-9876543210", token]);
    }

    // Paging: the wanted PR is the oldest open one, behind two pages of others (listings are
    // newest first).
    h.branch("tooljet/wanted");
    let wanted = c
        .open("tooljet/wanted", "main", "Wanted", "")
        .await
        .unwrap();
    for i in 0..5 {
        let b = format!("tooljet/other-{i}");
        h.branch(&b);
        c.open(&b, "main", &b, "").await.unwrap();
    }
    let paged = h.client(token).with_page_size(2);
    let before = h.list_requests();
    assert_eq!(
        paged.find_open("tooljet/wanted", "main").await.unwrap(),
        Some(wanted)
    );
    let pages = h.list_requests() - before;
    match provider {
        // Gitea's listing cannot filter by head: walked page by page.
        Provider::Gitea => assert!(pages >= 3, "{pages} pages"),
        // GitHub and GitLab filter by head and base on the host: one page.
        Provider::GitHub | Provider::GitLab => assert_eq!(pages, 1),
    }
    let before = h.list_requests();
    assert_eq!(
        paged.find_open("tooljet/absent", "main").await.unwrap(),
        None
    );
    if provider == Provider::Gitea {
        // All six open PRs, two a page, walked to the end.
        assert_eq!(h.list_requests() - before, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_pull_requests() {
    lifecycle(Provider::GitHub, "acme/apps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_merge_requests_in_a_subgroup() {
    lifecycle(Provider::GitLab, "grp/sub/apps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_pull_requests() {
    lifecycle(Provider::Gitea, "org/apps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_token_of_another_repository_sees_nothing() {
    let h = Host::start(Provider::GitHub, "acme/apps");
    h.branch("tooljet/prod");
    let mut grant = TokenGrant::new(Access::ReadWrite);
    grant.repos = Some(["acme/other".to_string()].into_iter().collect());
    h.srv.credentials().add_grant("tok-other-repo", grant);
    let e = h
        .client("tok-other-repo")
        .open("tooljet/prod", "main", "x", "")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("acme/apps"), "{e}");
    assert_clean(&e, &["tok-other-repo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_read_only_token_is_forbidden() {
    let h = Host::start(Provider::GitLab, "grp/apps");
    h.branch("tooljet/prod");
    h.srv.add_token("tok-rw-gitlab", Access::ReadWrite);
    h.srv.add_token("tok-ro-gitlab", Access::ReadOnly);
    let ro = h.client("tok-ro-gitlab");
    let e = ro.open("tooljet/prod", "main", "x", "").await.unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::Forbidden, "{e}");
    assert!(e.to_string().contains("api scope"), "{e}");
    assert_clean(&e, &["tok-ro-gitlab"]);
    assert!(h.emu.prs("grp/apps").is_empty());
    // Reading works; updating does not.
    let pr = h
        .client("tok-rw-gitlab")
        .open("tooljet/prod", "main", "x", "")
        .await
        .unwrap();
    assert_eq!(ro.get(pr.number).await.unwrap(), pr);
    let e = ro.update(pr.number, "t", "b").await.unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::Forbidden, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_read_only_token_cannot_open_or_edit() {
    let h = Host::start(Provider::Gitea, "org/apps");
    h.branch("tooljet/prod");
    h.srv.add_token("tok-rw-gitea", Access::ReadWrite);
    h.srv.add_token("tok-ro-gitea", Access::ReadOnly);
    let ro = h.client("tok-ro-gitea");
    let e = ro.open("tooljet/prod", "main", "x", "").await.unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::Forbidden, "{e}");
    assert!(e.to_string().contains("required scope"), "{e}");
    assert_clean(&e, &["tok-ro-gitea"]);
    let pr = h
        .client("tok-rw-gitea")
        .open("tooljet/prod", "main", "x", "")
        .await
        .unwrap();
    assert_eq!(
        ro.find_open("tooljet/prod", "main").await.unwrap(),
        Some(pr.clone())
    );
    let e = ro.update(pr.number, "t", "b").await.unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::Forbidden, "{e}");
    assert!(e.to_string().contains("write:repository"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_invalid() {
    // GitHub: no commits between the branches (422); GitLab: a base branch that does not
    // exist (400); both Invalid with the host's message.
    let h = Host::start(Provider::GitHub, "acme/apps");
    h.srv.add_token("tok-rw", Access::ReadWrite);
    h.srv
        .create_branch("acme/apps", "tooljet/empty", "main")
        .unwrap();
    let e = h
        .client("tok-rw")
        .open("tooljet/empty", "main", "x", "")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::Invalid, "{e}");
    assert!(e.to_string().contains("No commits between"), "{e}");

    let h = Host::start(Provider::GitLab, "grp/apps");
    h.srv.add_token("tok-rw", Access::ReadWrite);
    h.branch("tooljet/prod");
    let e = h
        .client("tok-rw")
        .open("tooljet/prod", "nope", "x", "")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::Invalid, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_is_needed_and_used_beside_the_system_roots() {
    let h = Host::start(Provider::Gitea, "org/apps");
    h.srv.add_token("tok-rw", Access::ReadWrite);
    // Without the test CA the emulator's certificate is not trusted.
    let c = ForgeClient::new(
        Provider::Gitea,
        &h.api,
        "org/apps",
        Zeroizing::new("tok-rw".into()),
        None,
        TIMEOUT,
    )
    .unwrap();
    let e = c.find_open("a", "main").await.unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::Unreachable, "{e}");
    // With it (the Host's client), it is.
    assert_eq!(
        h.client("tok-rw").find_open("a", "main").await.unwrap(),
        None
    );
}

/// A plain-http server on loopback answering every request with `answer` (or never, when
/// `None`), for what no emulator does.
async fn fake_http(answer: Option<Vec<u8>>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            read_request(&mut s).await;
            match &answer {
                Some(a) => {
                    let _ = s.write_all(a).await;
                    let _ = s.shutdown().await;
                }
                None => held.push(s),
            }
        }
    });
    format!("http://{addr}")
}

/// Reads one request (head, and a body of `content-length` bytes), so the answer never races
/// the client's upload.
async fn read_request(s: &mut tokio::net::TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let body_start = loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..body_start]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while got.len() < body_start + len {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn http_answer(status: &str, body: &[u8]) -> Vec<u8> {
    let mut a = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    a.extend_from_slice(body);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_and_silence() {
    let client = |base: &str, timeout: Duration| {
        ForgeClient::new(
            Provider::GitHub,
            base,
            "acme/apps",
            Zeroizing::new("tok-secret-abcdef".into()),
            None,
            timeout,
        )
        .unwrap()
    };
    let cases: Vec<(Vec<u8>, ForgeErrorKind, &str)> = vec![
        (
            http_answer("200 OK", b"not json"),
            ForgeErrorKind::Unexpected,
            "not a pull request",
        ),
        (
            http_answer("200 OK", &vec![b' '; 2 * 1024 * 1024]),
            ForgeErrorKind::Unexpected,
            "larger than",
        ),
        (
            http_answer(
                "502 Bad Gateway",
                br#"{"message":"upstream tok-secret-abcdef down"}"#,
            ),
            ForgeErrorKind::Unexpected,
            "502",
        ),
    ];
    for (answer, kind, needle) in cases {
        let base = fake_http(Some(answer)).await;
        let e = client(&base, TIMEOUT).get(1).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
        assert_clean(&e, &["tok-secret-abcdef"]);
    }
    // A host that accepts and never answers: the deadline ends the call.
    let base = fake_http(None).await;
    let started = std::time::Instant::now();
    let e = client(&base, Duration::from_millis(500))
        .get(1)
        .await
        .unwrap_err();
    assert!(matches!(e, ForgeError::Timeout { .. }), "{e}");
    assert_eq!(e.kind(), ForgeErrorKind::Unreachable);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nobody listening.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let e = client(&format!("http://127.0.0.1:{port}"), TIMEOUT)
        .get(1)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ForgeErrorKind::Unreachable, "{e}");
}

// ---- GitHub App installation tokens ----

struct App {
    srv: HttpGitServer,
    gh: GitHubEmulator,
    installation: u64,
}

impl App {
    fn start() -> App {
        let srv = HttpGitServer::start().unwrap();
        for r in ["acme/apps", "acme/other"] {
            srv.create_repo(r).unwrap();
            srv.commit_files(r, "main", &[("README", b"hi")], "init")
                .unwrap();
        }
        let gh = GitHubEmulator::start(&srv).unwrap();
        let installation = gh.install("acme", &["acme/apps"], Access::ReadWrite);
        App {
            srv,
            gh,
            installation,
        }
    }

    fn creds(&self) -> AppCredentials {
        AppCredentials {
            api_base: self.gh.api_url(),
            app_id: self.gh.app_id().to_string(),
            installation_id: self.installation.to_string(),
            private_key_pem: Zeroizing::new(self.gh.private_key_pem()),
            ca_pem: Some(self.srv.ca_pem()),
        }
    }

    fn token_requests(&self) -> usize {
        self.gh
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/access_tokens"))
            .count()
    }

    /// `git ls-remote` of `repo` with `x-access-token:<token>`.
    fn ls_remote(&self, repo: &str, token: &str) -> std::process::Output {
        let home = tempfile::tempdir().unwrap();
        Command::new("git")
            .args(["ls-remote", &self.srv.url(repo)])
            .current_dir(home.path())
            .env("HOME", home.path())
            .envs(git_https_env(&self.srv.ca_file(), "x-access-token", token))
            .output()
            .unwrap()
    }

    /// Every secret an error must not show: issued tokens and the key's lines.
    fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .gh
            .issued_tokens()
            .into_iter()
            .map(|t| t.token)
            .collect();
        s.extend(
            self.gh
                .private_key_pem()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_string),
        );
        s
    }
}

fn assert_app_error_clean(e: &AppTokenError, app: &App, extra: &[&str]) {
    let text = e.to_string();
    for s in app
        .secrets()
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        assert!(!text.contains(s), "{text:?} contains a secret");
    }
    // A JWT (base64 of `{"`) never appears.
    assert!(!text.contains("eyJ"), "{text:?} contains a JWT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_token_is_a_git_password_cached_and_refreshed() {
    let app = App::start();
    let tokens = AppTokens::new(TIMEOUT);
    let creds = app.creds();

    let t = tokens.token(&creds, Some("acme/apps")).await.unwrap();
    let issued = app.gh.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(t.token.as_str(), issued[0].token);
    let left = t
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(3500), "{left:?}");
    let o = app.ls_remote("acme/apps", &t.token);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("refs/heads/main"));
    // Scoped to the one repository.
    assert!(!app.ls_remote("acme/other", &t.token).status.success());

    // The second call is served from the cache.
    let again = tokens.token(&creds, Some("acme/apps")).await.unwrap();
    assert_eq!(again.token, t.token);
    assert_eq!(app.token_requests(), 1);
    // A clone of the cache shares it.
    let shared = tokens.clone();
    assert_eq!(
        shared.token(&creds, Some("acme/apps")).await.unwrap().token,
        t.token
    );
    assert_eq!(app.token_requests(), 1);

    // Unscoped is another token; so is the same key written as PKCS#8.
    let all = tokens.token(&creds, None).await.unwrap();
    assert_ne!(all.token, t.token);
    assert_eq!(app.token_requests(), 2);
    let pkcs8 = AppCredentials {
        private_key_pem: Zeroizing::new(to_pkcs8(&app.gh.private_key_pem())),
        ..creds.clone()
    };
    let t8 = tokens.token(&pkcs8, Some("acme/apps")).await.unwrap();
    assert!(app.ls_remote("acme/apps", &t8.token).status.success());
    assert_eq!(app.token_requests(), 3);

    // invalidate: the next call fetches anew.
    tokens.invalidate(&creds, Some("acme/apps"));
    let fresh = tokens.token(&creds, Some("acme/apps")).await.unwrap();
    assert_ne!(fresh.token, t.token);
    assert_eq!(app.token_requests(), 4);

    // A token lasting less than the refresh margin is fetched anew on the next call.
    app.gh.set_token_lifetime(Duration::from_secs(120));
    tokens.invalidate(&creds, Some("acme/apps"));
    let short = tokens.token(&creds, Some("acme/apps")).await.unwrap();
    let next = tokens.token(&creds, Some("acme/apps")).await.unwrap();
    assert_ne!(short.token, next.token);
    assert_eq!(app.token_requests(), 6);
    assert!(app.ls_remote("acme/apps", &next.token).status.success());

    // The installation token also drives the pulls API (Bearer), GHE prefix and all.
    app.srv
        .create_branch("acme/apps", "tooljet/prod", "main")
        .unwrap();
    app.srv
        .commit_files("acme/apps", "tooljet/prod", &[("apps/a.json", b"{}")], "a")
        .unwrap();
    let c = ForgeClient::new(
        Provider::GitHub,
        &format!("{}/api/v3", app.gh.api_url()),
        "acme/apps",
        next.token.clone(),
        Some(&app.srv.ca_pem()),
        TIMEOUT,
    )
    .unwrap();
    let pr = c.open("tooljet/prod", "main", "t", "b").await.unwrap();
    assert_eq!(app.gh.prs("acme/apps")[0].number, pr.number);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_token_errors_tell_what_to_fix() {
    let app = App::start();
    let tokens = AppTokens::new(TIMEOUT);
    let creds = app.creds();

    // A repository outside the installation.
    let e = kind_of(tokens.token(&creds, Some("acme/other")).await);
    assert_eq!(e.kind(), AppTokenErrorKind::RepositoryNotInstalled, "{e}");
    assert!(e.to_string().contains("acme/other"), "{e}");
    assert_app_error_clean(&e, &app, &[]);

    // A key of another App.
    let other_key = generate_rsa_key_pem().unwrap();
    let foreign = AppCredentials {
        private_key_pem: Zeroizing::new(other_key.clone()),
        ..creds.clone()
    };
    let e = kind_of(tokens.token(&foreign, Some("acme/apps")).await);
    assert_eq!(e.kind(), AppTokenErrorKind::JwtRejected, "{e}");
    assert!(e.to_string().contains("could not be decoded"), "{e}");
    let other_lines: Vec<&str> = other_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_app_error_clean(&e, &app, &other_lines);

    // Garbage and encrypted keys: refused before any request.
    let before = app.token_requests();
    let encrypted = encrypt_key(&app.gh.private_key_pem());
    for pem in [
        "garbage",
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        encrypted.as_str(),
    ] {
        let bad = AppCredentials {
            private_key_pem: Zeroizing::new(pem.to_string()),
            ..creds.clone()
        };
        let e = kind_of(tokens.token(&bad, Some("acme/apps")).await);
        assert_eq!(e.kind(), AppTokenErrorKind::KeyInvalid, "{e}");
        let lines: Vec<&str> = pem
            .lines()
            .filter(|l| l.len() > 8 && !l.starts_with("-----"))
            .collect();
        assert_app_error_clean(&e, &app, &lines);
    }
    let e = kind_of(
        tokens
            .token(
                &AppCredentials {
                    private_key_pem: Zeroizing::new(encrypted.clone()),
                    ..creds.clone()
                },
                None,
            )
            .await,
    );
    assert!(e.to_string().contains("encrypted"), "{e}");
    assert_eq!(app.token_requests(), before);

    // Suspended.
    app.gh.suspend(app.installation, true);
    let e = kind_of(tokens.token(&creds, Some("acme/apps")).await);
    assert_eq!(e.kind(), AppTokenErrorKind::InstallationSuspended, "{e}");
    assert!(e.to_string().contains("suspended"), "{e}");
    assert_app_error_clean(&e, &app, &[]);
    app.gh.suspend(app.installation, false);

    // Uninstalled: not found.
    app.gh.uninstall(app.installation);
    let e = kind_of(tokens.token(&creds, None).await);
    assert_eq!(e.kind(), AppTokenErrorKind::InstallationNotFound, "{e}");
    assert!(e.to_string().contains("githubAppInstallationID"), "{e}");
    assert_app_error_clean(&e, &app, &[]);

    // A wrong installation ID.
    let wrong = AppCredentials {
        installation_id: "12345".into(),
        ..creds.clone()
    };
    let e = kind_of(tokens.token(&wrong, None).await);
    assert_eq!(e.kind(), AppTokenErrorKind::InstallationNotFound, "{e}");
    let e = kind_of(
        tokens
            .token(
                &AppCredentials {
                    installation_id: "abc".into(),
                    ..creds.clone()
                },
                None,
            )
            .await,
    );
    assert_eq!(e.kind(), AppTokenErrorKind::Config, "{e}");

    // Nothing listening, and silence.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let down = AppCredentials {
        api_base: format!("http://127.0.0.1:{port}"),
        ..creds.clone()
    };
    let e = kind_of(tokens.token(&down, None).await);
    assert_eq!(e.kind(), AppTokenErrorKind::Unreachable, "{e}");
    let silent = AppCredentials {
        api_base: fake_http(None).await,
        ..creds.clone()
    };
    let e = kind_of(
        AppTokens::new(Duration::from_millis(500))
            .token(&silent, None)
            .await,
    );
    assert!(matches!(e, AppTokenError::Timeout { .. }), "{e}");
    // An answer that is not a token.
    let odd = AppCredentials {
        api_base: fake_http(Some(http_answer("201 Created", br#"{"token": 5}"#))).await,
        ..creds.clone()
    };
    let e = kind_of(tokens.token(&odd, None).await);
    assert_eq!(e.kind(), AppTokenErrorKind::Unexpected, "{e}");
    assert_app_error_clean(&e, &app, &[]);
}

fn kind_of(r: Result<InstallationToken, AppTokenError>) -> AppTokenError {
    r.unwrap_err()
}

fn to_pkcs8(pkcs1: &str) -> String {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs1_pem(pkcs1)
        .unwrap()
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

/// The key encrypted with a passphrase (`openssl pkcs8 -topk8`), as a user might store it.
fn encrypt_key(pkcs1: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("key.pem");
    std::fs::write(&input, pkcs1).unwrap();
    let out = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
            "-in",
        ])
        .arg(&input)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap(),
        // Without openssl: the same shape (header and an opaque body).
        _ => "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n".into(),
    }
}
