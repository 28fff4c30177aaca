//! A test binary of its own: after the server is dropped, no child of this process is left
//! (the CGI children and the server thread's runtime are gone).

use std::process::Command;

use tooljet_gitsync_testkit::httpgit::{git_https_env, Access, HttpGitServer};
use tooljet_gitsync_testkit::proc::descendants;

#[test]
fn dropping_the_server_leaves_no_children() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("r").unwrap();
    srv.commit_files("r", "main", &[("a", b"a")], "a").unwrap();
    srv.add_user("u", "p", Access::ReadWrite);
    let tmp = tempfile::tempdir().unwrap();
    // A clone through the server first, so CGI children have run.
    let mut clone = Command::new("git")
        .args(["clone", "-q", &url, "c"])
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .envs(git_https_env(&srv.ca_file(), "u", "p"))
        .spawn()
        .unwrap();
    let st = clone.wait().unwrap();
    assert!(st.success());
    drop(srv);
    let left = descendants();
    assert!(left.is_empty(), "left behind: {left:?}");
}
