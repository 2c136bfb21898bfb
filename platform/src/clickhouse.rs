//! The ClickHouse client every Nerve process uses: HTTP with TCP_NODELAY (the crate's default
//! connector stalls each compressed INSERT ~40 ms without it), lz4, and no schema validation
//! (ClickHouse 18.16 lacks the `RowBinaryWithNamesAndTypes` format it needs).

use std::time::Duration;

use ::clickhouse::Client;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ClickHouseConfig;

/// A client for `config`, bound to its database.
pub fn client(config: &ClickHouseConfig) -> Client {
    server_client(config).with_database(&config.database)
}

/// A client for `config`'s server, not bound to a database (for `CREATE DATABASE`).
pub fn server_client(config: &ClickHouseConfig) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let http = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(2))
        .build(connector);
    let mut client = Client::with_http_client(http)
        .with_url(&config.url)
        .with_user(&config.user)
        .with_validation(false);
    if !config.password.is_empty() {
        client = client.with_password(&config.password);
    }
    client
}

/// Creates `config.database` if missing.
pub async fn ensure_database(config: &ClickHouseConfig) -> Result<(), ::clickhouse::error::Error> {
    server_client(config)
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            config.database
        ))
        .execute()
        .await
}
