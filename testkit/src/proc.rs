//! Child processes that never outlive the test process.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Result;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16> {
    free_port_on(std::net::Ipv4Addr::LOCALHOST)
}

/// A free TCP port on `ip` (bound, then released).
pub fn free_port_on(ip: std::net::Ipv4Addr) -> Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0))?;
    Ok(l.local_addr()?.port())
}

/// Spawns `cmd` so that the kernel kills it if the spawning thread dies (PR_SET_PDEATHSIG);
/// spawn from a long-lived thread (the test harness's main thread).
pub fn spawn_guarded(cmd: &mut Command) -> Result<Child> {
    // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

/// SIGTERM, up to 5 s to exit, then SIGKILL; always reaps.
pub fn stop(mut child: Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// This process's living descendants (pid, command name) from /proc: what a teardown must
/// have stopped.
pub fn descendants() -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut parents: Vec<(u32, u32, String)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let comm = comm.split_once(" (").map(|x| x.1).unwrap_or_default();
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or_default();
            let ppid = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            if state != "Z" {
                parents.push((pid, ppid, comm.to_string()));
            }
        }
    }
    let mut out: Vec<(u32, String)> = Vec::new();
    let mut frontier = vec![me];
    while let Some(p) = frontier.pop() {
        for (pid, ppid, comm) in &parents {
            if *ppid == p && *pid != me && !out.iter().any(|o| o.0 == *pid) {
                out.push((*pid, comm.clone()));
                frontier.push(*pid);
            }
        }
    }
    out
}
