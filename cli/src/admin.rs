//! Admin commands: `nerve token …` (create, list, rotate, revoke through the API, with an
//! admin token), `nerve enrollment …` (enrollment tokens, nodes' credentials), `nerve authority
//! init` (the NATS keys, server config and roles' credentials of a deployment), `nerve audit verify` (checks every audit chain on the stream itself) and
//! `nerve secret seal` (a secret for the config, sealed with the secrets key).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use nerve_platform::config::Config;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; its secret is printed once and stored nowhere.
    Create {
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// Lifetime, e.g. 30d or 12h (default: api.token_default_ttl_secs).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Every token (never a secret).
    List,
    /// A new secret for a token (same id, name and role); the old secret stops working.
    Rotate {
        id: String,
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Revoke a token everywhere.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Take a node out of service: tasks skip it unless a request names it.
    Cordon {
        node: String,
        /// Why (kept with the change).
        #[arg(long)]
        reason: String,
    },
    /// Return a node to service.
    Uncordon {
        node: String,
        #[arg(long)]
        reason: String,
    },
    /// Mark a node as needing a person or an RMA.
    ServiceRequired {
        node: String,
        #[arg(long)]
        reason: String,
    },
    /// A node's detail, with its maintenance state and history.
    Show { node: String },
    /// The nodes in one maintenance state.
    List {
        /// in_service, cordoned, remediating, verifying or service_required.
        #[arg(long, default_value = "cordoned")]
        state: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnrollmentCommand {
    /// An enrollment token for `--uses` nodes (`nerve agent --enroll <token>` on each); its
    /// secret is printed once and stored nowhere.
    Create {
        /// What it is for, e.g. a rack or a batch of machines.
        #[arg(long)]
        name: String,
        /// How many nodes may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime, e.g. 30m (default: api.enrollment_default_ttl_secs, 1 h).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Every enrollment token (never a secret).
    List,
    /// Revoke an enrollment token: no node enrolls with it again.
    RevokeToken { id: String },
    /// Every enrolled node's NATS credentials.
    Nodes,
    /// Revoke a node's NATS credentials: its connection is closed and refused from then on.
    Revoke { node: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the keys every role of a deployment shares in DIR (each kept when there, mode
    /// 0600): `secrets.key` (seals channel secrets; alerts.secrets_key_file) and
    /// `dispatch.seed` (signs task offers; dispatch.signing_key_file). Prints the public key
    /// agents pin.
    Init { dir: PathBuf },
}

/// `nerve keys init`: the shared keys, made where a deployment mounts them from.
pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Init { dir } = command;
    let secrets = dir.join("secrets.key");
    let made = nerve_platform::secrets::Sealer::create_if_missing(&secrets)?;
    let seed = dir.join("dispatch.seed");
    let signer = nerve_ingest::offer::OfferSigner::load_or_create(&seed)
        .with_context(|| format!("{}", seed.display()))?;
    println!(
        "{} {}
{} (agent.dispatch_public_key: {})",
        secrets.display(),
        if made { "created" } else { "kept" },
        seed.display(),
        signer.public_key()
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Create the NATS operator and account keys in DIR (kept when there) and write what a
    /// deployment needs beside them: `nats-auth.conf` (lines for nats-server.conf) and a
    /// `.creds` per role — `serve`, `project`, and `admin` for tools — each written once.
    Init {
        dir: PathBuf,
        /// Where nats-server keeps the account JWTs it is sent (revocations).
        #[arg(long, default_value = "/var/lib/nats/jwt")]
        resolver_dir: PathBuf,
    },
}

/// `nerve authority init`: the keys, the server's config lines and the roles' credentials.
pub fn authority(command: AuthorityCommand) -> anyhow::Result<()> {
    use nerve_ingest::authority::{Authority, Grant};
    let AuthorityCommand::Init { dir, resolver_dir } = command;
    let authority = Authority::load_or_create(&dir)?;
    let conf = dir.join("nats-auth.conf");
    std::fs::write(&conf, authority.server_config(&resolver_dir)?)
        .with_context(|| format!("writing {}", conf.display()))?;
    for (role, grant) in [
        ("serve", Grant::serve()),
        ("project", Grant::project()),
        ("admin", Grant::all()),
    ] {
        let path = dir.join(format!("{role}.creds"));
        if !path.exists() {
            nerve_ingest::keys::write_private(&path, &authority.role_creds(role, &grant)?)?;
        }
    }
    println!(
        "NATS authority in {dir}:\n  nats-server.conf: add the lines of {conf} (or `include` it by a path relative to nats-server.conf)\n  nerve serve: api.nats_authority_dir = {dir:?}, nats.credentials_file = {serve:?}\n  nerve project: nats.credentials_file = {project:?}\n  tools: nats.credentials_file = {admin:?}\nThe *.nk files can mint any credential: keep DIR readable by nerve serve only.",
        dir = dir.display().to_string(),
        conf = conf.display(),
        serve = dir.join("serve.creds").display().to_string(),
        project = dir.join("project.creds").display().to_string(),
        admin = dir.join("admin.creds").display().to_string(),
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Read a secret from stdin and print it sealed for `--context`.
    Seal {
        /// What the value is, e.g. alerts.smtp.password (a sealed value opens only there).
        #[arg(long)]
        context: String,
    },
}

pub fn secret(config: &Config, command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Seal { context } => {
            let key_file = &config.alerts.secrets_key_file;
            let sealer = nerve_platform::secrets::Sealer::load(key_file)?;
            let mut plain = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut plain)?;
            let plain = plain.trim_end_matches(['\r', '\n']);
            if plain.is_empty() {
                bail!("nothing to seal on stdin");
            }
            println!("{}", sealer.seal(plain, &context));
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every instance's audit chain on the audit stream: exit 1 on a break.
    Verify,
}

/// Where the API is and which token to call it with.
#[derive(Debug, clap::Args)]
pub struct ApiTarget {
    /// The API's base URL (default: http://<api.listen_addr>).
    #[arg(long, env = "NERVE_API_URL")]
    api: Option<String>,
    /// File holding a token (default: the bootstrap admin token, api.admin_token_file).
    #[arg(long, env = "NERVE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// CA (PEM) the API's certificate chains to (default: `nerve dev`'s local CA, when there).
    #[arg(long, env = "NERVE_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl ApiTarget {
    /// The API's base URL and the CA to trust: as given, else what `nerve dev` set up.
    fn resolve(&self, config: &Config) -> (String, Option<PathBuf>) {
        let dev_ca = config.dev.data_dir.join("tls/ca.pem");
        let dev_tls = config.dev.tls && dev_ca.exists();
        let tls = !config.api.tls_cert_file.as_os_str().is_empty() || dev_tls;
        let base = self.api.clone().unwrap_or_else(|| {
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{}", config.api.listen_addr)
        });
        let ca = self.ca_file.clone().or(dev_tls.then_some(dev_ca));
        (base, ca)
    }
}

pub async fn token(
    config: &Config,
    target: &ApiTarget,
    command: TokenCommand,
) -> anyhow::Result<()> {
    let ttl_secs = |ttl: Option<std::time::Duration>| ttl.map(|d| d.as_secs());
    let (method, path, body) = match command {
        TokenCommand::Create { name, role, ttl } => (
            reqwest::Method::POST,
            "/tokens".to_owned(),
            Some(serde_json::json!({"name": name, "role": role, "ttl_secs": ttl_secs(ttl)})),
        ),
        TokenCommand::List => (reqwest::Method::GET, "/tokens".into(), None),
        TokenCommand::Rotate { id, ttl } => (
            reqwest::Method::POST,
            format!("/tokens/{id}/rotate"),
            Some(serde_json::json!({"ttl_secs": ttl_secs(ttl)})),
        ),
        TokenCommand::Revoke { id } => (reqwest::Method::DELETE, format!("/tokens/{id}"), None),
    };
    call_api(config, target, method, &path, body).await
}

pub async fn enrollment(
    config: &Config,
    target: &ApiTarget,
    command: EnrollmentCommand,
) -> anyhow::Result<()> {
    let (method, path, body) = match command {
        EnrollmentCommand::Create { name, uses, ttl } => (
            reqwest::Method::POST,
            "/enrollments".to_owned(),
            Some(serde_json::json!({
                "name": name, "uses": uses, "ttl_secs": ttl.map(|d| d.as_secs())
            })),
        ),
        EnrollmentCommand::List => (reqwest::Method::GET, "/enrollments".into(), None),
        EnrollmentCommand::RevokeToken { id } => {
            (reqwest::Method::DELETE, format!("/enrollments/{id}"), None)
        }
        EnrollmentCommand::Nodes => (reqwest::Method::GET, "/credentials".into(), None),
        EnrollmentCommand::Revoke { node } => (
            reqwest::Method::DELETE,
            format!("/credentials/{node}"),
            None,
        ),
    };
    call_api(config, target, method, &path, body).await
}

pub async fn node(config: &Config, target: &ApiTarget, command: NodeCommand) -> anyhow::Result<()> {
    let set = |node: &str, state: &str, reason: &str| {
        (
            reqwest::Method::PUT,
            format!("/nodes/{node}/maintenance"),
            Some(serde_json::json!({"state": state, "reason": reason})),
        )
    };
    let (method, path, body) = match &command {
        NodeCommand::Cordon { node, reason } => set(node, "cordoned", reason),
        NodeCommand::Uncordon { node, reason } => set(node, "in_service", reason),
        NodeCommand::ServiceRequired { node, reason } => set(node, "service_required", reason),
        NodeCommand::Show { node } => (reqwest::Method::GET, format!("/nodes/{node}"), None),
        NodeCommand::List { state } => (
            reqwest::Method::GET,
            format!("/nodes?maintenance={state}&limit=1000"),
            None,
        ),
    };
    call_api(config, target, method, &path, body).await
}

/// Calls `/api/v1<path>` with the token and prints the answer.
async fn call_api(
    config: &Config,
    target: &ApiTarget,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let (base, ca) = target.resolve(config);
    let file = target
        .token_file
        .clone()
        .unwrap_or_else(|| config.admin_token_file());
    let secret = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the admin token from {}", file.display()))?;
    let mut client = reqwest::Client::builder();
    if let Some(ca) = &ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let mut request = client
        .build()?
        .request(
            method,
            format!("{}/api/v1{path}", base.trim_end_matches('/')),
        )
        .bearer_auth(secret.trim());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("calling the API at {base}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "the API answered {status}: {}",
            body["error"]["message"].as_str().unwrap_or("no message")
        );
    }
    println!("{}", serde_json::to_string_pretty(&body)?);
    if body.get("token").is_some() {
        eprintln!("The token above is shown once; store it now.");
    }
    Ok(())
}

pub async fn audit(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify => {
            let client =
                nerve_ingest::connect(&config.nats, nerve_ingest::Who::Role("audit"), false)
                    .await?;
            let js = async_nats::jetstream::new(client);
            let report = nerve_api::audit::verify(&js)
                .await
                .map_err(|e| anyhow::anyhow!("reading the audit stream: {e}"))?;
            for problem in &report.problems {
                println!("BROKEN {problem}");
            }
            println!(
                "{} entries in {} chains: {}",
                report.entries,
                report.chains,
                if report.problems.is_empty() {
                    "every chain intact".to_owned()
                } else {
                    format!("{} problems", report.problems.len())
                }
            );
            if !report.problems.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
