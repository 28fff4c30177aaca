//! The Gitea pulls emulator on real branches of the HTTPS git server.

mod common;

use common::{call, client, link};
use serde_json::json;
use tooljet_gitsync_testkit::forge::gitea::GiteaEmulator;
use tooljet_gitsync_testkit::httpgit::{Access, HttpGitServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_create_duplicate_list_edit_merge() {
    let srv = HttpGitServer::start().unwrap();
    srv.create_repo("org/apps").unwrap();
    srv.commit_files("org/apps", "main", &[("a", b"a")], "a")
        .unwrap();
    for i in 1..=4 {
        let b = format!("tooljet/prod-{i}");
        srv.create_branch("org/apps", &b, "main").unwrap();
        srv.commit_files(
            "org/apps",
            &b,
            &[(&format!("apps/{i}.json") as &str, b"{}")],
            "x",
        )
        .unwrap();
    }
    let gt = GiteaEmulator::start(&srv).unwrap();
    srv.add_token("gitea-rw", Access::ReadWrite);
    let c = client(&srv.ca_pem());
    let pulls = format!("{}/repos/org/apps/pulls", gt.api_url());
    let tok = Some(("authorization", "token gitea-rw"));

    let (s, _, _) = call(&c, "GET", &pulls, None, None).await;
    assert_eq!(s, 401);
    let (s, _, _) = call(
        &c,
        "GET",
        &pulls,
        Some(("authorization", "token wrong")),
        None,
    )
    .await;
    assert_eq!(s, 401);

    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        tok,
        Some(json!({"head": "tooljet/prod-1", "base": "main", "title": "Promote 1", "body": "b"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["number"], 1);
    assert_eq!(v["state"], "open");
    assert_eq!(v["merged"], false);
    assert_eq!(v["head"]["ref"], "tooljet/prod-1");
    assert_eq!(v["html_url"], format!("{}/org/apps/pulls/1", gt.url()));

    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        Some(("authorization", "Bearer gitea-rw")),
        Some(json!({"head": "tooljet/prod-1", "base": "main", "title": "again"})),
    )
    .await;
    assert_eq!(s, 409);
    let m = v["message"].as_str().unwrap();
    assert!(
        m.starts_with("pull request already exists for these targets [id: "),
        "{m}"
    );
    assert!(
        m.contains("issue_id: 1,")
            && m.ends_with("head_branch: tooljet/prod-1, base_branch: main]"),
        "{m}"
    );
    assert_eq!(v["url"], format!("{}/api/swagger", gt.url()));
    let (s, _, _) = call(
        &c,
        "POST",
        &pulls,
        tok,
        Some(json!({"head": "nope", "base": "main", "title": "t"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        tok,
        Some(json!({"head": "main", "base": "main", "title": "t"})),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        v["message"],
        "Invalid PullRequest: There are no changes between the head and the base"
    );

    for i in 2..=4 {
        let (s, _, _) = call(&c, "POST", &pulls, tok, Some(json!({"head": format!("tooljet/prod-{i}"), "base": "main", "title": format!("t{i}")}))).await;
        assert_eq!(s, 201);
    }
    let (s, h, v) = call(&c, "GET", &format!("{pulls}?state=open&limit=3"), tok, None).await;
    assert_eq!(s, 200);
    let nums: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(nums, vec![4, 3, 2]);
    assert_eq!(h.get("x-total-count").unwrap(), "4");
    let l = link(&h);
    assert!(
        l.starts_with(&format!(
            "<{pulls}?state=open&page=2&limit=3>; rel=\"next\""
        )),
        "{l}"
    );
    let (_, h, v) = call(
        &c,
        "GET",
        &format!("{pulls}?state=open&limit=3&page=2"),
        tok,
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let l = link(&h);
    assert!(
        l.contains("rel=\"prev\"") && !l.contains("rel=\"next\""),
        "{l}"
    );

    // Edit answers 201.
    let one = format!("{pulls}/1");
    let (s, _, v) = call(
        &c,
        "PATCH",
        &one,
        tok,
        Some(json!({"title": "Promote 1 (2)"})),
    )
    .await;
    assert_eq!((s, v["title"].as_str()), (201, Some("Promote 1 (2)")));
    let (s, _, v) = call(
        &c,
        "PATCH",
        &format!("{pulls}/2"),
        tok,
        Some(json!({"state": "closed"})),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (201, Some("closed")));
    let (_, _, v) = call(&c, "GET", &format!("{pulls}?state=closed"), tok, None).await;
    assert_eq!(v.as_array().unwrap().len(), 1);

    // Merge for real.
    let (s, _, _) = call(&c, "GET", &format!("{one}/merge"), tok, None).await;
    assert_eq!(s, 404);
    let (s, _, _) = call(
        &c,
        "POST",
        &format!("{one}/merge"),
        tok,
        Some(json!({"Do": "merge", "head_commit_id": "0000"})),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _, v) = call(
        &c,
        "POST",
        &format!("{one}/merge"),
        tok,
        Some(json!({"Do": "merge", "MergeTitleField": "Merge 1"})),
    )
    .await;
    assert_eq!((s, v), (200, serde_json::Value::Null));
    let (_, _, v) = call(&c, "GET", &one, tok, None).await;
    assert_eq!(
        (v["state"].as_str(), v["merged"].as_bool()),
        (Some("closed"), Some(true))
    );
    let sha = v["merge_commit_sha"].as_str().unwrap().to_string();
    assert_eq!(
        srv.git("org/apps", &["rev-parse", "main"]).unwrap().trim(),
        sha
    );
    assert_eq!(
        srv.git("org/apps", &["log", "-1", "--format=%s", "main"])
            .unwrap()
            .trim(),
        "Merge 1"
    );
    assert_eq!(
        srv.git("org/apps", &["show", "main:apps/1.json"]).unwrap(),
        "{}"
    );
    let (s, _, _) = call(&c, "GET", &format!("{one}/merge"), tok, None).await;
    assert_eq!(s, 204);
    let (s, _, _) = call(
        &c,
        "POST",
        &format!("{one}/merge"),
        tok,
        Some(json!({"Do": "merge"})),
    )
    .await;
    assert_eq!(s, 405);
    let (s, _, v) = call(&c, "PATCH", &one, tok, Some(json!({"state": "open"}))).await;
    assert_eq!(s, 412);
    assert_eq!(
        v["message"],
        "cannot change state of this pull request, it was already merged"
    );

    // Helpers.
    gt.close("org/apps", 3).unwrap();
    let m = gt.merge("org/apps", 4).unwrap();
    assert_eq!(
        srv.git("org/apps", &["rev-parse", "main"]).unwrap().trim(),
        m.merge_commit_sha.unwrap()
    );
    assert_eq!(gt.prs("org/apps").len(), 4);
    assert!(gt.requests().iter().all(|r| !r.query.contains("gitea-rw")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_token_may_list_but_not_create_or_edit() {
    let srv = HttpGitServer::start().unwrap();
    srv.create_repo("org/apps").unwrap();
    srv.commit_files("org/apps", "main", &[("a", b"a")], "a")
        .unwrap();
    srv.create_branch("org/apps", "tooljet/prod", "main")
        .unwrap();
    srv.commit_files("org/apps", "tooljet/prod", &[("b", b"b")], "b")
        .unwrap();
    let gt = GiteaEmulator::start(&srv).unwrap();
    srv.add_token("gitea-rw", Access::ReadWrite);
    srv.add_token("gitea-ro", Access::ReadOnly);
    let c = client(&srv.ca_pem());
    let pulls = format!("{}/repos/org/apps/pulls", gt.api_url());
    let ro = Some(("authorization", "token gitea-ro"));
    let scope = "token does not have at least one of required scope(s): [write:repository]";

    let pr = json!({"head": "tooljet/prod", "base": "main", "title": "t", "body": "b"});
    let (s, _, v) = call(&c, "POST", &pulls, ro, Some(pr.clone())).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["message"], scope);
    assert!(gt.prs("org/apps").is_empty());

    let (s, _, v) = call(
        &c,
        "POST",
        &pulls,
        Some(("authorization", "token gitea-rw")),
        Some(pr),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, _, v) = call(&c, "GET", &pulls, ro, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let (s, _, v) = call(
        &c,
        "PATCH",
        &format!("{pulls}/1"),
        ro,
        Some(json!({"title": "changed"})),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["message"], scope);
    assert_eq!(gt.prs("org/apps")[0].title, "t");
}
