//! A real `nerve agent` process → JetStream → projectors → ClickHouse → `/api/v1/nodes`.

use nerve_api::dto::{fleet::NodeDetail, fleet::NodePage, fleet::NodeStatus};
use nerve_platform::metrics::Registry;
use nerve_platform::testkit::eventually;
use tokio_util::sync::CancellationToken;

use crate::support::{DEADLINE, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agents_heartbeat_appears_in_the_node_list() {
    let env = Env::start().await;
    let cancel = CancellationToken::new();
    let metrics = Registry::new();
    let projectors = env.spawn_projectors(&metrics, &cancel);
    let api = env.app().await;
    let state = api.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(nerve_api::serve(
        listener,
        nerve_api::router(state),
        cancel.clone(),
    ));

    let mut agent = env.spawn_nerve(&["agent"]);
    let http = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", api.token).parse().expect("header"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .expect("client");
    let node = eventually(DEADLINE, "the agent's node online in /api/v1/nodes", || {
        let http = http.clone();
        let url = format!("{base}/api/v1/nodes");
        async move {
            let page: NodePage = http.get(url).send().await.ok()?.json().await.ok()?;
            page.nodes
                .into_iter()
                .find(|n| n.status == NodeStatus::Online && !n.hostname.is_empty())
        }
    })
    .await;
    let node_id = std::fs::read_to_string(env.state_dir.path().join("agent/node_id"))
        .expect("agent wrote its node id");
    assert_eq!(node.id, node_id.trim());
    assert!(node.mem_total_bytes > 0);
    assert_eq!(node.heartbeat_interval_secs, 1);

    let detail: NodeDetail = http
        .get(format!("{base}/api/v1/nodes/{}", node.id))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let inventory = detail.inventory.expect("inventory reported");
    assert!(inventory.cpu.logical_cores >= 1);
    assert!(
        inventory
            .interfaces
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    assert!(detail.latest.is_some());

    // The agent stops on SIGTERM without error.
    let pid = agent.id().expect("pid") as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let status = agent.wait().await.expect("wait");
    assert!(status.success(), "agent exited with {status}");

    cancel.cancel();
    projectors.await.expect("join").expect("projectors");
    server.await.expect("join").expect("server");
}
