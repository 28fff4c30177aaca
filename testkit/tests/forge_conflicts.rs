//! Conflicting branches: each forge refuses the merge with its documented status and the
//! base branch stays where it was.

mod common;

use common::{call, client};
use serde_json::json;
use tooljet_gitsync_testkit::forge::{
    gitea::GiteaEmulator, github::GitHubEmulator, gitlab::GitLabEmulator,
};
use tooljet_gitsync_testkit::httpgit::{Access, HttpGitServer};

fn conflicting(srv: &HttpGitServer, repo: &str) -> String {
    srv.create_repo(repo).unwrap();
    srv.commit_files(repo, "main", &[("f", b"base\n")], "base")
        .unwrap();
    srv.create_branch(repo, "change", "main").unwrap();
    srv.commit_files(repo, "change", &[("f", b"theirs\n")], "theirs")
        .unwrap();
    srv.commit_files(repo, "main", &[("f", b"ours\n")], "ours")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_merges_are_refused_everywhere() {
    let srv = HttpGitServer::start().unwrap();
    srv.add_token("tok", Access::ReadWrite);
    let c = client(&srv.ca_pem());

    let main = conflicting(&srv, "o/gh");
    let gh = GitHubEmulator::start(&srv).unwrap();
    let pulls = format!("{}/repos/o/gh/pulls", gh.api_url());
    let auth = Some(("authorization", "token tok"));
    let (s, _, _) = call(
        &c,
        "POST",
        &pulls,
        auth,
        Some(json!({"title": "t", "head": "change", "base": "main"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _, v) = call(&c, "PUT", &format!("{pulls}/1/merge"), auth, None).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (405, Some("Pull Request is not mergeable"))
    );
    assert_eq!(
        srv.git("o/gh", &["rev-parse", "main"]).unwrap().trim(),
        main
    );

    let main = conflicting(&srv, "o/gl");
    let gl = GitLabEmulator::start(&srv).unwrap();
    let mrs = format!("{}/projects/o%2Fgl/merge_requests", gl.api_url());
    let auth = Some(("private-token", "tok"));
    let (s, _, _) = call(
        &c,
        "POST",
        &mrs,
        auth,
        Some(json!({"title": "t", "source_branch": "change", "target_branch": "main"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _, v) = call(&c, "PUT", &format!("{mrs}/1/merge"), auth, None).await;
    assert_eq!((s, v), (405, json!({"message": "405 Method Not Allowed"})));
    assert_eq!(
        srv.git("o/gl", &["rev-parse", "main"]).unwrap().trim(),
        main
    );

    let main = conflicting(&srv, "o/gt");
    let gt = GiteaEmulator::start(&srv).unwrap();
    let pulls = format!("{}/repos/o/gt/pulls", gt.api_url());
    let auth = Some(("authorization", "token tok"));
    let (s, _, _) = call(
        &c,
        "POST",
        &pulls,
        auth,
        Some(json!({"title": "t", "head": "change", "base": "main"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _, _) = call(
        &c,
        "POST",
        &format!("{pulls}/1/merge"),
        auth,
        Some(json!({"Do": "merge"})),
    )
    .await;
    assert_eq!(s, 409);
    assert_eq!(
        srv.git("o/gt", &["rev-parse", "main"]).unwrap().trim(),
        main
    );
    // Still open everywhere.
    assert!(
        gh.prs("o/gh")[0].is_open() && gl.prs("o/gl")[0].is_open() && gt.prs("o/gt")[0].is_open()
    );
}
