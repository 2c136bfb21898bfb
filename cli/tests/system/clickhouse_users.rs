//! ClickHouse as `nerve dev` runs it: Nerve's password-protected user can do everything Nerve
//! needs (create the tables), the analysts' user can read but not write, and nobody signs in
//! without a password.

use nerve_platform::config::ClickHouseConfig;
use nerve_platform::services::{ClickHouseServer, ClickHouseUsers};

async fn query(url: &str, user: &str, password: &str, sql: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .query(&[("user", user), ("password", password)])
        .body(sql.to_owned())
        .send()
        .await
        .expect("ClickHouse answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nerve_has_its_own_password_and_analysts_only_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let users = ClickHouseUsers::load_or_create(&dir.path().join("passwords")).expect("users");
    let again = ClickHouseUsers::load_or_create(&dir.path().join("passwords")).expect("kept");
    assert_eq!(users, again);
    let ch_dir = dir.path().join("clickhouse");
    let users_for_server = users.clone();
    let mut server = tokio::task::spawn_blocking(move || {
        ClickHouseServer::start_with_users(&ch_dir, None, Some(&users_for_server))
    })
    .await
    .expect("join")
    .expect("ClickHouse with users");
    let url = server.url.clone();

    let config = ClickHouseConfig {
        url: url.clone(),
        database: "nerve_users_test".into(),
        user: "nerve".into(),
        password: users.nerve_password.clone(),
        ..ClickHouseConfig::default()
    };
    nerve_projections::ensure_tables(&config)
        .await
        .expect("Nerve's user creates every table");

    let (status, _) = query(&url, "default", "", "SELECT 1").await;
    assert_ne!(status, 200, "the default user signed in without a password");
    let (status, _) = query(&url, "nerve", "wrong", "SELECT 1").await;
    assert_ne!(status, 200, "a wrong password was accepted");

    let analyst = &users.analyst_password;
    let (status, body) = query(
        &url,
        "analyst",
        analyst,
        "SELECT count() FROM nerve_users_test.heartbeats",
    )
    .await;
    assert_eq!((status, body.trim()), (200, "0"));
    let (status, body) = query(
        &url,
        "analyst",
        analyst,
        "CREATE TABLE nerve_users_test.scratch (x UInt8) ENGINE = Memory",
    )
    .await;
    assert_ne!(status, 200, "the analyst created a table: {body}");
    assert!(body.contains("readonly"), "{body}");

    tokio::task::spawn_blocking(move || server.stop(std::time::Duration::from_secs(10)))
        .await
        .expect("stop");
}
