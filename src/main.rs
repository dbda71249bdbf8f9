//! The `portcullis` command line: parses arguments and calls into the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "An authentication gateway")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the gateway.
    Run {
        /// Config file.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
    },
    /// Validate the config: exit 0, or print every error as FILE:LINE:COL: field.path: message and exit 1.
    Check {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
    },
    /// Write a development CA, a server certificate (localhost, 127.0.0.1) and a client certificate.
    DevPki {
        /// Output folder.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    portcullis::install_crypto_provider();
    match cli.cmd {
        Cmd::Check { config } => {
            match portcullis::config::load_mode(&config, None, portcullis::config::Mode::Check) {
                Ok(_) => {
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run { config } => {
            let snap = match portcullis::config::load(&config, None) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            portcullis::telemetry::init(&snap.logging);
            match run(config, snap) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("portcullis: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::DevPki { out } => match portcullis::devpki::generate(&out) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
                println!("development only: these keys are unencrypted and the CA is not trusted anywhere");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(config: PathBuf, snap: portcullis::config::Snapshot) -> anyhow::Result<()> {
    let workers = snap.workers;
    let rt = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .context("cannot start the runtime")?;
    rt.block_on(portcullis::server::run(&config, snap))
}
