//! Retention and roll-ups: heartbeats and inventory reports from 40 days ago to an hour ago,
//! folded by the real projectors; the per-minute and per-hour roll-ups equal the aggregates
//! computed from the raw rows (and hand-computed values); a retention run drops exactly the
//! partitions past each table's window and nothing else; a rebuild afterwards leaves them
//! dropped and finds everything else equal to its log.

use nerve_platform::config::RetentionConfig;
use nerve_platform::testkit::eventually;
use nerve_projections::replay::{self, Options};
use nerve_projections::retention;
use nerve_projections::rollups::{self, HEARTBEATS_1H, HEARTBEATS_1M};

use crate::support::{
    DEADLINE, Env, get_ok, heartbeat, inventory, publish_heartbeat, publish_inventory,
};

const DAY: i64 = 86_400_000;

/// Rows and a hash of every column of `rows` (a SELECT of the roll-up's columns).
async fn digest(env: &Env, rows: &str) -> (u64, u64) {
    let columns = ["node_id", "ts"]
        .into_iter()
        .chain(rollups::column_names())
        .collect::<Vec<_>>()
        .join(", ");
    env.ch
        .query(&format!(
            "SELECT count(), sum(cityHash64({columns})) FROM ({rows})"
        ))
        .fetch_one()
        .await
        .expect("digest")
}

/// The partition ids `table` holds.
async fn partitions(env: &Env, table: &str) -> Vec<String> {
    env.ch
        .query(
            "SELECT DISTINCT partition_id FROM system.parts \
             WHERE database = currentDatabase() AND table = ? AND active ORDER BY partition_id",
        )
        .bind(table)
        .fetch_all()
        .await
        .expect("partitions")
}

/// The daily partition id of `ms`.
fn day_id(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339(t).to_string()[..10].replace('-', "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_only_what_is_past_its_window_and_rollups_add_up() {
    let env = Env::start().await;
    let metrics = nerve_platform::metrics::Registry::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let now = nerve_platform::now_ms();
    let node = "keep-me";
    // Two beats 10 days ago, two 3 days ago, three in one minute an hour ago; 2 GPUs each.
    // Each pair within one minute.
    let minute = |ms: i64| ms / 60_000 * 60_000;
    let times = [
        minute(now - 10 * DAY),
        minute(now - 10 * DAY) + 10_000,
        minute(now - 3 * DAY),
        minute(now - 3 * DAY) + 10_000,
    ];
    let recent = minute(now - 3_600_000);
    let times = times
        .into_iter()
        .chain([recent, recent + 10_000, recent + 20_000]);
    for (seq, ts) in times.enumerate() {
        let mut hb = heartbeat(node, ts, seq as i64);
        hb.cpu_pct = 10.0 * (seq + 1) as f32;
        hb.gpus = (0..2)
            .map(|i| nerve_schemas::GpuSample {
                index: i,
                uuid: format!("GPU-{i}"),
                util_pct: 50.0 + i as f32,
                mem_used_bytes: 1 << 30,
                power_w: 300.0,
                ..Default::default()
            })
            .collect();
        publish_heartbeat(&env.js, &hb).await;
    }
    publish_inventory(&env.js, &inventory(node, "old", now - 40 * DAY)).await;
    publish_inventory(&env.js, &inventory(node, "new", now - 5 * DAY)).await;
    // The views write after the table they follow: wait for them too.
    eventually(DEADLINE, "every heartbeat, roll-up and report", || async {
        let hb = env.count("SELECT count() FROM heartbeats").await;
        let m = env.count("SELECT sum(samples) FROM heartbeats_1m").await;
        let h = env.count("SELECT sum(samples) FROM heartbeats_1h").await;
        let inv = env.count("SELECT count() FROM inventory_log").await;
        (hb == 7 && m == 7 && h == 7 && inv == 2).then_some(())
    })
    .await;

    // Roll-ups equal the aggregates of the raw rows, and the hour an hour ago is what the
    // three beats make: cpu 50 + 60 + 70, two GPUs of 10 s each, 6 GPU samples.
    for (table, bucket) in [
        (HEARTBEATS_1M, "toStartOfMinute"),
        (HEARTBEATS_1H, "toStartOfHour"),
    ] {
        let rolled = digest(&env, &format!("SELECT * FROM {table} FINAL")).await;
        let raw = digest(&env, &rollups::select("heartbeats", bucket)).await;
        assert_eq!(rolled, raw, "{table}");
        assert_eq!(rolled.0, 3, "{table}: three buckets");
    }
    let (samples, cpu, gpu_seconds, gpu_util, joules): (u64, u64, u64, u64, u64) = env
        .ch
        .query(
            "SELECT sum(samples), sum(cpu_pct_milli), sum(gpu_seconds), sum(gpu_util_milli), \
             sum(gpu_energy_joules) FROM heartbeats_1m WHERE ts = toDateTime(?)",
        )
        .bind((recent / 1000) as u64)
        .fetch_one()
        .await
        .expect("the recent minute");
    assert_eq!(
        (samples, cpu, gpu_seconds, gpu_util, joules),
        (3, 180_000, 60, 303_000, 18_000)
    );

    // Retention with the defaults: heartbeats 7 days, inventory 30, roll-ups 90 and 730.
    let cfg = RetentionConfig::default();
    let server = nerve_platform::clickhouse::server_client(&env.config.clickhouse);
    let db = &env.config.clickhouse.database;
    let dropped = retention::run_once(&server, db, "", &cfg, nerve_platform::now_ms())
        .await
        .expect("retention");
    let dropped: Vec<(&str, String)> = dropped
        .into_iter()
        .map(|d| (d.table, d.partition_id))
        .collect();
    assert_eq!(
        dropped,
        [
            ("heartbeats", day_id(now - 10 * DAY)),
            ("inventory_log", day_id(now - 40 * DAY)),
        ]
    );
    let mut kept_days = vec![day_id(now - 3 * DAY), day_id(recent)];
    kept_days.dedup();
    assert_eq!(partitions(&env, "heartbeats").await, kept_days);
    assert_eq!(
        partitions(&env, "inventory_log").await,
        [day_id(now - 5 * DAY)]
    );
    assert_eq!(partitions(&env, HEARTBEATS_1M).await.len(), 3);
    // A second run finds nothing more to drop.
    let again = retention::run_once(&server, db, "", &cfg, nerve_platform::now_ms())
        .await
        .expect("retention");
    assert!(again.is_empty(), "{again:?}");

    // Charts read the roll-ups for whole minutes and hours, raw rows otherwise; the roll-ups
    // still answer for the minutes whose raw rows retention dropped.
    let app = env.app().await;
    let series = |from: i64, step: u64| {
        let uri = format!(
            "/api/v1/nodes/{node}/metrics?from={}&to={}&step={step}",
            from / 1000,
            from / 1000 + 120
        );
        let app = app.clone();
        async move { get_ok(&app, &uri).await }
    };
    for (step, source) in [(10, "heartbeats"), (60, "heartbeats_1m")] {
        let s = series(recent, step).await;
        assert_eq!(s["source"], source, "{s}");
        let samples: u64 = s["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["samples"].as_u64().expect("n"))
            .sum();
        assert_eq!(samples, 3, "{s}");
    }
    let s = series(recent, 60).await;
    assert_eq!(
        (
            s["points"][0]["cpu_pct"].as_f64(),
            s["points"][0]["gpu_util_pct"].as_f64()
        ),
        (Some(60.0), Some(50.5)),
        "{s}"
    );
    let hour = recent / 3_600_000 * 3_600_000;
    assert_eq!(series(hour, 3600).await["source"], "heartbeats_1h");
    let old = series(minute(now - 10 * DAY), 60).await;
    assert_eq!(old["points"][0]["samples"], 2, "{old}");
    assert!(
        series(minute(now - 10 * DAY), 10).await["points"]
            .as_array()
            .expect("points")
            .is_empty()
    );

    // A rebuild folds the old events again, but leaves what retention dropped alone...
    let check = |retention: RetentionConfig| Options {
        check_only: true,
        only: vec!["heartbeats".into(), "inventory".into()],
        retention,
        ..Options::default()
    };
    let reports = replay::rebuild(
        &env.js,
        &env.config.clickhouse,
        &check(cfg.clone()),
        &|_| {},
    )
    .await
    .expect("replay");
    for r in &reports {
        assert!(r.matched(), "{r:#?}");
    }
    // ...which it would bring back if nothing were dropped by retention.
    let keep_all = RetentionConfig {
        heartbeats_days: 0,
        ..cfg
    };
    let reports = replay::rebuild(&env.js, &env.config.clickhouse, &check(keep_all), &|_| {})
        .await
        .expect("replay");
    let differences: Vec<String> = reports
        .iter()
        .flat_map(|r| &r.tables)
        .flat_map(|t| {
            t.differences
                .iter()
                .map(move |d| format!("{}/{}", t.table, d.partition_id))
        })
        .collect();
    assert_eq!(
        differences,
        [format!("heartbeats/{}", day_id(now - 10 * DAY))]
    );
    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
}
