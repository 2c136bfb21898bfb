//! Tables on a ClickHouse cluster (`clickhouse.cluster`): each table of [`crate::all_ddl`]
//! becomes `<table>_local`, a `Replicated*MergeTree` whose replicas of one shard share a
//! ZooKeeper/Keeper path (`/clickhouse/tables/{shard}/<db>/<table>`, the servers' macros fill in
//! the shard and replica), under a `Distributed` table of the table's own name that every
//! reader and writer uses. Rows are sharded by the first column of the table's sort key, so all
//! versions of a `ReplacingMergeTree` key meet on one shard and `FINAL` stays exact. Views
//! read and write the local tables: an insert fires them on the replica it lands on, and
//! replication copies what they wrote. Every statement runs `ON CLUSTER`.

/// The statements that create `statement`'s object on `cluster`, in order: for a table its
/// local replicated table, then the distributed one; for a materialized view, the view over the
/// local tables.
pub fn clustered(statement: &str, db: &str, cluster: &str) -> Vec<String> {
    let s = statement.trim();
    let table_prefix = format!("CREATE TABLE IF NOT EXISTS {db}.");
    let view_prefix = format!("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.");
    if let Some(rest) = s.strip_prefix(&table_prefix) {
        let (name, rest) = split_ident(rest);
        let (columns, rest) = rest
            .split_once("ENGINE = ")
            .unwrap_or_else(|| panic!("{name}: DDL without `ENGINE = `"));
        let (engine, rest) = split_ident(rest);
        let (args, settings) = match rest.strip_prefix('(') {
            Some(r) => {
                let (args, after) = r
                    .split_once(')')
                    .unwrap_or_else(|| panic!("{name}: unclosed engine arguments"));
                (args.trim(), after)
            }
            None => ("", rest),
        };
        let key = sort_key_head(settings).unwrap_or_else(|| panic!("{name}: no ORDER BY"));
        let path = format!("'/clickhouse/tables/{{shard}}/{db}/{name}', '{{replica}}'");
        let args = if args.is_empty() {
            path
        } else {
            format!("{path}, {args}")
        };
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.{name}_local ON CLUSTER {cluster} {} \
                 ENGINE = Replicated{engine}({args}){settings}",
                columns.trim()
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} AS {db}.{name}_local \
                 ENGINE = Distributed({cluster}, {db}, {name}_local, cityHash64({key}))"
            ),
        ]
    } else if let Some(rest) = s.strip_prefix(&view_prefix) {
        let (name, rest) = split_ident(rest);
        let local = |text: &str, word: &str| {
            text.replace(&format!("{word} {db}."), &format!("{word} {db}.@"))
                .split('@')
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part.to_owned()
                    } else {
                        let (table, after) = split_ident(part);
                        format!("{table}_local{after}")
                    }
                })
                .collect::<String>()
        };
        let rest = local(&local(rest, "TO"), "FROM");
        vec![format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name} ON CLUSTER {cluster}{rest}"
        )]
    } else {
        panic!("no cluster form for: {s}")
    }
}

/// The object a statement of [`clustered`] creates (`<table>_local`, `<table>` or a view).
pub fn created(statement: &str) -> Option<&str> {
    let rest = statement
        .split_once(" IF NOT EXISTS ")?
        .1
        .split_once('.')?
        .1;
    Some(split_ident(rest).0)
}

/// The first column of the `ORDER BY` in `text`.
fn sort_key_head(text: &str) -> Option<&str> {
    let after = text.split_once("ORDER BY")?.1.trim_start();
    let after = after.strip_prefix('(').unwrap_or(after).trim_start();
    Some(split_ident(after).0)
}

/// A leading identifier and what follows it.
fn split_ident(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    text.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_becomes_a_replicated_local_table_under_a_distributed_one() {
        let ddl = crate::all_ddl("db");
        let state = ddl
            .iter()
            .find(|s| s.contains("db.node_state ("))
            .expect("node_state");
        let out = clustered(state, "db", "c");
        assert_eq!(out.len(), 2);
        assert!(
            out[0].starts_with("CREATE TABLE IF NOT EXISTS db.node_state_local ON CLUSTER c ("),
            "{}",
            out[0]
        );
        assert!(
            out[0].contains(
                "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/node_state', \
                 '{replica}', last_seen_ms)"
            ),
            "{}",
            out[0]
        );
        assert!(out[0].contains("ORDER BY node_id"), "{}", out[0]);
        assert!(out[0].contains("index_granularity"), "{}", out[0]);
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS db.node_state ON CLUSTER c AS db.node_state_local \
             ENGINE = Distributed(c, db, node_state_local, cityHash64(node_id))"
        );
        assert_eq!(created(&out[0]), Some("node_state_local"));
        assert_eq!(created(&out[1]), Some("node_state"));
    }

    #[test]
    fn engines_without_arguments_and_tuple_sort_keys() {
        let ddl = crate::all_ddl("db");
        let rejected = ddl
            .iter()
            .find(|s| s.contains("db.rejected_events ("))
            .expect("rejected_events");
        let out = clustered(rejected, "db", "c");
        assert!(
            out[0].contains(
                "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/rejected_events', \
                 '{replica}')"
            ),
            "{}",
            out[0]
        );
        assert!(out[1].ends_with("cityHash64(stream))"), "{}", out[1]);
    }

    #[test]
    fn a_view_reads_and_writes_the_local_tables() {
        let ddl = crate::all_ddl("db");
        let view = ddl
            .iter()
            .find(|s| s.starts_with("CREATE MATERIALIZED VIEW"))
            .expect("a view");
        let out = clustered(view, "db", "c");
        assert_eq!(out.len(), 1);
        assert!(out[0].contains(" ON CLUSTER c TO db.heartbeats_1m_local AS SELECT"));
        assert!(
            out[0].contains("FROM db.heartbeats_local GROUP BY"),
            "{}",
            out[0]
        );
    }

    #[test]
    fn every_statement_has_a_cluster_form() {
        for statement in crate::all_ddl("db") {
            let out = clustered(&statement, "db", "c");
            assert!(out.iter().all(|s| s.contains(" ON CLUSTER c")));
            assert!(out.iter().all(|s| created(s).is_some()));
        }
    }
}
