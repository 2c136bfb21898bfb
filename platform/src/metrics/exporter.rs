//! The metrics listener of the roles without an HTTP server of their own (`nerve project`,
//! `nerve agent`; `nerve serve` answers `/metrics` on its API port): `GET /metrics` on
//! `metrics.listen_addr`, anything else 404, until cancelled.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::{CONTENT_TYPE, Registry};

fn answer(registry: &Registry, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, kind, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, registry.render()),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "metrics are at /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(kind) = kind.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, kind);
    }
    response
}

/// Binds `addr` and serves `registry` at `/metrics` until `cancel`; the address bound (port 0
/// picks a free one). A bind failure is the caller's error; a broken connection is only logged.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "metrics at /metrics");
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                () = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        continue;
                    }
                },
            };
            let registry = registry.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = answer(&registry, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    () = cancel.cancelled() => {}
                    served = connection => if let Err(e) = served {
                        tracing::debug!(error = %e, "metrics listener: connection ended");
                    },
                }
            });
        }
    });
    Ok(bound)
}
