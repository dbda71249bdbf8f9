//! The `portcullis` command line: parses arguments and calls into the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "An authentication gateway")]
struct Cli {
    /// Accepted before the command too (`portcullis --admin URL keys list`), as SPEC section 1
    /// has it; shown with the admin commands.
    #[arg(long, hide = true)]
    admin: Option<String>,
    #[arg(long, hide = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// How an admin-API command finds and talks to the admin API.
#[derive(Args)]
struct AdminArgs {
    /// The admin API's base URL. Default: PORTCULLIS_ADMIN_URL, else the `admin.bind` (and
    /// `admin.tls`) of the config, else http://127.0.0.1:9901.
    #[arg(long, global = true, value_name = "URL")]
    admin: Option<String>,
    /// The config whose `admin.bind` names the admin API (default ./gateway.yaml, when present).
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the admin API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key; prints the secret once, on a line `key: sk_...`.
    Create {
        /// A name for people (shown in lists).
        #[arg(long)]
        name: String,
        /// The subject the upstream sees in X-Auth-Subject (default: the key id).
        #[arg(long)]
        subject: Option<String>,
        /// Scopes, separated by spaces or commas: "read:users write:users".
        #[arg(long)]
        scopes: Option<String>,
        /// The key's environment: live (default) or test.
        #[arg(long, value_name = "live|test")]
        env: Option<String>,
        /// The key's own rate limit, as in the config: 100/s, 600/min, 10/m, 1000/h.
        #[arg(long, value_name = "RATE")]
        rate: Option<String>,
        /// When the key expires: a lifetime (90d, 12h) or a date (2027-01-01, RFC 3339).
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// List keys (metadata only, never a secret).
    List,
    /// Show one key.
    Show {
        /// The key's id (key_...).
        id: String,
    },
    /// New secret for the same id; earlier secrets work until the grace ends.
    Rotate {
        /// The key's id (key_...).
        id: String,
        /// How long earlier secrets keep working (0: not at all).
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        grace: String,
    },
    /// Revoke a key now (revoking a revoked key changes nothing).
    Revoke {
        /// The key's id (key_...).
        id: String,
    },
    /// Import keys issued by another system: a JSON array or `<key> <subject>` lines.
    Import {
        /// The file to import.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokensCmd {
    /// Deny a JWT by its jti until the given time (when it would have expired).
    Revoke {
        /// The token's `jti` claim.
        jti: String,
        /// Until when: a date (2027-01-01, RFC 3339) or a time from now (24h); in the future.
        #[arg(long, value_name = "WHEN")]
        until: String,
    },
    /// List the revoked tokens.
    List,
    /// Lift a revocation: the token is accepted again.
    Unrevoke {
        /// The token's `jti` claim.
        jti: String,
    },
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Add a local user; the password is read from standard input (a prompt without echo on a
    /// terminal).
    Add {
        /// The username (the user's `sub`): 1-64 of A-Z a-z 0-9 . _ @ -.
        name: String,
        /// Scopes the user may grant, separated by spaces or commas.
        #[arg(long)]
        scopes: Option<String>,
    },
    /// List users (never a password or hash).
    List,
    /// Set a user's password (read from standard input, as for `add`).
    Passwd {
        /// The username.
        name: String,
    },
    /// Remove a user.
    Remove {
        /// The username.
        name: String,
    },
}

#[derive(Subcommand)]
enum ClientsCmd {
    /// Register a client of the built-in authorization server; prints `client_id: ...` and,
    /// for a client with a secret, `client_secret: pcs_...` (shown once).
    Create {
        /// A name for people (shown in lists).
        #[arg(long)]
        name: String,
        /// A grant it may use (repeatable): client_credentials (the default, and for now the
        /// only one the server issues; authorization_code and refresh_token are refused).
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        /// The scopes it may ask for, separated by spaces or commas.
        #[arg(long)]
        scopes: Option<String>,
        /// An audience its tokens may carry (repeatable; the first is the default, RFC 8707
        /// `resource` picks another).
        #[arg(long = "audience", value_name = "URL")]
        audiences: Vec<String>,
        /// A redirect URI (repeatable; the authorization code flow).
        #[arg(long = "redirect-uri", value_name = "URL")]
        redirect_uris: Vec<String>,
        /// A public client: no secret (auth method none; authorization code with PKCE only).
        #[arg(long)]
        public: bool,
        /// A first-party client (no consent page).
        #[arg(long)]
        first_party: bool,
        /// How it authenticates: client_secret_basic (default), client_secret_post, or
        /// tls_client_auth (with --cert).
        #[arg(long, value_name = "METHOD")]
        auth_method: Option<String>,
        /// tls_client_auth: the client's certificate (PEM); its SHA-256 is registered.
        #[arg(long, value_name = "PEM")]
        cert: Option<PathBuf>,
        /// Its access tokens' lifetime, instead of the server's (1s..24h).
        #[arg(long, value_name = "DURATION")]
        token_ttl: Option<String>,
    },
    /// List clients (never a secret).
    List,
    /// Show one client.
    Show {
        /// The client id.
        id: String,
    },
    /// New secret; the old one works until the grace ends, and tokens issued before the rotation
    /// stop passing then (0: at once).
    Rotate {
        /// The client id.
        id: String,
        /// How long the old secret keeps working.
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        grace: String,
    },
    /// Delete a client: its secrets stop working and every token issued to it is refused.
    Delete {
        /// The client id.
        id: String,
    },
}

#[derive(Subcommand)]
enum OauthCmd {
    /// The authorization server's signing keys.
    Keys {
        #[command(subcommand)]
        cmd: OauthKeysCmd,
    },
}

#[derive(Subcommand)]
enum OauthKeysCmd {
    /// List signing keys with their state (pending, active, retired, expired).
    List,
    /// Publish a new key now; it signs `publish_ahead` from now.
    Rotate,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the gateway.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "gateway.yaml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate the config: exit 0, or print every error as FILE:LINE:COL: field.path: message and exit 1.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "gateway.yaml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Dry-run one request through routing and the auth chain; exit 0 allowed, 1 denied.
    Explain {
        /// The config file (its store is read, read-only, for API keys and revoked tokens).
        #[arg(short, long, default_value = "gateway.yaml", value_name = "FILE")]
        config: PathBuf,
        /// The request's method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// Full URL, e.g. https://api.example.com/api/users/7
        #[arg(long)]
        url: String,
        /// A request header, 'Name: value' (repeatable)
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// The client address the request comes from.
        #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
        peer: std::net::IpAddr,
        /// Act as if this PEM client certificate had been verified on the connection.
        #[arg(long, value_name = "PEM")]
        client_cert: Option<PathBuf>,
    },
    /// Manage API keys through the admin API (token from PORTCULLIS_ADMIN_TOKEN).
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Manage the JWT denylist through the admin API (token from PORTCULLIS_ADMIN_TOKEN).
    Tokens {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: TokensCmd,
    },
    /// Manage the built-in authorization server's clients through the admin API.
    Clients {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: ClientsCmd,
    },
    /// Manage the built-in authorization server's local users through the admin API.
    Users {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: UsersCmd,
    },
    /// The built-in authorization server, through the admin API.
    Oauth {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        cmd: OauthCmd,
    },
    /// Print a new random admin token and the `token_sha256:` line for the config.
    AdminToken,
    /// Write a development CA, a server certificate (localhost, 127.0.0.1) and a client certificate.
    DevPki {
        /// Output folder.
        #[arg(long, default_value = "certs", value_name = "DIR")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    // Exit codes (SPEC section 1): 0 ok, 1 user error (a usage error too), 2 internal.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    portcullis::install_crypto_provider();
    let top = (cli.admin, cli.json);
    let merged = |mut a: AdminArgs| {
        a.admin = a.admin.or_else(|| top.0.clone());
        a.json |= top.1;
        a
    };
    let admin_command = matches!(
        cli.cmd,
        Cmd::Keys { .. }
            | Cmd::Tokens { .. }
            | Cmd::Clients { .. }
            | Cmd::Users { .. }
            | Cmd::Oauth { .. }
    );
    if (top.0.is_some() || top.1) && !admin_command {
        eprintln!(
            "portcullis: --admin and --json go with the admin commands (keys, tokens, clients, users, oauth)"
        );
        return ExitCode::from(1);
    }
    match cli.cmd {
        Cmd::Keys { admin, cmd } => admin_cmd(&merged(admin), Admin::Keys(cmd)),
        Cmd::Tokens { admin, cmd } => admin_cmd(&merged(admin), Admin::Tokens(cmd)),
        Cmd::Clients { admin, cmd } => admin_cmd(&merged(admin), Admin::Clients(cmd)),
        Cmd::Users { admin, cmd } => admin_cmd(&merged(admin), Admin::Users(cmd)),
        Cmd::Oauth {
            admin,
            cmd: OauthCmd::Keys { cmd },
        } => admin_cmd(&merged(admin), Admin::OauthKeys(cmd)),
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

fn current_thread() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("portcullis: {e}");
            ExitCode::from(2)
        })
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
    let rt = match current_thread() {
        Ok(rt) => rt,
        Err(code) => return code,
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
    Clients(ClientsCmd),
    Users(UsersCmd),
    OauthKeys(OauthKeysCmd),
}

fn admin_cmd(args: &AdminArgs, cmd: Admin) -> ExitCode {
    let flag = args
        .admin
        .clone()
        .or_else(|| std::env::var("PORTCULLIS_ADMIN_URL").ok());
    let base = match portcullis::admin_client::admin_url(flag.as_deref(), args.config.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(1);
        }
    };
    let rt = match current_thread() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(admin_cmd_async(&base, args.json, cmd)) {
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

/// The request an admin command makes: method, path, body.
type Call = (http::Method, String, Option<serde_json::Value>);

fn request_of(cmd: &Admin) -> Result<Call, (u8, String)> {
    use http::Method;
    use portcullis::admin_client::{parse_import, scopes, when};
    use serde_json::{json as j, Value};
    Ok(match cmd {
        Admin::Keys(KeysCmd::Create {
            name,
            subject,
            scopes: s,
            env,
            rate,
            expires,
        }) => {
            let mut b = j!({"name": name});
            if let Some(s) = subject {
                b["subject"] = j!(s);
            }
            if let Some(s) = s {
                b["scopes"] = j!(scopes(s));
            }
            if let Some(e) = env {
                b["env"] = j!(e);
            }
            if let Some(r) = rate {
                b["rate_limit"] = j!(r);
            }
            if let Some(x) = expires {
                let (field, value) = when(x).map_err(|e| (1, format!("--expires: {e}")))?;
                b[field] = j!(value);
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
        Admin::Tokens(TokensCmd::Revoke { jti, until }) => {
            let until =
                portcullis::admin_client::until(until).map_err(|e| (1, format!("--until: {e}")))?;
            (
                Method::POST,
                "/admin/revocations".into(),
                Some(j!({"jti": jti, "until": until})),
            )
        }
        Admin::Tokens(TokensCmd::List) => (Method::GET, "/admin/revocations".into(), None),
        Admin::Tokens(TokensCmd::Unrevoke { jti }) => {
            (Method::DELETE, format!("/admin/revocations/{jti}"), None)
        }
        Admin::Clients(c) => client_request(c)?,
        Admin::Users(c) => user_request(c)?,
        Admin::OauthKeys(OauthKeysCmd::List) => (Method::GET, "/admin/oauth/keys".into(), None),
        Admin::OauthKeys(OauthKeysCmd::Rotate) => {
            (Method::POST, "/admin/oauth/keys/rotate".into(), None)
        }
    })
}

fn client_request(cmd: &ClientsCmd) -> Result<Call, (u8, String)> {
    use http::Method;
    use serde_json::json as j;
    Ok(match cmd {
        ClientsCmd::Create {
            name,
            grants,
            scopes,
            audiences,
            redirect_uris,
            public,
            first_party,
            auth_method,
            cert,
            token_ttl,
        } => {
            let mut b = j!({"name": name, "audiences": audiences, "redirect_uris": redirect_uris,
                "first_party": first_party});
            if !grants.is_empty() {
                b["grants"] = j!(grants);
            }
            if let Some(s) = scopes {
                b["scopes"] = j!(portcullis::admin_client::scopes(s));
            }
            match (public, auth_method) {
                (true, Some(_)) => {
                    return Err((1, "--public and --auth-method exclude each other".into()))
                }
                (true, None) => b["auth_method"] = j!("none"),
                (false, Some(m)) => b["auth_method"] = j!(m),
                (false, None) if cert.is_some() => b["auth_method"] = j!("tls_client_auth"),
                (false, None) => {}
            }
            if let Some(c) = cert {
                let der =
                    portcullis::tls::load_certs(c).map_err(|e| (1, format!("--cert: {e}")))?;
                let h = portcullis::digest::sha256(der[0].as_ref());
                b["cert_sha256"] = j!(format!("sha256:{}", portcullis::digest::hex_lower(&h)));
            }
            if let Some(t) = token_ttl {
                b["token_ttl"] = j!(t);
            }
            (Method::POST, "/admin/clients".into(), Some(b))
        }
        ClientsCmd::List => (Method::GET, "/admin/clients".into(), None),
        ClientsCmd::Show { id } => (Method::GET, format!("/admin/clients/{id}"), None),
        ClientsCmd::Rotate { id, grace } => (
            Method::POST,
            format!("/admin/clients/{id}/rotate"),
            Some(j!({"grace": grace})),
        ),
        ClientsCmd::Delete { id } => (Method::DELETE, format!("/admin/clients/{id}"), None),
    })
}

/// The request a `users` command makes.
fn user_request(c: &UsersCmd) -> Result<Call, (u8, String)> {
    use http::Method;
    use serde_json::json as j;
    Ok(match c {
        UsersCmd::Add { name, scopes } => {
            let mut b = j!({"username": name, "password": read_password()?});
            if let Some(s) = scopes {
                b["scopes"] = j!(portcullis::admin_client::scopes(s));
            }
            (Method::POST, "/admin/users".into(), Some(b))
        }
        UsersCmd::List => (Method::GET, "/admin/users".into(), None),
        UsersCmd::Passwd { name } => (
            Method::PATCH,
            format!("/admin/users/{name}"),
            Some(j!({"password": read_password()?})),
        ),
        UsersCmd::Remove { name } => (Method::DELETE, format!("/admin/users/{name}"), None),
    })
}

/// A password from standard input: prompted for twice without echo on a terminal, else the
/// first line (without its line end).
fn read_password() -> Result<String, (u8, String)> {
    use std::io::IsTerminal;
    let fail = |e: std::io::Error| (1, format!("reading the password: {e}"));
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").map_err(fail)?;
        let again = rpassword::prompt_password("again: ").map_err(fail)?;
        if first != again {
            return Err((1, "the passwords differ".into()));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(fail)?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    Ok(pw.strip_suffix('\r').unwrap_or(pw).to_owned())
}

async fn admin_cmd_async(base: &str, json: bool, cmd: Admin) -> Result<String, (u8, String)> {
    use portcullis::admin_client::{call, fields, table};
    use serde_json::Value;
    let token = std::env::var("PORTCULLIS_ADMIN_TOKEN").ok();
    let (method, path, body) = request_of(&cmd)?;
    let a = call(base, token.as_deref(), method, &path, body.as_ref())
        .await
        .map_err(|e| (2, e))?;
    if a.status >= 400 {
        let msg = a
            .body
            .get("error_description")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| a.body.to_string());
        let hint = match (a.status, &token) {
            (401, None) => " (set PORTCULLIS_ADMIN_TOKEN to the admin token)",
            (401, Some(_)) => " (the admin API refused the token in PORTCULLIS_ADMIN_TOKEN)",
            _ => "",
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
        Admin::Tokens(TokensCmd::List) => {
            let rows = a.body["revocations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            table(&rows, &[("jti", "JTI"), ("until", "UNTIL")])
        }
        Admin::Tokens(TokensCmd::Unrevoke { jti }) => format!("lifted the revocation of {jti}\n"),
        Admin::Users(UsersCmd::Add { .. } | UsersCmd::Passwd { .. }) => {
            fields(&a.body, &["username", "scopes", "created_at", "updated_at"])
        }
        Admin::Users(UsersCmd::List) => {
            let rows = a.body["users"].as_array().cloned().unwrap_or_default();
            table(
                &rows,
                &[
                    ("username", "USERNAME"),
                    ("scopes", "SCOPES"),
                    ("created_at", "CREATED"),
                    ("updated_at", "UPDATED"),
                ],
            )
        }
        Admin::Users(UsersCmd::Remove { name }) => format!("removed {name}\n"),
        Admin::Clients(c) => portcullis::admin_client::client_output(
            match c {
                ClientsCmd::Create { .. } => "create",
                ClientsCmd::List => "list",
                ClientsCmd::Show { .. } => "show",
                ClientsCmd::Rotate { .. } => "rotate",
                ClientsCmd::Delete { .. } => "delete",
            },
            &a.body,
        ),
        Admin::OauthKeys(OauthKeysCmd::List) => {
            let rows = a.body["keys"].as_array().cloned().unwrap_or_default();
            table(
                &rows,
                &[
                    ("kid", "KID"),
                    ("alg", "ALG"),
                    ("state", "STATE"),
                    ("activates_at", "SIGNS FROM"),
                ],
            )
        }
        Admin::OauthKeys(OauthKeysCmd::Rotate) => fields(&a.body, &["kid", "alg", "activates_at"]),
    })
}
