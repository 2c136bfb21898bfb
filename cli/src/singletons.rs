//! The singleton roles of `nerve project` — the liveness tracker, the alert evaluator, the
//! archiver and the remediation engine — each run under its lease (`nerve_ingest::lease`): any number of `nerve project`s
//! may run, with nothing set, and each role runs in exactly one of them. A role that fails is
//! logged and started again by the lease loop.

use std::time::Duration;

use anyhow::Context as _;
use nerve_ingest::lease;
use nerve_platform::config::Config;
use nerve_platform::metrics::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts each enabled singleton under its lease until `cancel`; this instance holds leases
/// as `holder`.
pub(crate) async fn spawn(
    config: &Config,
    client: &async_nats::Client,
    metrics: &Registry,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let js = async_nats::jetstream::new(client.clone());
    let period = Duration::from_secs(config.singletons.lease_secs);
    let leases = lease::bucket(&js, period, config.streams.replicas).await?;
    // Who holds a lease, for people reading the bucket: the machine, the process and when
    // it started (a restarted process is a new holder).
    let host = nerve_platform::hostname();
    let holder = format!("{host}-{}-{}", std::process::id(), nerve_platform::now_ms());
    tracing::info!(%holder, lease_secs = period.as_secs(), "singleton roles run under leases");
    let run = |role: &'static str, work| {
        tokio::spawn(lead(
            leases.clone(),
            role,
            holder.clone(),
            period,
            cancel.clone(),
            work,
        ))
    };
    let mut handles = Vec::new();
    if config.liveness.enabled {
        let (client, liveness, metrics) =
            (client.clone(), config.liveness.clone(), metrics.clone());
        handles.push(run(
            "liveness",
            Box::new(move |held| {
                let (client, liveness, metrics) =
                    (client.clone(), liveness.clone(), metrics.clone());
                Box::pin(async move {
                    nerve_liveness::run(client, &liveness, &metrics, held)
                        .await
                        .map_err(|e| e.to_string())
                })
            }),
        ));
    }
    let streams: Vec<String> = nerve_ingest::stream_configs(&config.streams)
        .into_iter()
        .map(|s| s.name)
        .collect();
    // One handle on the archive (a bucket's client, or a directory) for the archiver and for
    // the evaluator that watches its lag.
    let archive = match config.archive.enabled {
        true => Some(
            nerve_ingest::archive::Archive::configured(&config.archive).context("the archive")?,
        ),
        false => None,
    };
    if config.alerts.enabled {
        let watch = archive.clone().map(|archive| {
            nerve_alerts::archive::Watch::configured(archive, &config.archive, streams.clone())
        });
        let ctx = nerve_alerts::Context::new(
            nerve_platform::clickhouse::client(&config.clickhouse),
            Some(client.clone()),
            &config.alerts,
        );
        let (alerts, metrics) = (config.alerts.clone(), metrics.clone());
        handles.push(run(
            "alerts",
            Box::new(move |held| {
                let (ctx, alerts, watch, metrics) =
                    (ctx.clone(), alerts.clone(), watch.clone(), metrics.clone());
                Box::pin(async move {
                    nerve_alerts::run(ctx, alerts, watch, &metrics, held)
                        .await
                        .map_err(|e| e.to_string())
                })
            }),
        ));
    }
    if config.remediation.enabled {
        let ctx = nerve_alerts::Context::new(
            nerve_platform::clickhouse::client(&config.clickhouse),
            Some(client.clone()),
            &config.alerts,
        );
        let ch = nerve_platform::clickhouse::client(&config.clickhouse);
        let (client, remediation, metrics) =
            (client.clone(), config.remediation.clone(), metrics.clone());
        handles.push(run(
            "remediation",
            Box::new(move |held| {
                let (ch, client, ctx, remediation, metrics) = (
                    ch.clone(),
                    client.clone(),
                    ctx.clone(),
                    remediation.clone(),
                    metrics.clone(),
                );
                Box::pin(async move {
                    nerve_remediation::run(ch, client, ctx, remediation, &metrics, held)
                        .await
                        .map_err(|e| e.to_string())
                })
            }),
        ));
    }
    if let Some(archive) = archive {
        tracing::info!(archive = %archive.location().display(), "archiving every stream");
        let sealing = nerve_ingest::archive::Sealing {
            span: Duration::from_secs(config.archive.file_secs),
            grace: Duration::from_secs(config.archive.seal_grace_secs),
        };
        let metrics = metrics.clone();
        handles.push(run(
            "archiver",
            Box::new(move |held| {
                let (js, archive, streams, metrics) = (
                    js.clone(),
                    archive.clone(),
                    streams.clone(),
                    metrics.clone(),
                );
                Box::pin(async move {
                    nerve_ingest::archive::run(js, archive, streams, sealing, metrics, held).await;
                    Ok(())
                })
            }),
        ));
    }
    Ok(handles)
}

/// A role's work: started with the token its lease holds.
type Work = Box<
    dyn FnMut(
            CancellationToken,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send,
>;

async fn lead(
    leases: async_nats::jetstream::kv::Store,
    role: &'static str,
    holder: String,
    period: Duration,
    cancel: CancellationToken,
    mut work: Work,
) {
    lease::lead(leases, role, &holder, period, cancel, |held| {
        let running = work(held);
        async move {
            if let Err(error) = running.await {
                tracing::error!(role, %error, "stopped with an error; it runs again under its lease");
            }
        }
    })
    .await;
}
