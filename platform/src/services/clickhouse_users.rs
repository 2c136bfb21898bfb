//! Who may sign in to a ClickHouse started by this crate: by default the passwordless `default`
//! user from this machine only (tests); with [`ClickHouseUsers`] (`nerve dev`), Nerve's own
//! password-protected user and a read-only user for analysts, and `default` locked.

use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

/// The passwords of Nerve's user (`nerve`, every right) and the analysts' (`analyst`,
/// read-only).
#[derive(Clone, PartialEq, Eq)]
pub struct ClickHouseUsers {
    pub nerve_password: String,
    pub analyst_password: String,
}

impl std::fmt::Debug for ClickHouseUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClickHouseUsers(<passwords redacted>)")
    }
}

fn random_password() -> String {
    let mut bytes = [0u8; 18];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("OS random numbers");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ClickHouseUsers {
    /// The passwords kept in `path` (`nerve=…` and `analyst=…` lines, mode 0600), made when
    /// the file is missing.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            writeln!(
                file,
                "nerve={}\nanalyst={}",
                random_password(),
                random_password()
            )?;
        }
        let text = std::fs::read_to_string(path)?;
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: no {name}= line", path.display()),
                    )
                })
        };
        Ok(Self {
            nerve_password: get("nerve")?,
            analyst_password: get("analyst")?,
        })
    }
}

fn user(name: &str, password_sha256: &str, profile: &str) -> String {
    format!(
        "        <{name}>
            <password_sha256_hex>{password_sha256}</password_sha256_hex>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>{profile}</profile>
            <quota>default</quota>
        </{name}>
"
    )
}

/// The `users.xml` text.
pub(super) fn users_xml(users: Option<&ClickHouseUsers>) -> String {
    let users_block = match users {
        None => "        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
"
        .to_owned(),
        Some(u) => {
            // `default` must exist; nobody knows its password.
            user("default", &sha256_hex(&random_password()), "default")
                + &user("nerve", &sha256_hex(&u.nerve_password), "default")
                + &user("analyst", &sha256_hex(&u.analyst_password), "readonly")
        }
    };
    format!(
        r#"<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <max_memory_usage>4000000000</max_memory_usage>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
{users_block}    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"#
    )
}
