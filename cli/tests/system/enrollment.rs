//! Nodes' own NATS credentials against a nats-server with decentralized JWT auth: anonymous
//! clients are refused; a real agent enrolls with a single-use token (which then works no
//! more; an expired or revoked one never does) and its heartbeats are stored; with its credentials a
//! client cannot publish on another node's subjects or hear its dispatch, and none of it
//! reaches ClickHouse; a revoked node is dropped and kept out within 5 s; credentials renewed
//! before they expire lose no heartbeat.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nerve_api::auth::enroll::{self, NodeTrust};
use nerve_api::dto::auth::{CreateEnrollment, Identity, Role};
use nerve_ingest::node_key::NodeKey;
use nerve_platform::testkit::eventually;
use nerve_schemas::subjects;
use tokio_util::sync::CancellationToken;

use crate::support::{DEADLINE, Env, heartbeat, stored_messages};

/// The API with enrollment on, served on a real socket (agents enroll over HTTP).
pub(crate) struct Served {
    pub state: nerve_api::AppState,
    pub url: String,
    _stop: tokio_util::sync::DropGuard,
}

pub(crate) async fn serve(env: &Env, api: nerve_platform::config::ApiConfig) -> Served {
    let app = env
        .app_with(api.clone(), nerve_platform::metrics::Registry::new())
        .await;
    let trust = NodeTrust::connect(
        &env.config.nats,
        &api.nats_authority_dir,
        env.signer().public_key(),
    )
    .await
    .expect("NATS authority");
    app.state.set_trust(trust);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    tokio::spawn(nerve_api::serve(listener, app.router.clone(), stop.clone()));
    Served {
        state: app.state,
        url,
        _stop: stop.drop_guard(),
    }
}

fn admin() -> Identity {
    Identity {
        token_id: "t-admin".into(),
        name: "admin".into(),
        role: Role::Admin,
    }
}

pub(crate) async fn enrollment(served: &Served, uses: u32, ttl_secs: u64) -> String {
    enroll::create(
        &served.state,
        &admin(),
        CreateEnrollment {
            name: "rack 1".into(),
            uses: Some(uses),
            ttl_secs: Some(ttl_secs),
        },
    )
    .await
    .expect("enrollment token")
    .token
}

/// `POST /api/v1/enroll` for a fresh key of `node`: the status.
async fn try_enroll(served: &Served, token: &str, node: &str) -> u16 {
    let proof = nerve_ingest::node_key::prove(&nkeys::KeyPair::new_user(), "enroll", node);
    reqwest::Client::new()
        .post(format!("{}/api/v1/enroll", served.url))
        .bearer_auth(token)
        .json(&proof)
        .send()
        .await
        .expect("API")
        .status()
        .as_u16()
}

/// A connection with node credentials, collecting every error the server sends it.
async fn connect_as(
    env: &Env,
    node: &str,
    key: &NodeKey,
) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let client = key
        .connect_options()
        .custom_inbox_prefix(nerve_ingest::inbox::node(node))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    seen.lock().expect("lock").push(e.to_string());
                }
            }
        })
        .connect(env.nats.url())
        .await
        .expect("a node's credentials connect");
    (client, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_agent_publishes_only_as_itself_and_a_revoked_node_is_kept_out() {
    let env = Env::start_secured().await;
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&nerve_platform::metrics::Registry::new(), &cancel);
    let served = serve(&env, env.config.api.clone()).await;

    let anonymous = async_nats::connect(env.nats.url()).await;
    assert!(anonymous.is_err(), "an anonymous client is refused");

    // A real agent enrolls with a single-use token; its heartbeats are stored.
    let token = enrollment(&served, 1, 600).await;
    let mut agent = env.spawn_nerve(&["agent", "--enroll", &token, "--api", &served.url]);
    let a = env
        .agent_node_with_heartbeats(2, "the enrolled agent's heartbeats")
        .await;
    assert_eq!(
        try_enroll(&served, &token, "another").await,
        401,
        "a used token"
    );
    let revoked = enrollment(&served, 5, 600).await;
    let id = revoked["nerve_".len()..]
        .split('_')
        .next()
        .expect("id")
        .to_owned();
    enroll::revoke_enrollment(&served.state, &admin(), &id)
        .await
        .expect("revoke the token");
    assert_eq!(
        try_enroll(&served, &revoked, "third").await,
        401,
        "a revoked token"
    );
    let short = enrollment(&served, 5, 1).await;
    eventually(DEADLINE, "an expired token refused", || async {
        (try_enroll(&served, &short, "late").await == 401).then_some(())
    })
    .await;
    let state_of = |node: &str| {
        enroll::credentials(&served.state)
            .into_iter()
            .find(|c| c.node_id == node)
            .map(|c| c.state)
    };
    assert_eq!(state_of(&a).as_deref(), Some("active"));
    assert_eq!(state_of("another"), None);

    // With A's own credentials: every publish as B and a subscription to B's dispatch are
    // refused by the server.
    let key = NodeKey::load(&env.state_dir.path().join("agent"))
        .expect("state dir")
        .expect("enrolled");
    let (client, errors) = connect_as(&env, &a, &key).await;
    let b = "node-b";
    let forged = heartbeat(b, nerve_platform::now_ms(), 0);
    let bytes = nerve_schemas::encode(&forged).expect("encode");
    for subject in [
        subjects::heartbeat(b),
        subjects::inventory(b),
        subjects::gpu_xid(b),
        subjects::task_node(b),
        subjects::control_node(b),
    ] {
        client
            .publish(subject, bytes.clone().into())
            .await
            .expect("sent");
    }
    let _sub = client.subscribe(subjects::dispatch(b)).await.expect("sent");
    client.flush().await.expect("flush");
    let refused = eventually(DEADLINE, "six permission violations", || async {
        let seen = errors.lock().expect("lock").clone();
        (seen.len() >= 6).then_some(seen)
    })
    .await;
    assert_eq!(
        refused
            .iter()
            .filter(|e| e.contains("Permissions Violation"))
            .count(),
        6,
        "{refused:?}"
    );
    // A's own heartbeat, sent after, is stored: the forged ones before it never were.
    let own = heartbeat(&a, nerve_platform::now_ms(), 1_000_000);
    let js = async_nats::jetstream::new(client.clone());
    nerve_ingest::publish(&js, subjects::heartbeat(&a), &own)
        .await
        .expect("A publishes as itself");
    eventually(DEADLINE, "A's own heartbeat stored", || async {
        let sql = format!("SELECT count() FROM heartbeats WHERE node_id = '{a}' AND seq = 1000000");
        (env.count(&sql).await == 1).then_some(())
    })
    .await;
    let sql = format!("SELECT count() FROM heartbeats WHERE node_id = '{b}'");
    assert_eq!(env.count(&sql).await, 0);
    for stream in [
        nerve_ingest::TELEMETRY_STREAM,
        nerve_ingest::INVENTORY_STREAM,
        nerve_ingest::EVENTS_STREAM,
        nerve_ingest::TASKS_STREAM,
        nerve_ingest::CONTROL_STREAM,
    ] {
        let stored = stored_messages(&env.js, stream, None).await;
        assert!(
            stored.iter().all(|(subject, _)| !subject.ends_with(b)),
            "{stream} holds a message as {b}"
        );
    }

    // Revoked: dropped within 5 s, and refused when it comes back.
    enroll::revoke(&served.state, &admin(), &a)
        .await
        .expect("revoked");
    eventually(
        Duration::from_secs(5),
        "the revoked node disconnected",
        || async {
            (client.connection_state() != async_nats::connection::State::Connected).then_some(())
        },
    )
    .await;
    let again = key
        .connect_options()
        .custom_inbox_prefix(nerve_ingest::inbox::node(&a))
        .connect(env.nats.url())
        .await;
    assert!(again.is_err(), "a revoked node cannot reconnect");
    assert_eq!(state_of(&a).as_deref(), Some("revoked"));
    // Nor renew its credentials.
    let status = reqwest::Client::new()
        .post(format!("{}/api/v1/credentials/renew", served.url))
        .json(&key.prove("renew", &a))
        .send()
        .await
        .expect("API")
        .status();
    assert_eq!(status.as_u16(), 403);
    let _ = agent.kill().await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_renewed_before_they_expire_lose_no_heartbeat() {
    let env = Env::start_secured().await;
    let cancel = CancellationToken::new();
    let _projectors = env.spawn_projectors(&nerve_platform::metrics::Registry::new(), &cancel);
    let mut api = env.config.api.clone();
    // Credentials good for 6 s: renewed every 4 s; without renewal the server would drop the
    // agent at 6 s.
    api.node_credentials_ttl_secs = 6;
    let served = serve(&env, api).await;
    let token = enrollment(&served, 1, 600).await;
    let mut agent = env.spawn_nerve(&["agent", "--enroll", &token, "--api", &served.url]);
    let node = env
        .agent_node_with_heartbeats(1, "the agent's first heartbeat")
        .await;
    eventually(Duration::from_secs(60), "two renewals", || async {
        let listed = enroll::credentials(&served.state);
        (listed.iter().find(|c| c.node_id == node)?.renewals >= 2).then_some(())
    })
    .await;
    // The agent goes on beating past its first credentials' expiry (6 s).
    let sql = format!("SELECT max(seq) FROM heartbeats WHERE node_id = '{node}'");
    let last = eventually(
        Duration::from_secs(60),
        "heartbeats after the renewals",
        || async {
            let max = env.ch.query(&sql).fetch_one::<i64>().await.expect("max");
            (max >= 12).then_some(max)
        },
    )
    .await;
    // Every heartbeat up to then is stored, once: none was lost across the reconnections.
    let sql = format!(
        "SELECT count(), uniqExact(seq) FROM heartbeats WHERE node_id = '{node}' AND seq <= {last}"
    );
    let (rows, distinct) = eventually(DEADLINE, "every heartbeat stored", || async {
        let (rows, distinct) = env
            .ch
            .query(&sql)
            .fetch_one::<(u64, u64)>()
            .await
            .expect("count");
        (distinct == (last + 1) as u64).then_some((rows, distinct))
    })
    .await;
    assert_eq!(rows, distinct, "no heartbeat stored twice");
    let status = agent.try_wait().expect("agent");
    assert!(status.is_none(), "the agent kept running: {status:?}");
    let _ = agent.kill().await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nerve_authority_init_writes_a_config_nats_server_takes_and_working_role_credentials() {
    let dir = tempfile::tempdir().expect("tmp");
    let authority = dir.path().join("authority");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(["authority", "init"])
        .arg(&authority)
        .arg("--resolver-dir")
        .arg(dir.path().join("jwt"))
        .output()
        .expect("run nerve");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = authority.join("nats-auth.conf");
    let nats =
        nerve_platform::testkit::TestNats::start_with(|_| nerve_platform::services::NatsOptions {
            auth: Some(std::fs::read_to_string(&conf).expect("nats-auth.conf")),
            ..Default::default()
        });
    assert!(
        async_nats::connect(nats.url()).await.is_err(),
        "anonymous refused"
    );
    for role in ["project", "serve"] {
        let creds = authority.join(format!("{role}.creds"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&creds).expect("creds").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{role}");
        let config = nerve_platform::config::NatsConfig {
            url: nats.url(),
            credentials_file: Some(creds),
            ..Default::default()
        };
        let client = nerve_ingest::connect(&config, nerve_ingest::Who::Role(role), false)
            .await
            .expect("a role's credentials connect");
        let js = async_nats::jetstream::new(client);
        nerve_ingest::ensure_streams(&js, &nerve_platform::config::StreamsConfig::default())
            .await
            .expect("a role sets the streams up");
        // Neither role may destroy the log.
        assert!(
            js.delete_stream(nerve_ingest::TELEMETRY_STREAM)
                .await
                .is_err()
        );
    }
}
