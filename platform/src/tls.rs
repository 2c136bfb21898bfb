//! A local certificate authority for `nerve dev` and the tests: a CA and a server certificate
//! for `localhost` and `127.0.0.1`, made once (rcgen) and kept under a directory, so the whole
//! local system — API and NATS — runs over TLS. Production takes given files instead.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// The files of a local CA and the server certificate it signed.
#[derive(Debug, Clone)]
pub struct LocalTls {
    /// The CA certificate clients trust (PEM).
    pub ca_file: PathBuf,
    /// The server's certificate (PEM) and private key (PEM, mode 0600).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Why the local CA could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("making certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LocalTls {
    /// The CA and server certificate under `dir`, made when missing.
    pub fn ensure(dir: &Path) -> Result<Self, TlsError> {
        let files = Self {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
        };
        if files.ca_file.exists() && files.cert_file.exists() && files.key_file.exists() {
            return Ok(files);
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TlsError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (ca_pem, cert_pem, key_pem) = Self::generate("Nerve local CA")?;
        write(&files.ca_file, &ca_pem, 0o644).map_err(io(&files.ca_file))?;
        write(&files.cert_file, &cert_pem, 0o644).map_err(io(&files.cert_file))?;
        write(&files.key_file, &key_pem, 0o600).map_err(io(&files.key_file))?;
        Ok(files)
    }

    /// A new CA named `name` and a server certificate for `localhost` and `127.0.0.1` it
    /// signed: (CA PEM, certificate PEM, key PEM).
    pub fn generate(name: &str) -> Result<(String, String, String), TlsError> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "nerve local server");
        let key = KeyPair::generate()?;
        let cert = server.signed_by(&key, &ca_cert, &ca_key)?;
        Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
    }
}

fn write(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?
        .write_all(text.as_bytes())
}
