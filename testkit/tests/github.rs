//! The GitHub emulator: App JWT -> installation token -> real git over HTTPS, and the pulls API
//! on real branches.

mod common;

use std::time::Duration;

use common::{call, client, git, link, ok};
use serde_json::json;
use tooljet_gitsync_testkit::forge::github::{
    app_jwt, generate_rsa_key_pem, sign_jwt, GitHubEmulator, TokenFormat, JWT_BAD_EXP, JWT_BAD_IAT,
    JWT_EXP_TOO_FAR, JWT_UNDECODABLE,
};
use tooljet_gitsync_testkit::httpgit::{Access, HttpGitServer};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_jwt_exchanged_for_an_installation_token_that_git_accepts() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("acme/apps").unwrap();
    let other = srv.create_repo("acme/other").unwrap();
    srv.commit_files("acme/apps", "main", &[("a", b"a")], "a")
        .unwrap();
    srv.commit_files("acme/other", "main", &[("a", b"a")], "a")
        .unwrap();
    let gh = GitHubEmulator::start(&srv).unwrap();
    let inst = gh.install("acme", &["acme/apps"], Access::ReadWrite);
    let c = client(&srv.ca_pem());
    let api = gh.api_url();
    let jwt = app_jwt(&gh.private_key_pem(), &gh.app_id().to_string()).unwrap();
    let bearer = format!("Bearer {jwt}");

    let (s, _, v) = call(
        &c,
        "GET",
        &format!("{api}/repos/acme/apps/installation"),
        Some(("authorization", &bearer)),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], json!(inst));
    let (s, _, v) = call(
        &c,
        "GET",
        &format!("{api}/repos/acme/other/installation"),
        Some(("authorization", &bearer)),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["message"], "Not Found");

    let (s, _, v) = call(
        &c,
        "POST",
        &format!("{api}/app/installations/{inst}/access_tokens"),
        Some(("authorization", &bearer)),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ghs_"), "{token}");
    assert_eq!(v["repository_selection"], "selected");
    assert_eq!(v["permissions"]["contents"], "write");
    let exp: jiff::Timestamp = v["expires_at"].as_str().unwrap().parse().unwrap();
    let left = exp.as_second() - now();
    assert!((3590..=3600).contains(&left), "{left}");

    // The token is the git password of x-access-token, for the installed repository only.
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ca = srv.ca_file();
    ok(&git(
        t,
        &ca,
        "x-access-token",
        &token,
        &["clone", "-q", &url, "c"],
    ));
    let cdir = t.join("c");
    ok(&git(
        &cdir,
        &ca,
        "x-access-token",
        &token,
        &["commit", "-q", "--allow-empty", "-m", "x"],
    ));
    ok(&git(
        &cdir,
        &ca,
        "x-access-token",
        &token,
        &["push", "-q", "origin", "HEAD:main"],
    ));
    let o = git(t, &ca, "x-access-token", &token, &["ls-remote", &other]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = git(t, &ca, "someone", &token, &["ls-remote", &url]);
    assert!(
        !o.status.success(),
        "installation tokens need x-access-token"
    );

    // iss may be the number, the numeric string or the client id.
    for iss in [json!(gh.app_id()), json!(gh.client_id())] {
        let jwt = sign_jwt(
            &gh.private_key_pem(),
            &json!({"iat": now() - 60, "exp": now() + 300, "iss": iss}),
        )
        .unwrap();
        let (s, _, v) = call(
            &c,
            "POST",
            &format!("{api}/app/installations/{inst}/access_tokens"),
            Some(("authorization", &format!("Bearer {jwt}"))),
            None,
        )
        .await;
        assert_eq!(s, 201, "{iss}: {v}");
    }
    // GitHub Enterprise's /api/v3 prefix.
    let (s, _, _) = call(
        &c,
        "GET",
        &format!("{api}/api/v3/app"),
        Some(("authorization", &bearer)),
        None,
    )
    .await;
    assert_eq!(s, 200);
    // The JWT and the token never appear in a URL.
    for r in gh.requests().iter() {
        assert!(!r.path.contains(&token) && !r.query.contains(&token));
    }
    for r in srv.requests() {
        assert!(!r.path.contains(&token) && !r.query.contains(&token));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jwts_unknown_installations_and_uninstalled_repos_are_refused() {
    let srv = HttpGitServer::start().unwrap();
    srv.create_repo("acme/apps").unwrap();
    let gh = GitHubEmulator::start(&srv).unwrap();
    let inst = gh.install("acme", &["acme/apps"], Access::ReadWrite);
    let c = client(&srv.ca_pem());
    let key = gh.private_key_pem();
    let iss = gh.app_id();
    let n = now();
    let wrong_key = generate_rsa_key_pem().unwrap();
    let cases = [
        (
            sign_jwt(&key, &json!({"iat": n - 700, "exp": n - 100, "iss": iss})).unwrap(),
            JWT_BAD_EXP,
        ),
        (
            sign_jwt(&key, &json!({"iat": n - 60, "iss": iss})).unwrap(),
            JWT_BAD_EXP,
        ),
        (
            sign_jwt(&key, &json!({"iat": n - 60, "exp": n + 3600, "iss": iss})).unwrap(),
            JWT_EXP_TOO_FAR,
        ),
        (
            sign_jwt(&key, &json!({"iat": n + 300, "exp": n + 500, "iss": iss})).unwrap(),
            JWT_BAD_IAT,
        ),
        (
            sign_jwt(
                &wrong_key,
                &json!({"iat": n - 60, "exp": n + 300, "iss": iss}),
            )
            .unwrap(),
            JWT_UNDECODABLE,
        ),
        (
            sign_jwt(&key, &json!({"iat": n - 60, "exp": n + 300, "iss": 1})).unwrap(),
            JWT_UNDECODABLE,
        ),
        ("not.a.jwt".to_string(), JWT_UNDECODABLE),
    ];
    for (jwt, message) in cases {
        let (s, _, v) = call(
            &c,
            "POST",
            &format!("{}/app/installations/{inst}/access_tokens", gh.api_url()),
            Some(("authorization", &format!("Bearer {jwt}"))),
            None,
        )
        .await;
        assert_eq!(s, 401, "{v}");
        assert_eq!(v["message"], message);
        assert!(v["documentation_url"]
            .as_str()
            .unwrap()
            .starts_with("https://docs.github.com/"));
    }
    let jwt = app_jwt(&key, &iss.to_string()).unwrap();
    let (s, _, v) = call(
        &c,
        "POST",
        &format!(
            "{}/app/installations/{}/access_tokens",
            gh.api_url(),
            inst + 1
        ),
        Some(("authorization", &format!("Bearer {jwt}"))),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["message"], "Not Found");
    let (s, _, v) = call(
        &c,
        "GET",
        &format!("{}/repos/acme/elsewhere/installation", gh.api_url()),
        Some(("authorization", &format!("Bearer {jwt}"))),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["message"], "Not Found");
    assert!(gh.issued_tokens().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_installations_short_lived_and_revoked_tokens() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("acme/apps").unwrap();
    srv.commit_files("acme/apps", "main", &[("a", b"a")], "a")
        .unwrap();
    let gh = GitHubEmulator::start(&srv).unwrap();
    let ro = gh.install("acme", &["acme/apps"], Access::ReadOnly);
    let c = client(&srv.ca_pem());
    let jwt = app_jwt(&gh.private_key_pem(), &gh.app_id().to_string()).unwrap();
    gh.set_token_lifetime(Duration::from_secs(3));
    let (s, _, v) = call(
        &c,
        "POST",
        &format!("{}/app/installations/{ro}/access_tokens", gh.api_url()),
        Some(("authorization", &format!("Bearer {jwt}"))),
        None,
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(v["permissions"]["contents"], "read");
    let token = v["token"].as_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ca = srv.ca_file();
    ok(&git(
        t,
        &ca,
        "x-access-token",
        &token,
        &["clone", "-q", &url, "c"],
    ));
    let cdir = t.join("c");
    ok(&git(
        &cdir,
        &ca,
        "x-access-token",
        &token,
        &["commit", "-q", "--allow-empty", "-m", "x"],
    ));
    let o = git(
        &cdir,
        &ca,
        "x-access-token",
        &token,
        &["push", "origin", "HEAD:main"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("403"));
    // After its lifetime the token is refused: the operator must refresh.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let o = git(t, &ca, "x-access-token", &token, &["ls-remote", &url]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Authentication failed"));

    // Revocation and forced expiry.
    gh.set_token_lifetime(Duration::from_secs(3600));
    let mut fresh = Vec::new();
    for _ in 0..2 {
        let (_, _, v) = call(
            &c,
            "POST",
            &format!("{}/app/installations/{ro}/access_tokens", gh.api_url()),
            Some(("authorization", &format!("Bearer {jwt}"))),
            None,
        )
        .await;
        fresh.push(v["token"].as_str().unwrap().to_string());
    }
    ok(&git(
        t,
        &ca,
        "x-access-token",
        &fresh[0],
        &["ls-remote", &url],
    ));
    gh.expire_tokens();
    for tok in &fresh {
        assert!(!git(t, &ca, "x-access-token", tok, &["ls-remote", &url])
            .status
            .success());
    }
    assert_eq!(gh.issued_tokens().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_create_duplicate_list_update_merge() {
    let srv = HttpGitServer::start().unwrap();
    srv.create_repo("acme/apps").unwrap();
    let base0 = srv
        .commit_files("acme/apps", "main", &[("a", b"a")], "a")
        .unwrap();
    srv.create_branch("acme/apps", "tooljet/prod-1", "main")
        .unwrap();
    srv.commit_files(
        "acme/apps",
        "tooljet/prod-1",
        &[("apps/x.json", b"{}")],
        "x",
    )
    .unwrap();
    let gh = GitHubEmulator::start(&srv).unwrap();
    srv.add_token("ghp_pat123", Access::ReadWrite);
    let c = client(&srv.ca_pem());
    let api = gh.api_url();
    let pulls = format!("{api}/repos/acme/apps/pulls");
    let tok = Some(("authorization", "Bearer ghp_pat123"));

    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        None,
        Some(json!({"title": "t", "head": "tooljet/prod-1", "base": "main"})),
    )
    .await;
    assert_eq!(
        (s, v["message"].as_str()),
        (401, Some("Requires authentication"))
    );
    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        Some(("authorization", "token nope")),
        Some(json!({"title": "t", "head": "tooljet/prod-1", "base": "main"})),
    )
    .await;
    assert_eq!((s, v["message"].as_str()), (401, Some("Bad credentials")));

    let (s, h, v) = call(&c, "POST", &pulls, tok, Some(json!({"title": "Promote x", "head": "acme:tooljet/prod-1", "base": "main", "body": "b"}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["number"], 1);
    assert_eq!(v["state"], "open");
    assert_eq!(v["merged"], false);
    assert_eq!(v["head"]["ref"], "tooljet/prod-1");
    assert_eq!(v["base"]["ref"], "main");
    assert_eq!(
        v["html_url"],
        format!("{}/acme/apps/pull/1", srv.base_url())
    );
    assert!(h.get("location").is_some());

    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        Some(("authorization", "token ghp_pat123")),
        Some(json!({"title": "again", "head": "tooljet/prod-1", "base": "main"})),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        v,
        json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom",
            "message": "A pull request already exists for acme:tooljet/prod-1."}],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request", "status": "422"})
    );
    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        tok,
        Some(json!({"title": "t", "head": "nope", "base": "main"})),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(v["errors"][0]["field"], "head");
    srv.create_branch("acme/apps", "same", "main").unwrap();
    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        tok,
        Some(json!({"title": "t", "head": "same", "base": "main"})),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        v["errors"][0]["message"],
        "No commits between main and same"
    );

    // Pagination: 7 open PRs, 3 per page.
    for i in 2..=7 {
        let b = format!("tooljet/prod-{i}");
        srv.create_branch("acme/apps", &b, "main").unwrap();
        srv.commit_files("acme/apps", &b, &[("f", format!("{i}").as_bytes())], "f")
            .unwrap();
        let (s, _, _) = call(
            &c,
            "POST",
            &pulls,
            tok,
            Some(json!({"title": format!("t{i}"), "head": b, "base": "main"})),
        )
        .await;
        assert_eq!(s, 201);
    }
    let (s, h, v) = call(
        &c,
        "GET",
        &format!("{pulls}?state=open&per_page=3"),
        tok,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let nums: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(nums, vec![7, 6, 5]);
    let l = link(&h);
    assert!(
        l.contains(&format!(
            "<{pulls}?state=open&page=2&per_page=3>; rel=\"next\""
        )),
        "{l}"
    );
    assert!(l.contains("page=3&per_page=3>; rel=\"last\""), "{l}");
    let (_, h, v) = call(
        &c,
        "GET",
        &format!("{pulls}?state=open&per_page=3&page=3"),
        tok,
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let l = link(&h);
    assert!(
        l.contains("rel=\"prev\"") && l.contains("rel=\"first\"") && !l.contains("rel=\"next\""),
        "{l}"
    );
    let (_, _, v) = call(
        &c,
        "GET",
        &format!("{pulls}?head=acme:tooljet/prod-1&state=all"),
        tok,
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["number"], 1);
    assert!(v[0].get("merged").is_none(), "the list shows simple PRs");

    // Update, close, reopen.
    let one = format!("{pulls}/1");
    let (s, _, v) = call(
        &c,
        "PATCH",
        &one,
        tok,
        Some(json!({"title": "Promote x (2)", "body": "new"})),
    )
    .await;
    assert_eq!((s, v["title"].as_str()), (200, Some("Promote x (2)")));
    let (_, _, v) = call(
        &c,
        "PATCH",
        &format!("{pulls}/2"),
        tok,
        Some(json!({"state": "closed"})),
    )
    .await;
    assert_eq!(v["state"], "closed");
    let (_, _, v) = call(&c, "GET", &format!("{pulls}?state=closed"), tok, None).await;
    assert_eq!(v.as_array().unwrap().len(), 1);

    // Merge with a stale sha: 409; then for real.
    let (s, _, v) = call(
        &c,
        "PUT",
        &format!("{one}/merge"),
        tok,
        Some(json!({"sha": base0})),
    )
    .await;
    assert_eq!(
        (s, v["message"].as_str()),
        (
            409,
            Some("Head branch was modified. Review and try the merge again.")
        )
    );
    let (s, _, _) = call(&c, "GET", &format!("{one}/merge"), tok, None).await;
    assert_eq!(s, 404);
    let (s, _, v) = call(
        &c,
        "PUT",
        &format!("{one}/merge"),
        tok,
        Some(json!({"merge_method": "merge"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["merged"], true);
    assert_eq!(v["message"], "Pull Request successfully merged");
    let sha = v["sha"].as_str().unwrap().to_string();
    assert_eq!(
        srv.git("acme/apps", &["rev-parse", "main"]).unwrap().trim(),
        sha
    );
    let parents = srv
        .git("acme/apps", &["rev-list", "--parents", "-n1", "main"])
        .unwrap();
    assert_eq!(
        parents.split_whitespace().count(),
        3,
        "a merge commit: {parents}"
    );
    assert_eq!(
        srv.git("acme/apps", &["show", "main:apps/x.json"]).unwrap(),
        "{}"
    );
    let (_, _, v) = call(&c, "GET", &one, tok, None).await;
    assert_eq!(
        (v["state"].as_str(), v["merged"].as_bool()),
        (Some("closed"), Some(true))
    );
    assert!(v["merged_at"].is_string());
    let (s, _, _) = call(&c, "GET", &format!("{one}/merge"), tok, None).await;
    assert_eq!(s, 204);
    let (s, _, v) = call(&c, "PUT", &format!("{one}/merge"), tok, None).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (405, Some("Pull Request is not mergeable"))
    );
    let (s, _, _) = call(&c, "PATCH", &one, tok, Some(json!({"state": "open"}))).await;
    assert_eq!(s, 422);
    // After the merge the same head may get a new PR.
    srv.commit_files(
        "acme/apps",
        "tooljet/prod-1",
        &[("apps/y.json", b"{}")],
        "y",
    )
    .unwrap();
    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        tok,
        Some(json!({"title": "next", "head": "tooljet/prod-1", "base": "main"})),
    )
    .await;
    assert_eq!((s, v["number"].as_u64()), (201, Some(8)));

    // Test helpers.
    gh.close("acme/apps", 8).unwrap();
    let merged = gh.merge("acme/apps", 3).unwrap();
    assert_eq!(
        srv.git("acme/apps", &["rev-parse", "main"]).unwrap().trim(),
        merged.merge_commit_sha.unwrap()
    );
    assert_eq!(gh.prs("acme/apps").len(), 8);
    assert!(gh
        .requests()
        .iter()
        .all(|r| !r.query.contains("ghp_pat123")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_may_narrow_repositories_and_permissions() {
    let srv = HttpGitServer::start().unwrap();
    let apps = srv.create_repo("acme/apps").unwrap();
    let other = srv.create_repo("acme/other").unwrap();
    for r in ["acme/apps", "acme/other"] {
        srv.commit_files(r, "main", &[("a", b"a")], "a").unwrap();
    }
    let gh = GitHubEmulator::start(&srv).unwrap();
    let rw = gh.install("acme", &["acme/apps", "acme/other"], Access::ReadWrite);
    let ro = gh.install("beta", &["acme/apps"], Access::ReadOnly);
    let c = client(&srv.ca_pem());
    let jwt = app_jwt(&gh.private_key_pem(), &gh.client_id()).unwrap();
    let auth = format!("Bearer {jwt}");
    let tokens = |id: u64| format!("{}/app/installations/{id}/access_tokens", gh.api_url());

    let (s, _, v) = call(
        &c,
        "POST",
        &tokens(rw),
        Some(("authorization", &auth)),
        Some(json!({"repositories": ["apps"], "permissions": {"contents": "read"}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["permissions"]["contents"], "read");
    assert_eq!(v["repositories"][0]["full_name"], "acme/apps");
    let token = v["token"].as_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let ca = srv.ca_file();
    ok(&git(
        tmp.path(),
        &ca,
        "x-access-token",
        &token,
        &["ls-remote", &apps],
    ));
    assert!(!git(
        tmp.path(),
        &ca,
        "x-access-token",
        &token,
        &["ls-remote", &other]
    )
    .status
    .success());

    let (s, _, v) = call(
        &c,
        "POST",
        &tokens(ro),
        Some(("authorization", &auth)),
        Some(json!({"repositories": ["other"]})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let (s, _, _) = call(
        &c,
        "POST",
        &tokens(ro),
        Some(("authorization", &auth)),
        Some(json!({"permissions": {"contents": "write"}})),
    )
    .await;
    assert_eq!(s, 422);

    // The stateless token format (ghs_<APPID>_<JWT>) works as a git password too.
    gh.set_token_format(TokenFormat::Stateless);
    let (s, _, v) = call(
        &c,
        "POST",
        &tokens(ro),
        Some(("authorization", &auth)),
        None,
    )
    .await;
    assert_eq!(s, 201);
    let long = v["token"].as_str().unwrap().to_string();
    assert!(
        long.starts_with(&format!("ghs_{}_", gh.app_id())) && long.len() > 100,
        "{long}"
    );
    ok(&git(
        tmp.path(),
        &ca,
        "x-access-token",
        &long,
        &["ls-remote", &apps],
    ));

    gh.suspend(ro, true);
    let (s, _, _) = call(
        &c,
        "POST",
        &tokens(ro),
        Some(("authorization", &auth)),
        None,
    )
    .await;
    assert_eq!(s, 403);

    // Uninstalling revokes the installation's tokens.
    gh.uninstall(rw);
    assert!(!git(
        tmp.path(),
        &ca,
        "x-access-token",
        &token,
        &["ls-remote", &apps]
    )
    .status
    .success());
    let (s, _, _) = call(
        &c,
        "POST",
        &tokens(rw),
        Some(("authorization", &auth)),
        None,
    )
    .await;
    assert_eq!(s, 404);
}
