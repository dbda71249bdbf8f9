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
    /// Dry-run one request through routing and the auth chain; exit 0 allowed, 1 denied.
    Explain {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        #[arg(long, default_value = "GET")]
        method: String,
        /// Full URL, e.g. https://api.example.com/api/users/7
        #[arg(long)]
        url: String,
        /// A request header, 'Name: value' (repeatable)
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The client address the request comes from.
        #[arg(long, default_value = "127.0.0.1")]
        peer: std::net::IpAddr,
        /// Act as if this PEM client certificate had been verified on the connection.
        #[arg(long)]
        client_cert: Option<PathBuf>,
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
        Cmd::Explain {
            config,
            method,
            url,
            headers,
            peer,
            client_cert,
        } => explain(config, method, url, headers, peer, client_cert),
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

fn explain(
    config: PathBuf,
    method: String,
    url: String,
    headers: Vec<String>,
    peer: std::net::IpAddr,
    client_cert: Option<PathBuf>,
) -> ExitCode {
    let snap = match portcullis::config::load_mode(&config, None, portcullis::config::Mode::Check) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let client_cert = match client_cert.map(std::fs::read).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: --client-cert: {e}");
            return ExitCode::from(1);
        }
    };
    let input = portcullis::explain::ExplainInput {
        method,
        url,
        headers,
        peer,
        client_cert,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(portcullis::explain::explain(&snap, &input)) {
        Ok((report, allowed)) => {
            print!("{report}");
            if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(1)
        }
    }
}
