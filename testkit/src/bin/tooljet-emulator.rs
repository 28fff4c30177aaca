//! Runs the ToolJet API emulator on a loopback port, for manual tests and demos.
//!
//! `tooljet-emulator --listen 127.0.0.1:0 --token T --email a@b.c --password P --seed-apps 3`
//! prints the bound address and serves until Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};

#[derive(Parser, Debug)]
#[command(about = "Emulates the ToolJet HTTP API used by tooljet-gitsync-operator")]
struct Args {
    /// Address to listen on (127.0.0.1 only; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// External API token (EXTERNAL_API_ACCESS_TOKEN); random when omitted.
    #[arg(long)]
    token: Option<String>,
    /// Login email of the emulated user.
    #[arg(long, default_value = "admin@example.com")]
    email: String,
    /// Login password of the emulated user; random when omitted.
    #[arg(long)]
    password: Option<String>,
    /// Community Edition: External API and GitSync routes answer 404.
    #[arg(long)]
    community: bool,
    /// Emulate a ToolJet without External API v2 (e.g. 3.16 LTS).
    #[arg(long)]
    no_ext_v2: bool,
    /// ToolJet version reported and written into exports.
    #[arg(long, default_value = "3.16.0")]
    version: String,
    /// Number of sample apps in the first workspace.
    #[arg(long, default_value_t = 0)]
    seed_apps: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let print_token = args.token.is_none();
    let print_password = args.password.is_none();
    let defaults = EmulatorConfig::default();
    let config = EmulatorConfig {
        listen: args.listen,
        token: args.token.or(defaults.token.clone()),
        email: Some(args.email),
        password: args.password.or(defaults.password.clone()),
        community: args.community,
        ext_v2: !args.no_ext_v2,
        version: args.version,
        seed_apps: args.seed_apps,
        ..defaults
    };
    let emulator = Emulator::start(config).await?;
    println!("listening on {}", emulator.url());
    for ws in emulator.workspaces() {
        println!("workspace {} slug={} name={:?}", ws.id, ws.slug, ws.name);
    }
    if print_token {
        // The generated token and password are printed so a human can use them locally.
        println!("token {}", emulator.token().unwrap_or_default());
    }
    if print_password {
        println!("password {}", emulator.password().unwrap_or_default());
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
