//! The ClickHouse client every Nerve process uses: HTTP with TCP_NODELAY (the crate's default
//! connector stalls each compressed INSERT ~40 ms without it), lz4, and no schema validation
//! (ClickHouse 18.16 lacks the `RowBinaryWithNamesAndTypes` format it needs).
//!
//! `clickhouse.url` may name several servers (a cluster's): each new connection goes to the
//! first of them that accepts it, so a server that dies costs the requests in flight on it,
//! which the callers retry. On a cluster (`clickhouse.cluster`) every request also carries the
//! settings reads and writes need through `Distributed` tables.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::clickhouse::Client;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use crate::config::ClickHouseConfig;

/// A client for `config`, bound to its database.
pub fn client(config: &ClickHouseConfig) -> Client {
    server_client(config).with_database(&config.database)
}

/// A [`Client`] over `connector` with TCP_NODELAY and keep-alive (a macro: the crate's body type
/// is private).
macro_rules! client_over {
    ($connector:expr) => {{
        let mut connector = $connector;
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        Client::with_http_client(
            HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(2))
                .build(connector),
        )
    }};
}

/// A client for `config`'s server, not bound to a database (for `CREATE DATABASE`).
pub fn server_client(config: &ClickHouseConfig) -> Client {
    let urls: Vec<&str> = config.url.split(',').map(str::trim).collect();
    let mut client = match urls.as_slice() {
        [one] => client_over!(HttpConnector::new()).with_url(*one),
        several => {
            let hosts: Arc<[String]> = several.iter().map(|u| authority(u)).collect();
            let scheme = several[0].split("://").next().unwrap_or("http");
            let resolve = tower::service_fn(move |_: Name| {
                let hosts = hosts.clone();
                async move { resolve_in_order(&hosts).await }
            });
            let mut connector = HttpConnector::new_with_resolver(resolve);
            connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
            // No port in the URL: each address keeps its own.
            client_over!(connector).with_url(format!("{scheme}://{CLUSTER_HOST}"))
        }
    }
    .with_user(&config.user)
    .with_validation(false);
    if !config.password.is_empty() {
        client = client.with_password(&config.password);
    }
    if !config.cluster.is_empty() {
        client = client
            // An insert is acknowledged once every shard holds its rows, not when queued.
            .with_setting("insert_distributed_sync", "1")
            // A subquery over a Distributed table inside another reads the whole table.
            .with_setting("distributed_product_mode", "global");
    }
    client
}

/// The made-up host name the URLs of several servers stand behind.
const CLUSTER_HOST: &str = "clickhouse-servers";

/// For each server tried, out of this in total (shared among the addresses).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(6);

/// `host:port` of a URL (port 80 when it names none).
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:80")
    }
}

/// Every listed server's addresses, in the order listed.
async fn resolve_in_order(hosts: &[String]) -> std::io::Result<std::vec::IntoIter<SocketAddr>> {
    let mut all = Vec::new();
    let mut last_err = None;
    for host in hosts {
        match tokio::net::lookup_host(host.as_str()).await {
            Ok(addrs) => all.extend(addrs),
            Err(e) => last_err = Some(e),
        }
    }
    match (all.is_empty(), last_err) {
        (true, Some(e)) => Err(e),
        _ => Ok(all.into_iter()),
    }
}

/// Creates `config.database` if missing (on every server of `config.cluster`).
pub async fn ensure_database(config: &ClickHouseConfig) -> Result<(), ::clickhouse::error::Error> {
    server_client(config)
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS {}{}",
            config.database,
            on_cluster(config)
        ))
        .execute()
        .await
}

/// ` ON CLUSTER <cluster>` on a cluster, else nothing.
pub fn on_cluster(config: &ClickHouseConfig) -> String {
    if config.cluster.is_empty() {
        String::new()
    } else {
        format!(" ON CLUSTER {}", config.cluster)
    }
}
