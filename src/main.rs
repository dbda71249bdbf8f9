//! The `portcullis` command line: parses arguments and calls into the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "An authentication gateway")]
struct Cli {
    /// Admin API base URL (for keys, tokens).
    #[arg(long, global = true, default_value = "http://127.0.0.1:9901")]
    admin: String,
    /// Print the admin API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key; prints the secret once, on a line `key: sk_...`.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        subject: Option<String>,
        /// Space-separated scopes, e.g. "read:users write:users".
        #[arg(long)]
        scopes: Option<String>,
        /// live | test
        #[arg(long)]
        env: Option<String>,
        /// The key's own rate limit, e.g. 100/s.
        #[arg(long)]
        rate: Option<String>,
        /// Lifetime, e.g. 90d.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (metadata only).
    List,
    /// Show one key.
    Show { id: String },
    /// New secret for the same id; earlier secrets work until the grace ends.
    Rotate {
        id: String,
        #[arg(long, default_value = "24h")]
        grace: String,
    },
    /// Revoke a key now.
    Revoke { id: String },
    /// Import keys issued by another system: a JSON array or `<key> <subject>` lines.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum TokensCmd {
    /// Deny a JWT by its jti until the given time (when it would have expired).
    Revoke {
        jti: String,
        #[arg(long)]
        until: String,
    },
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
    /// Manage API keys through the admin API (token from PORTCULLIS_ADMIN_TOKEN).
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Manage the JWT denylist through the admin API.
    Tokens {
        #[command(subcommand)]
        cmd: TokensCmd,
    },
    /// Print a new random admin token and the `token_sha256:` line for the config.
    AdminToken,
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
    let (admin, json) = (cli.admin.clone(), cli.json);
    match cli.cmd {
        Cmd::Keys { cmd } => admin_cmd(&admin, json, Admin::Keys(cmd)),
        Cmd::Tokens { cmd } => admin_cmd(&admin, json, Admin::Tokens(cmd)),
        Cmd::AdminToken => {
            let token = portcullis::server::new_admin_token();
            let h = portcullis::keys::hash_key(&token);
            println!("token: {token}");
            println!("token_sha256: sha256:{}", portcullis::digest::hex_lower(&h));
            ExitCode::SUCCESS
        }
        Cmd::Check { config } => {
            match portcullis::config::load(&config, None, portcullis::config::Mode::Check) {
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
            let snap = match portcullis::config::load(&config, None, portcullis::config::Mode::Run)
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            portcullis::telemetry::subscriber::init(snap.logging.format, &snap.logging.level);
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
    let snap = match portcullis::config::load(&config, None, portcullis::config::Mode::Check) {
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
    let store = portcullis::explain::read_store(&snap);
    match rt.block_on(portcullis::explain::explain(&snap, &input)) {
        Ok((report, allowed)) => {
            println!("{store}");
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

enum Admin {
    Keys(KeysCmd),
    Tokens(TokensCmd),
}

fn admin_cmd(base: &str, json: bool, cmd: Admin) -> ExitCode {
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
    match rt.block_on(admin_cmd_async(base, json, cmd)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err((code, msg)) => {
            eprintln!("portcullis: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn admin_cmd_async(base: &str, json: bool, cmd: Admin) -> Result<String, (u8, String)> {
    use http::Method;
    use portcullis::admin_client::{call, fields, parse_import, table};
    use serde_json::{json as j, Value};
    let token = std::env::var("PORTCULLIS_ADMIN_TOKEN").ok();
    let token = token.as_deref();
    let (method, path, body): (Method, String, Option<Value>) = match &cmd {
        Admin::Keys(KeysCmd::Create {
            name,
            subject,
            scopes,
            env,
            rate,
            expires,
        }) => {
            let mut b = j!({"name": name});
            if let Some(s) = subject {
                b["subject"] = j!(s);
            }
            if let Some(s) = scopes {
                b["scopes"] = j!(s.split_whitespace().collect::<Vec<_>>());
            }
            if let Some(e) = env {
                b["env"] = j!(e);
            }
            if let Some(r) = rate {
                b["rate_limit"] = j!(r);
            }
            if let Some(x) = expires {
                b["expires_in"] = j!(x);
            }
            (Method::POST, "/admin/keys".into(), Some(b))
        }
        Admin::Keys(KeysCmd::List) => (Method::GET, "/admin/keys".into(), None),
        Admin::Keys(KeysCmd::Show { id }) => (Method::GET, format!("/admin/keys/{id}"), None),
        Admin::Keys(KeysCmd::Rotate { id, grace }) => (
            Method::POST,
            format!("/admin/keys/{id}/rotate"),
            Some(j!({"grace": grace})),
        ),
        Admin::Keys(KeysCmd::Revoke { id }) => (Method::DELETE, format!("/admin/keys/{id}"), None),
        Admin::Keys(KeysCmd::Import { file }) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| (1, format!("{}: {e}", file.display())))?;
            let items = parse_import(&text).map_err(|e| (1, format!("{}: {e}", file.display())))?;
            (
                Method::POST,
                "/admin/keys/import".into(),
                Some(Value::Array(items)),
            )
        }
        Admin::Tokens(TokensCmd::Revoke { jti, until }) => (
            Method::POST,
            "/admin/revocations".into(),
            Some(j!({"jti": jti, "until": until})),
        ),
    };
    let a = call(base, token, method, &path, body.as_ref())
        .await
        .map_err(|e| (2, e))?;
    if a.status >= 400 {
        let msg = a
            .body
            .get("error_description")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| a.body.to_string());
        let hint = if a.status == 401 {
            " (set PORTCULLIS_ADMIN_TOKEN)"
        } else {
            ""
        };
        return Err((
            if a.status >= 500 { 2 } else { 1 },
            format!("{} {msg}{hint}", a.status),
        ));
    }
    if json {
        return Ok(if a.body.is_null() {
            String::new()
        } else {
            format!("{}\n", a.body)
        });
    }
    let meta = [
        "id",
        "name",
        "prefix",
        "subject",
        "scopes",
        "env",
        "rate_limit",
        "status",
        "created_at",
        "expires_at",
        "last_used_at",
        "previous_valid_until",
        "revoked_at",
    ];
    Ok(match cmd {
        Admin::Keys(KeysCmd::Create { .. }) => {
            let mut out = fields(&a.body, &meta);
            out.push_str(&format!(
                "key: {}\n",
                a.body["key"].as_str().unwrap_or_default()
            ));
            out.push_str("(the key is shown once: store it now)\n");
            out
        }
        Admin::Keys(KeysCmd::List) => {
            let rows = a.body["keys"].as_array().cloned().unwrap_or_default();
            table(
                &rows,
                &[
                    ("id", "ID"),
                    ("name", "NAME"),
                    ("subject", "SUBJECT"),
                    ("env", "ENV"),
                    ("status", "STATUS"),
                    ("scopes", "SCOPES"),
                    ("last_used_at", "LAST USED"),
                ],
            )
        }
        Admin::Keys(KeysCmd::Show { .. }) => fields(&a.body, &meta),
        Admin::Keys(KeysCmd::Rotate { .. }) => format!(
            "id: {}\nprevious_valid_until: {}\nkey: {}\n(the key is shown once: store it now)\n",
            a.body["id"].as_str().unwrap_or_default(),
            a.body["previous_valid_until"].as_str().unwrap_or_default(),
            a.body["key"].as_str().unwrap_or_default()
        ),
        Admin::Keys(KeysCmd::Revoke { id }) => format!("revoked {id}\n"),
        Admin::Keys(KeysCmd::Import { .. }) => format!("imported {}\n", a.body["imported"]),
        Admin::Tokens(TokensCmd::Revoke { jti, .. }) => format!(
            "revoked jti {jti} until {}\n",
            a.body["until"].as_str().unwrap_or_default()
        ),
    })
}
