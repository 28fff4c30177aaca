//! The GitLab merge requests emulator on real branches of the HTTPS git server.

mod common;

use common::{call, client, link};
use serde_json::json;
use tooljet_gitsync_testkit::forge::gitlab::GitLabEmulator;
use tooljet_gitsync_testkit::httpgit::{Access, HttpGitServer};

fn hdr(h: &reqwest::header::HeaderMap, k: &str) -> String {
    h.get(k)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no header {k}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_requests_create_duplicate_list_update_merge() {
    let srv = HttpGitServer::start().unwrap();
    srv.create_repo("grp/apps").unwrap();
    srv.commit_files("grp/apps", "main", &[("a", b"a")], "a")
        .unwrap();
    for i in 1..=5 {
        let b = format!("tooljet/prod-{i}");
        srv.create_branch("grp/apps", &b, "main").unwrap();
        srv.commit_files(
            "grp/apps",
            &b,
            &[(&format!("apps/{i}.json") as &str, b"{}")],
            "x",
        )
        .unwrap();
    }
    let gl = GitLabEmulator::start(&srv).unwrap();
    srv.add_token("glpat-rw", Access::ReadWrite);
    srv.add_token("glpat-ro", Access::ReadOnly);
    let c = client(&srv.ca_pem());
    let enc = format!("{}/projects/grp%2Fapps/merge_requests", gl.api_url());
    let pt = Some(("private-token", "glpat-rw"));
    let bearer = Some(("authorization", "Bearer glpat-rw"));

    let (s, _, v) = call(&c, "GET", &enc, None, None).await;
    assert_eq!((s, v), (401, json!({"message": "401 Unauthorized"})));
    let (s, _, v) = call(
        &c,
        "GET",
        &format!("{}/projects/grp%2Fnope/merge_requests", gl.api_url()),
        pt,
        None,
    )
    .await;
    assert_eq!((s, v), (404, json!({"message": "404 Project Not Found"})));

    let (s, _, v) = call(
        &c,
        "POST",
        &enc,
        pt,
        Some(json!({"source_branch": "tooljet/prod-1", "target_branch": "main"})),
    )
    .await;
    assert_eq!((s, v), (400, json!({"error": "title is missing"})));
    let (s, _, v) = call(
        &c,
        "POST",
        &enc,
        pt,
        Some(json!({"source_branch": "nope", "target_branch": "main", "title": "t"})),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"message": {"source_branch": ["does not exist"]}})
        )
    );
    let (s, _, _) = call(
        &c,
        "POST",
        &enc,
        Some(("private-token", "glpat-ro")),
        Some(json!({"source_branch": "tooljet/prod-1", "target_branch": "main", "title": "t"})),
    )
    .await;
    assert_eq!(s, 403);

    let (s, _, v) = call(&c, "POST", &enc, pt, Some(json!({"source_branch": "tooljet/prod-1", "target_branch": "main", "title": "Promote 1", "description": "d"}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["iid"], 1);
    assert_eq!(v["state"], "opened");
    assert_eq!(v["source_branch"], "tooljet/prod-1");
    assert_eq!(
        v["web_url"],
        format!("{}/grp/apps/-/merge_requests/1", srv.base_url())
    );
    let pid = v["project_id"].as_u64().unwrap();
    assert_eq!(pid, gl.project_id("grp/apps"));

    let (s, _, v) = call(
        &c,
        "POST",
        &enc,
        bearer,
        Some(json!({"source_branch": "tooljet/prod-1", "target_branch": "main", "title": "again"})),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            409,
            json!({"message": ["Another open merge request already exists for this source branch: !1"]})
        )
    );

    let (s, _, v) = call(
        &c,
        "GET",
        &format!("{}/projects/{pid}", gl.api_url()),
        pt,
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["path_with_namespace"], "grp/apps");
    assert_eq!(v["default_branch"], "main");
    assert_eq!(v["http_url_to_repo"], srv.url("grp/apps"));

    // The numeric id works like the path; form bodies too.
    let by_id = format!("{}/projects/{pid}/merge_requests", gl.api_url());
    for i in 2..=5 {
        let r = c
            .post(&by_id)
            .header("private-token", "glpat-rw")
            .form(&[
                ("source_branch", format!("tooljet/prod-{i}")),
                ("target_branch", "main".into()),
                ("title", format!("t{i}")),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let (s, h, v) = call(
        &c,
        "GET",
        &format!("{enc}?state=opened&per_page=2"),
        pt,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let iids: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["iid"].as_u64().unwrap())
        .collect();
    assert_eq!(iids, vec![5, 4]);
    assert_eq!(
        (
            hdr(&h, "x-total"),
            hdr(&h, "x-total-pages"),
            hdr(&h, "x-next-page"),
            hdr(&h, "x-prev-page")
        ),
        ("5".into(), "3".into(), "2".into(), String::new())
    );
    let l = link(&h);
    assert!(
        l.contains("rel=\"next\"")
            && l.contains("rel=\"first\"")
            && l.contains("rel=\"last\"")
            && !l.contains("rel=\"prev\""),
        "{l}"
    );
    assert!(
        l.contains(&format!(
            "<{enc}?state=opened&page=2&per_page=2>; rel=\"next\""
        )),
        "{l}"
    );
    let (_, h, v) = call(
        &c,
        "GET",
        &format!("{enc}?state=opened&per_page=2&page=3"),
        pt,
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(hdr(&h, "x-next-page"), "");
    let (_, _, v) = call(
        &c,
        "GET",
        &format!("{enc}?source_branch=tooljet/prod-3&target_branch=main"),
        pt,
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["iid"], 3);

    // Update and close/reopen.
    let one = format!("{enc}/1");
    let (s, _, v) = call(
        &c,
        "PUT",
        &one,
        pt,
        Some(json!({"title": "Promote 1 (2)", "description": "e"})),
    )
    .await;
    assert_eq!(
        (s, v["title"].as_str(), v["description"].as_str()),
        (200, Some("Promote 1 (2)"), Some("e"))
    );
    let (_, _, v) = call(
        &c,
        "PUT",
        &format!("{enc}/2"),
        pt,
        Some(json!({"state_event": "close"})),
    )
    .await;
    assert_eq!(v["state"], "closed");
    let (_, _, v) = call(&c, "GET", &format!("{enc}?state=closed"), pt, None).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, _, v) = call(
        &c,
        "PUT",
        &format!("{enc}/2"),
        pt,
        Some(json!({"state_event": "reopen"})),
    )
    .await;
    assert_eq!(v["state"], "opened");
    let (s, _, v) = call(&c, "GET", &format!("{enc}/99"), pt, None).await;
    assert_eq!((s, v), (404, json!({"message": "404 Not found"})));

    // Merge: stale sha 409, then for real; merged MRs cannot be merged again (405).
    let (s, _, v) = call(
        &c,
        "PUT",
        &format!("{one}/merge"),
        pt,
        Some(json!({"sha": "0000"})),
    )
    .await;
    assert_eq!(s, 409);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("SHA does not match HEAD of source branch: "));
    let (s, _, _) = call(
        &c,
        "PUT",
        &format!("{one}/merge"),
        Some(("private-token", "glpat-ro")),
        None,
    )
    .await;
    assert_eq!(s, 401);
    let (s, _, v) = call(
        &c,
        "PUT",
        &format!("{one}/merge"),
        pt,
        Some(json!({"should_remove_source_branch": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "merged");
    assert!(v["merged_at"].is_string());
    let sha = v["merge_commit_sha"].as_str().unwrap().to_string();
    assert_eq!(
        srv.git("grp/apps", &["rev-parse", "main"]).unwrap().trim(),
        sha
    );
    assert_eq!(
        srv.git("grp/apps", &["show", "main:apps/1.json"]).unwrap(),
        "{}"
    );
    assert!(
        srv.repos()
            .branch_sha("grp/apps", "tooljet/prod-1")
            .is_none(),
        "source branch removed"
    );
    let (_, _, v) = call(&c, "GET", &one, pt, None).await;
    assert_eq!(v["state"], "merged");
    let (s, _, v) = call(&c, "PUT", &format!("{one}/merge"), pt, None).await;
    assert_eq!((s, v), (405, json!({"message": "405 Method Not Allowed"})));
    let (_, _, v) = call(&c, "GET", &format!("{enc}?state=merged"), pt, None).await;
    assert_eq!(v.as_array().unwrap().len(), 1);

    // Helpers.
    gl.close("grp/apps", 3).unwrap();
    let m = gl.merge("grp/apps", 4).unwrap();
    assert_eq!(
        srv.git("grp/apps", &["rev-parse", "main"]).unwrap().trim(),
        m.merge_commit_sha.unwrap()
    );
    assert_eq!(gl.prs("grp/apps").len(), 5);
    assert!(gl.requests().iter().all(|r| !r.query.contains("glpat")));
    assert!(gl
        .requests()
        .iter()
        .any(|r| r.auth_scheme.as_deref() == Some("PRIVATE-TOKEN")));
}
