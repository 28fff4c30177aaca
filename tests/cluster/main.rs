//! The operator as users run it: its image (built without Docker by `hack/image.sh`) in a pod
//! of a real single-node Kubernetes 1.20.2 (kubelet + containerd + kube-proxy, `hack/node.sh`),
//! installed with `helm install` of `charts/tooljet-gitsync-operator`, talking to a real sshd
//! git server and the ToolJet emulator.
//!
//! Isolation: the binary re-executes itself under `unshare --mount --net --pid --fork
//! --mount-proc --propagation private` (with a bash as the namespace's pid 1, reaping orphans),
//! so every daemon, mount, veth, iptables rule and port of the cluster lives in namespaces made
//! for this run. When the run ends (or dies) the kernel ends every process in the pid
//! namespace; the harness also stops them itself and removes kubelet's cgroup subtree.
//!
//! Needs root, the packages and Kubernetes builds of `.ci/install-deps.sh`, and the image
//! (`hack/image.sh`); `hack/test.sh` does all of it.

mod node;
mod trials;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = libtest_mimic::Arguments::from_args();
    let list = trials::trials();
    if args.list || list.iter().all(|t| !trials::selected(&args, t.name())) {
        return libtest_mimic::run(&args, list).exit_code();
    }
    if !node::inside() {
        return node::reexec_in_namespaces();
    }
    // One cluster, one operator release: the trials run in order.
    args.test_threads = Some(1);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failed = match trials::Env::start(&rt) {
        Ok(env) => {
            trials::install(env, rt.handle().clone());
            let conclusion = libtest_mimic::run(&args, list);
            trials::teardown();
            conclusion.has_failed()
        }
        Err(e) => {
            eprintln!("cannot start the cluster: {e:#}");
            true
        }
    };
    drop(rt);
    let code = if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if let Err(e) = node::stop_everything(failed) {
        eprintln!("teardown: {e:#}");
        return ExitCode::FAILURE;
    }
    code
}
