//! `connections --secured`: the run's NATS authority, admin credentials and local CA, the
//! servers' config under them, and agents connecting as enrolled nodes do.

use std::sync::Arc;
use std::time::Duration;

use nerve_platform::services::NatsOptions;

/// A secured run's NATS authority, admin credentials and local CA.
pub struct Secured {
    dir: tempfile::TempDir,
    pub authority_dir: std::path::PathBuf,
    pub authority: nerve_ingest::authority::Authority,
    pub creds: std::path::PathBuf,
    pub tls: nerve_platform::tls::LocalTls,
}

impl Secured {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("nerve-connections-")
            .tempdir()?;
        let authority_dir = dir.path().join("authority");
        let authority = nerve_ingest::authority::Authority::load_or_create(&authority_dir)?;
        let creds = dir.path().join("admin.creds");
        nerve_ingest::keys::write_private(
            &creds,
            &authority.role_creds("admin", &nerve_ingest::authority::Grant::all())?,
        )?;
        let tls = nerve_platform::tls::LocalTls::ensure(&dir.path().join("tls"))?;
        Ok(Self {
            dir,
            authority_dir,
            authority,
            creds,
            tls,
        })
    }

    /// `options` with JWT auth and TLS (its resolver in `name`); a leaf node signs in to the
    /// hub as the admin user, into the `NERVE` account.
    pub fn options(&self, options: NatsOptions, name: &str) -> anyhow::Result<NatsOptions> {
        let mut auth = self.authority.server_config(&self.dir.path().join(name))?;
        if let Some(port) = options.hub_leafnode_port {
            auth += &format!(
                "leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{port}\", \
                 credentials: {:?}, account: {} }} ] }}\n",
                self.creds.display().to_string(),
                self.authority.account_public_key()
            );
        }
        Ok(NatsOptions {
            auth: Some(auth),
            tls: Some((self.tls.cert_file.clone(), self.tls.key_file.clone())),
            hub_leafnode_port: None,
            ..options
        })
    }
}

/// Agent `id` as an enrolled node: a key of its own, a JWT for it limited to its own
/// subjects, TLS to a server whose certificate chains to `ca`.
pub async fn connect_enrolled(
    authority: &nerve_ingest::authority::Authority,
    id: &str,
    url: &str,
    ca: Option<std::path::PathBuf>,
) -> anyhow::Result<async_nats::Client> {
    let key = Arc::new(nkeys::KeyPair::new_user());
    let grant = nerve_ingest::authority::Grant::node(id);
    let issued = authority.issue(
        id,
        &key.public_key(),
        &grant,
        Some(Duration::from_secs(86_400)),
    )?;
    let mut options = async_nats::ConnectOptions::with_jwt(issued.jwt, move |nonce| {
        let key = key.clone();
        async move {
            key.sign(&nonce)
                .map_err(|e| async_nats::AuthError::new(e.to_string()))
        }
    })
    .name(format!("nerve-agent {id}"))
    .custom_inbox_prefix(nerve_ingest::inbox::node(id))
    .connection_timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        options = options.require_tls(true).add_root_certificates(ca);
    }
    Ok(options.connect(url).await?)
}
