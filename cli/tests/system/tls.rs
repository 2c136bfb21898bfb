//! TLS on: the API answers only HTTPS with its certificate, NATS only TLS; a client that trusts
//! another CA is refused by both, and plain HTTP or plain NATS gets nowhere.

use nerve_platform::config::NatsConfig;
use nerve_platform::services::{NatsOptions, NatsServer};
use nerve_platform::tls::LocalTls;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::support::Env;

fn https_client(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_on_plain_and_foreign_ca_clients_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let ours = LocalTls::ensure(&dir.path().join("ours")).expect("our CA");
    let theirs = LocalTls::ensure(&dir.path().join("theirs")).expect("another CA");

    // NATS: a plain client is told TLS is required; ours connects, theirs does not.
    let options = NatsOptions {
        tls: Some((ours.cert_file.clone(), ours.key_file.clone())),
        ..NatsOptions::default()
    };
    let nats = NatsServer::start_with(&dir.path().join("nats"), None, &options).expect("nats");
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", nats.port))
        .await
        .expect("tcp");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let info = lines.next_line().await.expect("read").expect("INFO");
    assert!(info.contains("\"tls_required\":true"), "{info}");
    write
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .await
        .expect("write");
    // The server expects a TLS handshake: it closes the connection (or says why) — never PONG.
    let answer = lines.next_line().await.ok().flatten().unwrap_or_default();
    assert!(
        answer.is_empty() || answer.starts_with("-ERR"),
        "plain NATS answered {answer:?}"
    );
    let config = |ca: &LocalTls| NatsConfig {
        url: nats.url.clone(),
        tls_ca_file: ca.ca_file.clone(),
        ..NatsConfig::default()
    };
    let client = nerve_ingest::connect(&config(&ours), nerve_ingest::Who::Role("tls-test"), false)
        .await
        .expect("a client trusting our CA connects");
    client.flush().await.expect("round trip");
    assert!(
        nerve_ingest::connect(&config(&theirs), nerve_ingest::Who::Role("tls-test"), false)
            .await
            .is_err(),
        "a client trusting another CA connected"
    );

    // The API: HTTPS with our CA works; plain HTTP and another CA do not.
    let env = Env::start().await;
    let api = env.app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cancel = CancellationToken::new();
    let server = {
        let (app, cancel, ours) = (api.router.clone(), cancel.clone(), ours.clone());
        tokio::spawn(async move {
            nerve_api::serve_tls(listener, app, cancel, &ours.cert_file, &ours.key_file).await
        })
    };
    let me = https_client(&ours.ca_file)
        .get(format!("https://localhost:{}/api/v1/me", addr.port()))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("HTTPS with our CA");
    assert_eq!(me.status(), 200);
    let by_ip = https_client(&ours.ca_file)
        .get(format!("https://127.0.0.1:{}/api/v1/health", addr.port()))
        .send()
        .await
        .expect("the certificate names 127.0.0.1 too");
    assert!(by_ip.status().is_success() || by_ip.status() == 503);
    assert!(
        reqwest::get(format!("http://127.0.0.1:{}/api/v1/health", addr.port()))
            .await
            .is_err(),
        "plain HTTP was answered"
    );
    assert!(
        https_client(&theirs.ca_file)
            .get(format!("https://localhost:{}/api/v1/health", addr.port()))
            .send()
            .await
            .is_err(),
        "a client trusting another CA was answered"
    );
    cancel.cancel();
    server.await.expect("join").expect("served");
}

/// The console's sign-in answer: the session cookie's attributes, or none.
async fn sign_in(api: &crate::support::Api, token: &str) -> Option<String> {
    use tower::ServiceExt as _;
    let app = nerve_ui::server::app(api.state.clone(), std::path::Path::new("site"));
    let request = axum::http::Request::post("/ui-api/login")
        .header("host", "console.test")
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            serde_json::json!({ "token": token }).to_string(),
        ))
        .expect("request");
    let response = app.oneshot(request).await.expect("answer");
    response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().expect("ascii").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_secure_over_tls_and_only_an_operator_token_signs_in() {
    let env = Env::start().await;
    let mut config = env.config.api.clone();
    config.tls_cert_file = env.state_dir.path().join("cert.pem");
    let api = env
        .app_with(config, nerve_platform::metrics::Registry::new())
        .await;
    let cookie = sign_in(&api, &api.token).await.expect("signed in");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let plain = env.app().await;
    let cookie = sign_in(&plain, &plain.token).await.expect("signed in");
    assert!(
        !cookie.contains("Secure"),
        "Secure over plain HTTP: {cookie}"
    );

    // An enrollment token is no operator's: it does not sign in to the console.
    let by = nerve_api::dto::auth::Identity {
        token_id: "t".into(),
        name: "admin".into(),
        role: nerve_api::dto::auth::Role::Admin,
    };
    let minted = nerve_api::auth::token::mint(None);
    let event = nerve_schemas::EnrollmentIssued {
        envelope: nerve_schemas::Envelope::new::<nerve_schemas::EnrollmentIssued>(
            &minted.id,
            nerve_platform::now_ms(),
        ),
        enrollment_id: minted.id.clone(),
        name: "rack".into(),
        secret_sha256: nerve_api::auth::token::hex(&minted.secret_sha256),
        uses: 1,
        expires_at_ms: nerve_platform::now_ms() + 60_000,
        issued_by: by.who(),
    };
    // Folded as every instance folds it from the auth stream.
    plain
        .state
        .keyring()
        .apply(&nerve_schemas::AuthEvent::EnrollmentIssued(event));
    assert!(
        sign_in(&plain, &minted.token).await.is_none(),
        "an enrollment token signed in"
    );
}
