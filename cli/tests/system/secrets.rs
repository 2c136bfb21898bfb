//! Secrets at rest: a channel's secret and URL are sealed before they enter the event log, so
//! no stream's bytes and no table hold them; the API lists the channel without them; a sealed
//! SMTP password from `nerve secret seal` opens only with the key and for its context.

use axum::http::Method;
use futures::StreamExt;
use nerve_platform::secrets::Sealer;
use nerve_platform::testkit::eventually;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{DEADLINE, Env, call, stored_messages};

const SECRET: &str = "PLUGH-hmac-secret";
const URL_PATH: &str = "XYZZY-webhook-path";

/// Every message of every stream, as raw bytes.
async fn every_stream_message(env: &Env) -> Vec<(String, bytes::Bytes)> {
    let names: Vec<String> = env
        .js
        .stream_names()
        .map(|n| n.expect("stream name"))
        .collect()
        .await;
    let mut all = Vec::new();
    for name in names {
        for (_, payload) in stored_messages(&env.js, &name, None).await {
            all.push((name.clone(), payload));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channel_secret_is_in_any_stream_or_table() {
    let env = Env::start().await;
    let cancel = CancellationToken::new();
    let metrics = nerve_platform::metrics::Registry::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let api = env.app().await;
    let (status, body) = call(
        &api,
        Method::POST,
        "/api/v1/channels",
        json!({"name": "ops", "kind": "webhook",
               "url": format!("http://127.0.0.1:9/{URL_PATH}"), "secret": SECRET}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    eventually(DEADLINE, "the channel projected", || async {
        (env.count("SELECT count() FROM channels").await == 1).then_some(())
    })
    .await;

    // Listed without either.
    let (_, list) = call(&api, Method::GET, "/api/v1/channels", Value::Null).await;
    let listed = list.to_string();
    assert!(
        !listed.contains(SECRET) && !listed.contains(URL_PATH),
        "{listed}"
    );
    assert_eq!(list["channels"][0]["url"], "http://127.0.0.1:9/…", "{list}");
    assert_eq!(list["channels"][0]["has_secret"], true);

    // In no stream's bytes.
    let messages = every_stream_message(&env).await;
    assert!(
        messages
            .iter()
            .any(|(s, _)| s == nerve_ingest::CONTROL_STREAM)
    );
    for (stream, bytes) in &messages {
        for needle in [SECRET, URL_PATH] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in a message of {stream}"
            );
        }
    }

    // In no table.
    let tables: Vec<String> = env
        .ch
        .query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        .fetch_all()
        .await
        .expect("tables");
    assert!(tables.len() > 10, "{tables:?}");
    let http = reqwest::Client::new();
    for table in &tables {
        let dump = http
            .post(&env.config.clickhouse.url)
            .query(&[("database", env.config.clickhouse.database.as_str())])
            .body(format!("SELECT * FROM {table} FORMAT TabSeparated"))
            .send()
            .await
            .expect("dump")
            .text()
            .await
            .expect("text");
        assert!(
            !dump.contains(SECRET) && !dump.contains(URL_PATH),
            "a secret in table {table}"
        );
    }

    // A sealed SMTP password: made by the CLI, opened with the key, for its context only.
    let mut seal = std::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(["secret", "seal", "--context", "alerts.smtp.password"])
        .envs(env.child_env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("nerve secret seal");
    std::io::Write::write_all(&mut seal.stdin.take().expect("stdin"), b"smtp-pw\n").expect("write");
    let out = seal.wait_with_output().expect("sealed");
    assert!(out.status.success());
    let sealed = String::from_utf8(out.stdout).expect("utf8");
    assert!(sealed.starts_with("sealed:v1:") && !sealed.contains("smtp-pw"));
    let sealer = Sealer::load(&env.config.alerts.secrets_key_file).expect("key");
    assert_eq!(
        sealer
            .open(sealed.trim(), "alerts.smtp.password")
            .expect("opens"),
        "smtp-pw"
    );
    assert!(sealer.open(sealed.trim(), "something.else").is_err());

    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
}
