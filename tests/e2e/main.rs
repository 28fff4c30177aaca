//! End-to-end tests against real parts started here: etcd + kube-apiserver 1.20.2, OpenSSH
//! sshd with git-shell, and the operator's controllers running in this process.
//!
//! A custom harness (libtest-mimic) so the expensive apiserver is started once, torn down at
//! the end, and never outlives the run.

mod crash;
mod gitsyncconfig;
mod hostile;
mod https;
mod pull;
mod push;
mod race;
mod rbac;
mod runtime;
mod sets;
mod signing;
mod support;
mod values;
mod webhook;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = libtest_mimic::Arguments::from_args();
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
    let mut trials = Vec::new();
    trials.extend(gitsyncconfig::trials());
    trials.extend(runtime::trials());
    trials.extend(push::trials());
    trials.extend(pull::trials());
    trials.extend(rbac::trials());
    trials.extend(crash::trials());
    trials.extend(hostile::trials());
    trials.extend(race::trials());
    trials.extend(sets::trials());
    trials.extend(values::trials());
    trials.extend(webhook::trials());
    trials.extend(signing::trials());
    trials.extend(https::trials());
    // Listing or filtering to nothing needs no cluster.
    if args.list || trials.iter().all(|t| !support::selected(&args, t.name())) {
        return libtest_mimic::run(&args, trials).exit_code();
    }
    support::capture_logs();
    let env = match support::Env::start(&rt) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("cannot start the test environment: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    support::install(env, rt.handle().clone());
    let conclusion = libtest_mimic::run(&args, trials);
    support::teardown(&rt);
    conclusion.exit_code()
}
