//! `nerve-loadtest enroll`: N nodes enrolling at once through a real API over HTTPS, on a
//! nats-server with JWT auth and TLS (local CA): enrollments per minute and each call's latency
//! — every call a proof check, one use of a single N-use token spent by compare-and-set, a JWT
//! signed, two events and an audit entry acked by JetStream — then the first `--connect` of
//! them connecting over TLS with their own credentials and publishing a heartbeat each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use nerve_api::auth::enroll;
use nerve_api::dto::auth::{CreateEnrollment, Identity, Role};
use nerve_ingest::authority::{Authority, Grant};
use nerve_ingest::node_key::{Credentials, prove};
use nerve_platform::metrics::Registry;
use nerve_platform::services::NatsOptions;
use nkeys::KeyPair;
use tokio_util::sync::CancellationToken;

use crate::probe::quantile;
use crate::services::{Services, Target};

#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    /// Nodes that enroll (all with one enrollment token of this many uses).
    #[arg(long, default_value_t = 5000)]
    pub nodes: u32,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Of the enrolled nodes, how many then connect (TLS, own credentials) and publish.
    #[arg(long, default_value_t = 1000)]
    pub connect: u32,
}

type Enrolled = (f64, String, KeyPair, Credentials);

pub async fn run(args: EnrollArgs) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("nerve-enroll-").tempdir()?;
    let tls = nerve_platform::tls::LocalTls::ensure(&tmp.path().join("tls"))?;
    let authority_dir = tmp.path().join("authority");
    let authority = Authority::load_or_create(&authority_dir)?;
    let creds = tmp.path().join("admin.creds");
    nerve_ingest::keys::write_private(&creds, &authority.role_creds("admin", &Grant::all())?)?;
    let target = Target {
        nats_credentials: Some(creds),
        nats_tls_ca: Some(tls.ca_file.clone()),
        ..Target::private(10_000, 100)
    };
    let services = Services::start_with(
        target,
        NatsOptions {
            auth: Some(authority.server_config(&tmp.path().join("jwt"))?),
            tls: Some((tls.cert_file.clone(), tls.key_file.clone())),
            ..NatsOptions::default()
        },
    )
    .await?;
    let mut api = services.config.api.clone();
    api.nats_authority_dir = authority_dir.clone();
    let state = nerve_api::AppState::new(
        services.ch.clone(),
        Some(services.client.clone()),
        api,
        services.config.alerts.clone(),
        Registry::new(),
    );
    let dispatch = nerve_ingest::offer::OfferSigner::generate().public_key();
    let trust = enroll::NodeTrust::connect(&services.config.nats, &authority_dir, dispatch)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    state.set_trust(trust);
    state.keyring().ready().await;
    let admin = Identity {
        token_id: "loadtest".into(),
        name: "loadtest".into(),
        role: Role::Admin,
    };
    let token = enroll::create(
        &state,
        &admin,
        CreateEnrollment {
            name: "loadtest".into(),
            uses: Some(args.nodes),
            ttl_secs: Some(3600),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("enrollment token: {e}"))?
    .token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    let cancel = CancellationToken::new();
    {
        let (router, cancel) = (nerve_api::router(state.clone()), cancel.clone());
        let (cert, key) = (tls.cert_file.clone(), tls.key_file.clone());
        tokio::spawn(
            async move { nerve_api::serve_tls(listener, router, cancel, &cert, &key).await },
        );
    }
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            &tls.ca_file,
        )?)?)
        .timeout(Duration::from_secs(30))
        .build()?;

    println!(
        "enroll: {} nodes, {} at once, one token, API over HTTPS, NATS with JWT auth and TLS",
        args.nodes, args.concurrency
    );
    let started = Instant::now();
    let results: Vec<anyhow::Result<Enrolled>> = futures::stream::iter(0..args.nodes)
        .map(|i| {
            let (http, url, token) = (&http, &url, &token);
            async move {
                let node = format!("enr-{i:06}");
                let key = KeyPair::new_user();
                let proof = prove(&key, "enroll", &node);
                let t = Instant::now();
                let response = http
                    .post(format!("{url}/api/v1/enroll"))
                    .bearer_auth(token)
                    .json(&proof)
                    .send()
                    .await?;
                anyhow::ensure!(response.status().is_success(), "{}", response.status());
                let credentials: Credentials = response.json().await?;
                Ok((t.elapsed().as_secs_f64() * 1000.0, node, key, credentials))
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut enrolled = Vec::new();
    let mut failures = 0usize;
    for r in results {
        match r {
            Ok(ok) => enrolled.push(ok),
            Err(e) => {
                if failures < 5 {
                    eprintln!("enroll: {e}");
                }
                failures += 1;
            }
        }
    }
    let mut latencies: Vec<f64> = enrolled.iter().map(|(ms, ..)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    let listed = enroll::credentials(&state).len();
    let ms = |q: f64| quantile(&latencies, q).unwrap_or(0.0);
    println!(
        "enrolled {} ({} failed) in {:.2} s: {:.0} enrollments/min; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} nodes listed with credentials",
        enrolled.len(),
        failures,
        elapsed.as_secs_f64(),
        enrolled.len() as f64 / elapsed.as_secs_f64() * 60.0,
        ms(0.50),
        ms(0.99),
        latencies.last().copied().unwrap_or(0.0),
        listed,
    );
    // One more with the used-up token: refused.
    let extra = prove(&KeyPair::new_user(), "enroll", "enr-extra");
    let status = http
        .post(format!("{url}/api/v1/enroll"))
        .bearer_auth(&token)
        .json(&extra)
        .send()
        .await?
        .status();
    println!("one more enrollment with the used-up token: {status}");

    // Connect the first `--connect` of them with their own credentials and publish.
    let nats_url = services.config.nats.url.clone();
    let started = Instant::now();
    let count = (args.connect as usize).min(enrolled.len());
    let connected: Vec<anyhow::Result<async_nats::Client>> =
        futures::stream::iter(enrolled.into_iter().take(count))
            .map(|(_, node, key, credentials)| {
                let (nats_url, ca) = (nats_url.clone(), tls.ca_file.clone());
                async move {
                    let key = Arc::new(key);
                    let client =
                        async_nats::ConnectOptions::with_jwt(credentials.jwt, move |nonce| {
                            let key = key.clone();
                            async move {
                                key.sign(&nonce)
                                    .map_err(|e| async_nats::AuthError::new(e.to_string()))
                            }
                        })
                        .custom_inbox_prefix(nerve_ingest::inbox::node(&node))
                        .require_tls(true)
                        .add_root_certificates(ca)
                        .connect(&nats_url)
                        .await
                        .context("connect")?;
                    let js = async_nats::jetstream::new(client.clone());
                    let beat = crate::sim::heartbeat(&node, 0, nerve_platform::now_ms());
                    nerve_ingest::publish(&js, nerve_schemas::subjects::heartbeat(&node), &beat)
                        .await
                        .context("publish")?;
                    Ok(client)
                }
            })
            .buffer_unordered(256)
            .collect()
            .await;
    let ok = connected.iter().filter(|c| c.is_ok()).count();
    if let Some(Err(e)) = connected.iter().find(|c| c.is_err()) {
        eprintln!("connect: {e:#}");
    }
    println!(
        "{ok} of {count} enrolled nodes connected over TLS with their own credentials and had a heartbeat acked in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    cancel.cancel();
    Ok(())
}
