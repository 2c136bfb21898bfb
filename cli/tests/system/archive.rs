//! The archive: `nerve project` seals every stream's events into Avro files (1 s spans here)
//! exactly once and in order; a reader that is not Rust (Python's fastavro) reads them; a file
//! whose checksum is wrong is refused by a replay; after the stream has expired every event,
//! a replay from the archive still gives identical tables — and without it, a clear error.

use std::path::Path;

use nerve_ingest::archive::{Archive, Sealed};
use nerve_ingest::{CONTROL_STREAM, TELEMETRY_STREAM};
use nerve_platform::testkit::eventually;

use crate::support::{DEADLINE, Env, heartbeat, publish_heartbeat, signal};

/// Every event of `stream` sealed: the manifest once it covers the stream's last sequence.
pub(crate) async fn sealed_through(archive: &Archive, env: &Env, stream: &str) -> Vec<Sealed> {
    let last = env
        .js
        .get_stream(stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .last_sequence;
    eventually(DEADLINE, "the stream sealed into the archive", || async {
        let manifest = archive.manifest(stream).ok()?;
        (manifest.last().map(|s| s.last_seq) == Some(last)).then_some(manifest)
    })
    .await
}

/// Gives the telemetry stream a `max_age` of `secs` (and a 1 s duplicate window).
pub(crate) async fn telemetry_max_age(env: &Env, secs: u64) {
    let mut streams = env.config.streams.clone();
    (
        streams.telemetry_max_age_secs,
        streams.duplicate_window_secs,
    ) = (secs, 1);
    nerve_ingest::ensure_streams(&env.js, &streams)
        .await
        .expect("a short max_age");
}

/// Gives the telemetry stream a 1 s `max_age` and waits until it holds nothing.
pub(crate) async fn expire_telemetry(env: &Env) {
    telemetry_max_age(env, 1).await;
    eventually(DEADLINE, "the stream expired", || async {
        let mut s = env.js.get_stream(TELEMETRY_STREAM).await.ok()?;
        (s.info().await.ok()?.state.messages == 0).then_some(())
    })
    .await;
}

async fn replay(env: &Env, args: &[&str]) -> (bool, String) {
    env.run_nerve(&[&["replay"], args].concat()).await
}

/// (count, sequences in order, subjects) of every file, read by fastavro.
pub(crate) fn read_with_fastavro(root: &Path, files: &[Sealed]) -> serde_json::Value {
    let script = r#"
import json, sys, fastavro
out = {"seqs": [], "schemas": 0, "codec": None}
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        reader = fastavro.reader(f)
        out["codec"] = reader.codec
        out["schemas"] = len(json.loads(reader.metadata["nerve.schemas"]))
        for record in reader:
            assert record["event"][:2] == b"\xc3\x01", record
            assert record["subject"].startswith("nerve.v1."), record
            out["seqs"].append(record["stream_seq"])
print(json.dumps(out))
"#;
    let out = std::process::Command::new(nerve_platform::services::tools_python())
        .arg("-c")
        .arg(script)
        .args(files.iter().map(|f| root.join(&f.file)))
        .output()
        .expect("python (infra/dev/install.sh --test installs fastavro)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_keeps_every_event_once_in_order_and_outlives_the_stream() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("archive");
    let archive_env = [
        ("NERVE_ARCHIVE__ENABLED", "true"),
        ("NERVE_ARCHIVE__DIR", root.to_str().expect("utf-8")),
        ("NERVE_ARCHIVE__FILE_SECS", "1"),
        ("NERVE_ARCHIVE__SEAL_GRACE_SECS", "0"),
    ];
    let mut project = env.spawn_nerve_with(&["project"], &archive_env);
    let archive = Archive::open(&root);

    // Heartbeats over several seconds (so several files), and a control event.
    let app = env.app().await;
    let (status, _) = crate::support::call(
        &app,
        axum::http::Method::POST,
        "/api/v1/clusters",
        serde_json::json!({"name": "kept"}),
    )
    .await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
    let mut sent = 0;
    let until = std::time::Instant::now() + std::time::Duration::from_millis(2_500);
    while std::time::Instant::now() < until {
        sent += 1;
        for n in 0..5 {
            let hb = heartbeat(&format!("n-{n}"), nerve_platform::now_ms(), sent);
            publish_heartbeat(&env.js, &hb).await;
        }
    }
    let events = sent as u64 * 5;
    let files = sealed_through(&archive, &env, TELEMETRY_STREAM).await;
    let control = sealed_through(&archive, &env, CONTROL_STREAM).await;
    assert!(files.len() >= 2, "one file per second: {files:#?}");
    assert_eq!(control.iter().map(|s| s.count).sum::<u64>(), 1);

    // Exactly once, in order: the files chain, and their records are 1..=N.
    assert_eq!(files[0].first_seq, 1);
    for pair in files.windows(2) {
        assert_eq!(pair[0].last_seq + 1, pair[1].first_seq, "{pair:#?}");
    }
    assert_eq!(files.iter().map(|s| s.count).sum::<u64>(), events);
    let mut seqs = Vec::new();
    for f in &files {
        let records = archive.read(f).expect("read");
        seqs.extend(records.iter().map(|r| r.stream_seq as u64));
        assert!(records.iter().all(|r| !r.msg_id.is_empty()));
    }
    assert_eq!(seqs, (1..=events).collect::<Vec<_>>());
    let python = read_with_fastavro(&root, &files);
    assert_eq!(
        python["seqs"],
        serde_json::json!(seqs),
        "fastavro reads the same"
    );
    assert_eq!(python["codec"], "deflate");
    assert!(python["schemas"].as_u64().unwrap_or(0) >= 30);

    // The stream expires everything: a replay without the archive cannot start, one with it
    // gives the live tables exactly.
    eventually(DEADLINE, "the live tables caught up", || async {
        (env.count("SELECT count() FROM heartbeats").await == events).then_some(())
    })
    .await;
    signal(&mut project, "-TERM").await;
    expire_telemetry(&env).await;
    let (ok, out) = replay(&env, &["--check", "--tables", "heartbeats"]).await;
    assert!(!ok && out.contains("neither in the stream"), "{out}");
    let root_arg = root.to_str().expect("utf-8");
    let (ok, out) = replay(&env, &["--check", "--archive", root_arg]).await;
    assert!(ok && !out.contains("differ"), "{out}");
    assert!(
        out.contains(&format!("heartbeats: {events} events folded")),
        "{out}"
    );

    // A file altered after sealing is refused, naming it.
    let victim = root.join(&files[1].file);
    let mut bytes = std::fs::read(&victim).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&victim, bytes).expect("write");
    let (ok, out) = replay(&env, &["--check", "--archive", root_arg]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("SHA-256") && out.contains(&files[1].file.display().to_string()),
        "{out}"
    );
}

/// Publishes one heartbeat for each of `n-0` and `n-1`, `rounds` times; returns the publish
/// time (ms) after which none of them was stored.
async fn burst(env: &Env, rounds: i64) -> i64 {
    for seq in 0..rounds {
        for n in 0..2 {
            let hb = heartbeat(&format!("n-{n}"), nerve_platform::now_ms(), seq);
            publish_heartbeat(&env.js, &hb).await;
        }
    }
    // Every ack is in: a time past this millisecond is after all of them.
    let after = nerve_platform::now_ms() + 1;
    while nerve_platform::now_ms() < after {
        std::hint::spin_loop();
    }
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_hands_over_exactly_the_window_from_archive_and_stream_with_checksums() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("archive");
    let root_arg = root.to_str().expect("utf-8").to_owned();
    let mut project = env.spawn_nerve_with(
        &["project"],
        &[
            ("NERVE_ARCHIVE__ENABLED", "true"),
            ("NERVE_ARCHIVE__DIR", &root_arg),
            ("NERVE_ARCHIVE__FILE_SECS", "1"),
            ("NERVE_ARCHIVE__SEAL_GRACE_SECS", "0"),
        ],
    );
    let archive = Archive::open(&root);
    burst(&env, 10).await; // before the window
    let from = burst(&env, 0).await;
    let _ = burst(&env, 7).await; // in the window; archived, then expired from the stream
    sealed_through(&archive, &env, TELEMETRY_STREAM).await;
    signal(&mut project, "-TERM").await;
    expire_telemetry(&env).await;
    nerve_ingest::ensure_streams(&env.js, &env.config.streams)
        .await
        .expect("keep again");
    let to = burst(&env, 4).await; // in the window; only in the stream
    burst(&env, 3).await; // after it

    let out = dir.path().join("export");
    let rfc3339 = |ms: i64| {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
        )
        .to_string()
    };
    let (from, to) = (rfc3339(from), rfc3339(to));
    let out_arg = out.to_str().expect("utf-8");
    let export = ["export", "--from", &from, "--to", &to, "--node", "n-1"];
    let export = [&export[..], &["--stream", "telemetry", out_arg]].concat();
    let (ok, text) = env.run_nerve(&export).await;
    assert!(!ok && text.contains("not in the archive"), "{text}");
    std::fs::remove_dir_all(&out).ok();
    let (ok, text) = env
        .run_nerve(&[&export[..], &["--archive", &root_arg]].concat())
        .await;
    assert!(ok, "{text}");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["events"], 7 + 4, "{manifest}");
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .expect("sha256sum");
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );
    let files: Vec<Sealed> = serde_json::from_value(manifest["files"].clone()).expect("files");
    let read = read_with_fastavro(&out, &files);
    assert_eq!(read["seqs"].as_array().map(Vec::len), Some(11));
}
