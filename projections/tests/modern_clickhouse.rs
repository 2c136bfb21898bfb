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

#[test]
fn every_table_is_created_by_current_clickhouse() {
    let python = nerve_platform::services::tools_python();
    assert!(
        python.exists(),
        "{} missing: run infra/dev/install.sh --test",
        python.display()
    );
    let dir = tempfile::tempdir().expect("tmp");
    let statements = nerve_projections::all_ddl("nerve");
    let mut child = Command::new(&python)
        .args(["-c", CHECK])
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
        .write_all(serde_json::to_string(&statements).expect("json").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "current ClickHouse rejected the DDL (is chdb installed? infra/dev/install.sh --test):\n{stderr}"
    );
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
