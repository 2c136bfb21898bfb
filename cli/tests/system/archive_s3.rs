//! The archive in S3-compatible object storage (a real S3 server: moto, installed by
//! `infra/dev/install.sh --test`): `nerve project` seals every event once and in order below
//! the configured prefix, with its key from a credentials file that never reaches its logs; a
//! replay after the stream expired reads the bucket and gives the live tables; an object
//! altered in the bucket is refused, naming its `s3://` URL.

use nerve_ingest::TELEMETRY_STREAM;
use nerve_ingest::archive::Archive;
use nerve_platform::config::ArchiveConfig;
use nerve_platform::testkit::eventually;

use crate::archive::{expire_telemetry, sealed_through};
use crate::support::{DEADLINE, Env, heartbeat, publish_heartbeat, signal};

const SECRET: &str = "s3-secret-that-must-not-leak";

/// A moto S3 server on a free port, with an empty bucket `nerve-archive`; killed on drop.
struct S3Server {
    _child: tokio::process::Child,
    endpoint: String,
}

impl S3Server {
    async fn start() -> Self {
        let port = nerve_platform::services::free_port().expect("port");
        let mut cmd = tokio::process::Command::new(nerve_platform::services::tools_python());
        nerve_platform::services::die_with_parent(&mut cmd);
        let child = cmd
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto (infra/dev/install.sh --test installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        // moto takes unsigned requests: the bucket is made without the SDK.
        eventually(DEADLINE, "the S3 server up with the bucket", || async {
            let r = http
                .put(format!("{endpoint}/nerve-archive"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        Self {
            _child: child,
            endpoint,
        }
    }

    /// The raw object at `key` of the bucket (unsigned, as moto allows).
    async fn object(&self, key: &str) -> reqwest::Response {
        reqwest::get(format!("{}/nerve-archive/{key}", self.endpoint))
            .await
            .expect("get")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_seals_into_an_s3_bucket_and_a_replay_reads_it_back() {
    let env = Env::start().await;
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let credentials = dir.path().join("s3.toml");
    std::fs::write(
        &credentials,
        format!("access_key_id = \"nerve-archiver\"\nsecret_access_key = \"{SECRET}\"\n"),
    )
    .expect("credentials");
    let staging = dir.path().join("staging");
    let (staging_arg, credentials_arg) = (
        staging.to_str().expect("utf-8"),
        credentials.to_str().expect("utf-8"),
    );
    let archive_env = [
        ("NERVE_ARCHIVE__ENABLED", "true"),
        ("NERVE_ARCHIVE__DIR", staging_arg),
        ("NERVE_ARCHIVE__FILE_SECS", "1"),
        ("NERVE_ARCHIVE__SEAL_GRACE_SECS", "0"),
        ("NERVE_ARCHIVE__S3__BUCKET", "nerve-archive"),
        ("NERVE_ARCHIVE__S3__PREFIX", "fleet-a/archive"),
        ("NERVE_ARCHIVE__S3__ENDPOINT", &s3.endpoint),
        ("NERVE_ARCHIVE__S3__REGION", "us-east-1"),
        ("NERVE_ARCHIVE__S3__CREDENTIALS_FILE", credentials_arg),
    ];
    let log = dir.path().join("project.log");
    let logged_env = [&archive_env[..], &[("RUST_LOG", "info")]].concat();
    let mut project = env.spawn_nerve_logged(&["project"], &logged_env, &log);

    let mut sent = 0;
    let until = std::time::Instant::now() + std::time::Duration::from_millis(2_500);
    while std::time::Instant::now() < until {
        sent += 1;
        for n in 0..4 {
            let hb = heartbeat(&format!("n-{n}"), nerve_platform::now_ms(), sent);
            publish_heartbeat(&env.js, &hb).await;
        }
    }
    let events = sent as u64 * 4;
    let mut config = ArchiveConfig {
        dir: staging.clone(),
        ..ArchiveConfig::default()
    };
    config.s3.bucket = "nerve-archive".into();
    config.s3.prefix = "fleet-a/archive".into();
    config.s3.endpoint = s3.endpoint.clone();
    config.s3.region = "us-east-1".into();
    config.s3.credentials_file = credentials.clone();
    let archive = Archive::configured(&config).expect("the bucket");
    assert_eq!(
        archive.location().display().to_string(),
        "s3://nerve-archive/fleet-a/archive"
    );
    let files = sealed_through(&archive, &env, TELEMETRY_STREAM).await;
    assert!(files.len() >= 2, "one file per second: {files:#?}");

    // Every event once, in order, in objects below the prefix; nothing left in staging but
    // the file being written.
    assert_eq!(files[0].first_seq, 1);
    for pair in files.windows(2) {
        assert_eq!(pair[0].last_seq + 1, pair[1].first_seq, "{pair:#?}");
    }
    let mut seqs = Vec::new();
    for f in &files {
        seqs.extend(
            archive
                .read(f)
                .expect("read")
                .iter()
                .map(|r| r.stream_seq as u64),
        );
        let key = format!("fleet-a/archive/{}", f.file.display());
        let object = s3.object(&key).await;
        assert!(object.status().is_success(), "{key}: {}", object.status());
        assert_eq!(object.bytes().await.expect("body").len() as u64, f.bytes);
    }
    assert_eq!(seqs, (1..=events).collect::<Vec<_>>());
    let scratch = std::fs::read_dir(staging.join(".tmp")).map_or(0, |d| d.count());
    assert!(scratch <= 1, "{scratch} files left in staging");

    // The stream expires everything; a replay reads the bucket and gives the live tables.
    eventually(DEADLINE, "the live tables caught up", || async {
        (env.count("SELECT count() FROM heartbeats").await == events).then_some(())
    })
    .await;
    signal(&mut project, "-TERM").await;
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(!logged.contains(SECRET), "the secret key reached the log");
    assert!(
        logged.contains("s3://nerve-archive/fleet-a/archive"),
        "{logged}"
    );
    expire_telemetry(&env).await;
    let replay = ["replay", "--check", "--tables", "heartbeats"];
    let (ok, out) = env.run_nerve_with(&replay, &archive_env).await;
    assert!(ok && !out.contains("differ"), "{out}");
    assert!(
        out.contains(&format!("heartbeats: {events} events folded")),
        "{out}"
    );
    assert!(!out.contains(SECRET));

    // An object altered in the bucket is refused, naming it.
    let victim = format!("fleet-a/archive/{}", files[1].file.display());
    let mut bytes = s3
        .object(&victim)
        .await
        .bytes()
        .await
        .expect("body")
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let put = reqwest::Client::new()
        .put(format!("{}/nerve-archive/{victim}", s3.endpoint))
        .body(bytes)
        .send()
        .await
        .expect("put");
    assert!(put.status().is_success());
    let (ok, out) = env.run_nerve_with(&replay, &archive_env).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("SHA-256") && out.contains(&format!("s3://nerve-archive/{victim}")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_cannot_be_reached_is_a_clear_error() {
    let env = Env::start().await;
    let port = nerve_platform::services::free_port().expect("port");
    let endpoint = format!("http://127.0.0.1:{port}");
    let archive_env = [
        ("NERVE_ARCHIVE__ENABLED", "true"),
        ("NERVE_ARCHIVE__S3__BUCKET", "nerve-archive"),
        ("NERVE_ARCHIVE__S3__ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "nerve-archiver"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    publish_heartbeat(&env.js, &heartbeat("n-1", nerve_platform::now_ms(), 1)).await;
    let (ok, out) = env
        .run_nerve_with(
            &["replay", "--check", "--tables", "heartbeats"],
            &archive_env,
        )
        .await;
    assert!(!ok, "{out}");
    assert!(out.contains("s3://nerve-archive"), "{out}");
    assert!(!out.contains(SECRET), "{out}");

    let bad = [("NERVE_ARCHIVE__S3__BUCKET", "bucket/with/path")];
    let (ok, out) = env.run_nerve_with(&["replay", "--check"], &bad).await;
    assert!(!ok && out.contains("archive.s3.prefix"), "{out}");
}
