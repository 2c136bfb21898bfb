//! The web console. Until the Leptos console lands (SSR + hydration, issue 3) this serves a small
//! static landing page at `/` linking the live API, plus the favicon browsers ask for.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

const INDEX: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nerve</title>
<style>
 body { font: 16px/1.5 system-ui, sans-serif; margin: 3rem auto; max-width: 40rem; padding: 0 1rem; color: #1d2433; }
 a { color: #0b57d0; }
 code { background: #f1f3f6; padding: .1rem .3rem; border-radius: 4px; }
</style>
</head>
<body>
<h1>Nerve</h1>
<p>The control plane is running. The web console is not built yet; the REST API is live:</p>
<ul>
 <li><a href="/api/v1/health"><code>GET /api/v1/health</code></a> — NATS and ClickHouse reachability</li>
 <li><a href="/api/v1/nodes"><code>GET /api/v1/nodes</code></a> — the fleet, with status and latest CPU/memory</li>
 <li><code>GET /api/v1/nodes/{id}</code> — inventory and latest metrics of one node</li>
 <li><code>GET /api/v1/nodes/{id}/metrics?from=&amp;to=&amp;step=</code> — time series</li>
 <li><a href="/metrics"><code>GET /metrics</code></a> — Prometheus metrics</li>
</ul>
</body>
</html>
"#;

/// A 16×16 single-colour ICO (the Nerve blue), so browsers don't log a 404.
fn favicon() -> Vec<u8> {
    let (w, h) = (16u32, 16u32);
    let pixels = (w * h * 4) as usize;
    let mask = (h * 4) as usize; // 1-bit AND mask, rows padded to 32 bits
    let bmp_len = 40 + pixels + mask;
    let mut out = Vec::with_capacity(22 + bmp_len);
    out.extend_from_slice(&[0, 0, 1, 0, 1, 0]); // ICONDIR: reserved, type icon, 1 image
    out.extend_from_slice(&[w as u8, h as u8, 0, 0, 1, 0, 32, 0]);
    out.extend_from_slice(&(bmp_len as u32).to_le_bytes());
    out.extend_from_slice(&22u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&(h * 2).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    for _ in 0..w * h {
        out.extend_from_slice(&[0xd0, 0x57, 0x0b, 0xff]); // BGRA
    }
    out.extend(std::iter::repeat_n(0u8, mask));
    out
}

/// Routes of the console: `/` and `/favicon.ico`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route(
            "/favicon.ico",
            get(|| async { ([(header::CONTENT_TYPE, "image/x-icon")], favicon()).into_response() }),
        )
}
