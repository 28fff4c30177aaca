//! A test binary of its own (it inspects every process of the machine): dropping the server
//! in the middle of a clone leaves no CGI process behind — neither http-backend (our
//! descendant) nor the `git upload-pack` it runs (which would be reparented away from us).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tooljet_gitsync_testkit::httpgit::{git_https_env, Access, HttpGitServer};
use tooljet_gitsync_testkit::proc::descendants;

/// Processes anywhere whose working directory is under `root` (upload-pack runs in the
/// repository).
fn processes_in(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
            if cwd.starts_with(root) {
                out.push((pid, cwd));
            }
        }
    }
    out
}

fn random(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x: u64 = 0x2545F4914F6CDD1D;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

#[test]
fn dropping_the_server_mid_clone_leaves_no_processes() {
    let srv = HttpGitServer::start().unwrap();
    let url = srv.create_repo("r").unwrap();
    let blob = random(48 << 20);
    srv.commit_files("r", "main", &[("big.bin", &blob)], "big")
        .unwrap();
    srv.add_user("u", "p", Access::ReadWrite);
    // The repositories' directory (a deleted cwd reads as "<dir>/r.git (deleted)").
    let root = srv.repo_path("r").parent().unwrap().to_path_buf();
    let tmp = tempfile::tempdir().unwrap();

    // A finished clone first.
    let st = Command::new("git")
        .args(["clone", "-q", &url, "done"])
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .envs(git_https_env(&srv.ca_file(), "u", "p"))
        .status()
        .unwrap();
    assert!(st.success());
    assert!(processes_in(&root).is_empty());

    // Then one in flight, orphaned from the shell so that it is not our descendant; the
    // server is dropped as soon as its http-backend runs.
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("git clone -q '{url}' inflight >/dev/null 2>&1 &"))
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .envs(git_https_env(&srv.ca_file(), "u", "p"))
        .status()
        .unwrap();
    assert!(st.success());
    let start = Instant::now();
    let mut seen = false;
    while start.elapsed() < Duration::from_secs(20) {
        if descendants()
            .iter()
            .any(|(_, c)| c.starts_with("git-http-back"))
        {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(srv);
    // Killing and reaping take a moment.
    let start = Instant::now();
    loop {
        let left = descendants();
        let inside = processes_in(&root);
        if left.is_empty() && inside.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "left behind: {left:?} {inside:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if !seen {
        eprintln!("note: the clone finished before the server was dropped");
    }
}
