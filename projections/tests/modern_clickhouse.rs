//! The DDL also runs on current ClickHouse (26.x), checked in-process with chdb (PyPI
//! `chdb-core`, installed by `infra/dev/install.sh --test`). The other tests run it on 18.16.

use std::io::Write;
use std::process::{Command, Stdio};

const CHECK: &str = r#"
import json, sys
from chdb import session
statements = json.load(sys.stdin)
s = session.Session(sys.argv[1])
s.query("CREATE DATABASE IF NOT EXISTS nerve")
for st in statements:
    s.query(st)
print(s.query("SELECT name FROM system.tables WHERE database = 'nerve' ORDER BY name", "CSV"))
"#;

/// Runs `script` in the tools' Python with a fresh chdb directory as its argument and
/// `statements` as JSON on stdin; its output, after checking it succeeded (`what` names the
/// statements in the message).
fn run_chdb(script: &str, statements: &[String], what: &str) -> std::process::Output {
    let python = nerve_platform::services::tools_python();
    assert!(
        python.exists(),
        "{} missing: run infra/dev/install.sh --test",
        python.display()
    );
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(&python)
        .args(["-c", script])
        .arg(dir.path().join("chdb"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(statements).expect("json").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "current ClickHouse rejected {what} (is chdb installed? infra/dev/install.sh --test):\n{stderr}"
    );
    out
}

#[test]
fn every_table_is_created_by_current_clickhouse() {
    let statements = nerve_projections::all_ddl("nerve");
    let out = run_chdb(CHECK, &statements, "the DDL");
    let tables = String::from_utf8_lossy(&out.stdout);
    for table in [
        "heartbeats",
        "node_state",
        "inventory",
        "rejected_events",
        "node_events",
        "node_liveness",
        "tasks",
        "task_nodes",
        "task_output",
        "task_events",
        "cluster_log",
        "cluster_members",
        "node_labels",
        "channels",
        "notification_attempts",
    ] {
        assert!(
            tables.contains(&format!("\"{table}\"")),
            "{table} missing: {tables}"
        );
    }
}

/// chdb with Keeper (its in-process test keeper), the shard and replica macros and a cluster
/// `nerve`: the clustered DDL without `ON CLUSTER` (chdb runs no distributed DDL queue).
const CHECK_CLUSTERED: &str = r#"
import json, os, sys
import chdb
config = os.path.join(sys.argv[1], "config.xml")
os.makedirs(sys.argv[1], exist_ok=True)
with open(config, "w") as f:
    f.write("""<clickhouse>
  <zookeeper><implementation>testkeeper</implementation></zookeeper>
  <macros><shard>01</shard><replica>ch1</replica></macros>
  <remote_servers><nerve><shard><internal_replication>true</internal_replication>
    <replica><host>127.0.0.1</host><port>9000</port></replica></shard></nerve></remote_servers>
</clickhouse>""")
statements = json.load(sys.stdin)
conn = chdb.connect("file:" + os.path.join(sys.argv[1], "db") + "?config-file=" + config)
cur = conn.cursor()
cur.execute("CREATE DATABASE IF NOT EXISTS nerve")
for st in statements:
    try:
        cur.execute(st)
    except Exception as e:
        print(st, "\n", e, file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)
cur.execute("SELECT name, engine FROM system.tables WHERE database = 'nerve' ORDER BY name")
print(json.dumps(cur.fetchall()))
sys.stdout.flush()
# chdb's background threads keep the interpreter from exiting.
os._exit(0)
"#;

#[test]
fn the_clustered_tables_are_created_by_current_clickhouse_with_keeper() {
    let statements: Vec<String> = nerve_projections::all_ddl("nerve")
        .iter()
        .flat_map(|s| nerve_projections::cluster::clustered(s, "nerve", "nerve"))
        .map(|s| s.replace(" ON CLUSTER nerve", ""))
        .collect();
    let out = run_chdb(CHECK_CLUSTERED, &statements, "the clustered DDL");
    let tables: Vec<(String, String)> =
        serde_json::from_slice(&out.stdout).expect("tables as JSON");
    let engine = |name: &str| {
        tables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.as_str())
            .unwrap_or_else(|| panic!("{name} missing: {tables:?}"))
    };
    assert_eq!(engine("heartbeats"), "Distributed");
    assert_eq!(engine("heartbeats_local"), "ReplicatedMergeTree");
    assert_eq!(engine("node_state_local"), "ReplicatedReplacingMergeTree");
    assert_eq!(engine("heartbeats_1h_local"), "ReplicatedSummingMergeTree");
    assert_eq!(engine("heartbeats_1h_mv"), "MaterializedView");
    // Every table of the single-server DDL has its local and distributed pair.
    let pairs = tables.iter().filter(|(_, e)| e == "Distributed").count();
    let locals = tables
        .iter()
        .filter(|(_, e)| e.starts_with("Replicated"))
        .count();
    assert_eq!(pairs, locals);
    assert!(pairs >= 20, "{tables:?}");
}
