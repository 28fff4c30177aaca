//! The operator *binary* as a subprocess: its `/metrics`, its log and its memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tooljet_gitsync_testkit::proc::{free_port, spawn_guarded, stop};

/// The operator binary, as a subprocess.
pub struct Operator {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn operator_binary() -> Result<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tooljet-gitsync-operator"));
    if !bin.exists() {
        bail!("operator binary {} not built", bin.display());
    }
    Ok(bin)
}

impl Operator {
    /// Must be called on the main thread (the child dies with it).
    /// `tooljet-gitsync-operator run --concurrency <concurrency>` with `env` added, logging
    /// JSON to a file; `RUST_LOG` is passed on (default: info).
    pub fn start(
        kubeconfig: &Path,
        concurrency: &str,
        env: &[(String, String)],
    ) -> Result<Operator> {
        let port = free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("bench-operator-")
            .tempdir()?;
        let log = std::fs::File::create(dir.path().join("operator.log"))?;
        // `BENCH_WRAP="heaptrack -o /tmp/heap/op"` runs the operator under a profiler.
        let wrap: Vec<String> = std::env::var("BENCH_WRAP")
            .map(|w| w.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(operator_binary()?);
                c
            }
            None => Command::new(operator_binary()?),
        };
        let child = spawn_guarded(
            command
                .args(["run", "--concurrency", concurrency, "--log-format", "json"])
                .envs(env.iter().map(|(k, v)| (k, v)))
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--http-addr")
                .arg(format!("127.0.0.1:{port}"))
                .env("KUBECONFIG", kubeconfig)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log)),
        )?;
        Ok(Operator {
            child: Some(child),
            port,
            dir,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn rss(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    async fn get(&self, path: &str) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        Some(text.split_once("\r\n\r\n")?.1.to_string())
    }

    /// Every sample of `/metrics` (series -> value).
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
        let text = self.get("/metrics").await.unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// `/proc/<pid>/smaps_rollup` fields in KiB (Rss, Anonymous, Private_Dirty, ...).
    pub fn smaps_rollup(&self) -> BTreeMap<String, u64> {
        let text = self
            .pid()
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let kib = v.split_whitespace().next()?.parse().ok()?;
                Some((k.trim().to_string(), kib))
            })
            .collect()
    }

    /// Threads of the process (`/proc/<pid>/status`).
    pub fn threads(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("Threads:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_matches(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("operator.log"))
            .unwrap_or_default()
            .matches(needle)
            .count()
    }

    /// Stops the operator; with `BENCH_KEEP_LOG=<path>` its log is copied there first (it is
    /// otherwise removed with its temporary directory).
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c);
            if let Some(to) = std::env::var_os("BENCH_KEEP_LOG") {
                match std::fs::copy(self.dir.path().join("operator.log"), &to) {
                    Ok(_) => println!("operator log kept at {}", Path::new(&to).display()),
                    Err(e) => eprintln!("cannot keep the operator log: {e}"),
                }
            }
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Metric deltas worth reporting: counters and histogram counts that moved.
pub fn metric_deltas(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, _)| k.contains("_count{") || k.contains("_total"))
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| {
                let k = k.strip_prefix("tooljet_gitsync_").unwrap_or(k);
                format!("{k} +{d}")
            })
        })
        .collect()
}

/// Where the operator's time went: every histogram of `/metrics` (reconciles per kind, git
/// operations, ToolJet calls) as count, mean and total, the largest total first.
pub fn time_spent(m: &BTreeMap<String, f64>) -> Vec<String> {
    let mut rows: Vec<(f64, String)> = m
        .iter()
        .filter_map(|(k, count)| {
            let (name, labels) = k.split_once("_count{")?;
            let sum = m.get(&format!("{name}_sum{{{labels}"))?;
            let name = name.strip_prefix("tooljet_gitsync_").unwrap_or(name);
            (*count > 0.0).then(|| {
                (
                    *sum,
                    format!(
                        "{name}{{{labels} {count} x {:.0} ms = {sum:.1} s",
                        1000.0 * sum / count
                    ),
                )
            })
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.into_iter().map(|(_, r)| r).collect()
}

pub fn metric(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// `GET /api/v2/ext/.../<uuid>` -> `GET /api/v2/ext/.../:id`.
pub fn request_kind(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let parts: Vec<String> = path
        .split('/')
        .map(|p| {
            if p.len() >= 32 && p.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                ":id".to_string()
            } else {
                p.to_string()
            }
        })
        .collect();
    format!("{method} {}", parts.join("/"))
}
