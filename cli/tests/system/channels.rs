//! Notification channels against a real local HTTP receiver: a webhook's test message arrives
//! signed (HMAC-SHA256 of the body), a 500 is retried and the retry delivered, a 4xx is not
//! retried, a Slack channel gets Slack's format; every attempt is in the control log and
//! ClickHouse; invalid channels are 400 naming each bad field; the secret is never returned.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode};
use nerve_platform::testkit::eventually;
use serde_json::{Value, json};

use crate::support::{DEADLINE, Env, call, signal};

/// What the receiver saw: (path, signature header, body).
type Seen = Arc<Mutex<Vec<(String, Option<String>, Vec<u8>)>>>;

/// A local HTTP receiver: `/flaky` answers 500 to its first request and 200 after; `/gone`
/// answers 410; `/slack` 200.
async fn receiver() -> (String, Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let record = |path: &'static str, seen: Seen| {
        move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let sig = headers
                    .get("x-nerve-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let mut s = seen.lock().expect("lock");
                s.push((path.to_owned(), sig, body.to_vec()));
                let earlier = s.iter().filter(|(p, _, _)| p == path).count();
                match path {
                    "/flaky" if earlier == 1 => StatusCode::INTERNAL_SERVER_ERROR,
                    "/gone" => StatusCode::GONE,
                    _ => StatusCode::OK,
                }
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/flaky",
            axum::routing::post(record("/flaky", seen.clone())),
        )
        .route("/gone", axum::routing::post(record("/gone", seen.clone())))
        .route(
            "/slack",
            axum::routing::post(record("/slack", seen.clone())),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("receiver");
    });
    (base, seen, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_slack_channels_deliver_signed_and_retried() {
    let env = Env::start().await;
    let mut project = env.spawn_nerve(&["project"]);
    let app = env.app().await;
    let (base, seen, _server) = receiver().await;

    // Invalid channels name every bad field.
    let (status, err) = call(
        &app,
        Method::POST,
        "/api/v1/channels",
        json!({"name": "bad name", "kind": "webhook", "url": "ftp://x"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = err["error"]["message"].as_str().unwrap_or_default();
    for field in ["name:", "url:"] {
        assert!(msg.contains(field), "{msg}");
    }
    let (status, err) = call(
        &app,
        Method::POST,
        "/api/v1/channels",
        json!({"name": "pager", "kind": "pager", "url": "http://x/"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("kind:")
    );

    for body in [
        json!({"name": "ops-hook", "kind": "webhook", "url": format!("{base}/flaky"), "secret": "s3cret"}),
        json!({"name": "gone-hook", "kind": "webhook", "url": format!("{base}/gone")}),
        json!({"name": "team-slack", "kind": "slack", "url": format!("{base}/slack")}),
    ] {
        let (status, json) = call(&app, Method::POST, "/api/v1/channels", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    }
    let list = eventually(DEADLINE, "three channels", || async {
        let (_, l) = call(&app, Method::GET, "/api/v1/channels", Value::Null).await;
        (l["channels"].as_array().map_or(0, |c| c.len()) == 3).then_some(l)
    })
    .await;
    assert!(
        !list.to_string().contains("s3cret"),
        "the secret leaked: {list}"
    );
    let ops = list["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "ops-hook"))
        .expect("ops-hook");
    assert_eq!(ops["has_secret"], true);
    let ops_id = ops["channel_id"].as_str().expect("id").to_owned();

    // The webhook: a 500, then delivered on the retry, signed.
    let (status, report) = call(
        &app,
        Method::POST,
        "/api/v1/channels/ops-hook/test",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["delivered"], true);
    let codes: Vec<Value> = report["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["http_status"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(200)]);
    {
        let seen = seen.lock().expect("lock");
        let flaky: Vec<_> = seen.iter().filter(|(p, _, _)| p == "/flaky").collect();
        assert_eq!(flaky.len(), 2);
        for (_, sig, body) in flaky {
            assert_eq!(
                sig.as_deref(),
                Some(nerve_alerts::notify::signature("s3cret", body).as_str())
            );
            let json: Value = serde_json::from_slice(body).expect("json body");
            assert!(
                json["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("ops-hook")
            );
        }
    }

    // A 4xx is final: one attempt, not delivered. Slack gets `text`.
    let (_, report) = call(
        &app,
        Method::POST,
        "/api/v1/channels/gone-hook/test",
        Value::Null,
    )
    .await;
    assert_eq!(
        (
            report["delivered"].clone(),
            report["attempts"].as_array().map(Vec::len)
        ),
        (json!(false), Some(1))
    );
    let (_, report) = call(
        &app,
        Method::POST,
        "/api/v1/channels/team-slack/test",
        Value::Null,
    )
    .await;
    assert_eq!(report["delivered"], true);
    {
        let seen = seen.lock().expect("lock");
        let (_, sig, body) = seen.iter().find(|(p, _, _)| p == "/slack").expect("slack");
        assert_eq!(sig, &None);
        let json: Value = serde_json::from_slice(body).expect("json");
        assert!(
            json["text"]
                .as_str()
                .unwrap_or_default()
                .contains("team-slack")
        );
    }

    // Every attempt is recorded.
    eventually(DEADLINE, "the attempts in ClickHouse", || async {
        let rows: Vec<(u32, u8)> = env
            .ch
            .query("SELECT attempt, ok FROM notification_attempts WHERE channel_id = ? ORDER BY attempt")
            .bind(&ops_id)
            .fetch_all()
            .await
            .ok()?;
        (rows == [(1, 0), (2, 1)]).then_some(())
    })
    .await;

    // Delete.
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/api/v1/channels/gone-hook",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually(DEADLINE, "two channels left", || async {
        let (_, l) = call(&app, Method::GET, "/api/v1/channels", Value::Null).await;
        (l["channels"].as_array().map_or(0, |c| c.len()) == 2).then_some(())
    })
    .await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/channels/gone-hook/test",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    signal(&mut project, "-TERM").await;
}

/// An email channel delivers through the configured SMTP relay: a real SMTP server (aiosmtpd,
/// installed by `infra/dev/install.sh --test`) writes what it receives into a maildir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_channel_delivers_through_the_smtp_relay() {
    let mut env = Env::start().await;
    let mut project = env.spawn_nerve(&["project"]);
    let port = nerve_platform::services::free_port().expect("port");
    let maildir = tempfile::tempdir().expect("maildir");
    let python = nerve_platform::services::tools_python();
    let mut smtp = tokio::process::Command::new(&python);
    nerve_platform::services::die_with_parent(&mut smtp);
    let mut smtp = smtp
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir.path().join("box"))
        .kill_on_drop(true)
        .spawn()
        .expect("aiosmtpd (infra/dev/install.sh --test installs it)");
    eventually(DEADLINE, "the SMTP server listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;

    env.config.alerts.smtp.host = "127.0.0.1".into();
    env.config.alerts.smtp.port = port;
    env.config.alerts.smtp.starttls = false; // the test server speaks plain SMTP
    env.config.alerts.smtp.from = "nerve@example.com".into();
    let app = env.app().await;
    let (status, json) = call(
        &app,
        Method::POST,
        "/api/v1/channels",
        json!({"name": "oncall-mail", "kind": "email", "url": "mailto:oncall@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let report = eventually(DEADLINE, "the channel, then a delivered test", || async {
        let (status, r) = call(
            &app,
            Method::POST,
            "/api/v1/channels/oncall-mail/test",
            Value::Null,
        )
        .await;
        (status == StatusCode::OK).then_some(r)
    })
    .await;
    assert_eq!(report["delivered"], true, "{report}");
    assert_eq!(report["attempts"][0]["http_status"], 250, "SMTP 250 OK");
    let new = maildir.path().join("box/new");
    let mail = eventually(DEADLINE, "the message in the maildir", || async {
        let entry = std::fs::read_dir(&new).ok()?.flatten().next()?;
        std::fs::read_to_string(entry.path()).ok()
    })
    .await;
    assert!(mail.contains("To: oncall@example.com"), "{mail}");
    assert!(
        mail.contains("Subject: Nerve test message for channel oncall-mail"),
        "{mail}"
    );

    smtp.kill().await.expect("stop smtp");
    signal(&mut project, "-TERM").await;
}
