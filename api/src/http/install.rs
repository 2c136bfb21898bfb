//! The agent's installation, served to nodes without a token: `/install.sh` (the script in
//! `infra/agent-install.sh` with this deployment's API and NATS URLs filled in),
//! `/download/nerve` (the binary, streamed) and `/download/nerve.sha256` (its checksum,
//! computed once per binary and process).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

const SCRIPT: &str = include_str!("../../../infra/agent-install.sh");
const AGENT_UNIT: &str = include_str!("../../../infra/systemd/nerve-agent.service");
const TASKS_SLICE: &str = include_str!("../../../infra/systemd/nerve-tasks.slice");

/// The binary to serve: `api.agent_binary`, else this process's own executable.
fn binary(state: &AppState) -> Result<PathBuf, ApiError> {
    let configured = &state.config().agent_binary;
    if !configured.as_os_str().is_empty() {
        return Ok(configured.clone());
    }
    std::env::current_exe()
        .map_err(|e| ApiError::Unavailable(format!("cannot find this server's executable: {e}")))
}

/// Whether `s` can stand in the script (between double quotes in TOML, single quotes in sh).
fn script_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'`' | b'$'))
}

/// The API's URL for nodes: `api.public_url`, else the scheme this server speaks and the
/// `Host` the script was asked with (which must look like a host, port optional).
fn api_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let public = state.config().public_url.trim_end_matches('/');
    if !public.is_empty() {
        return Ok(public.to_owned());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
                && !h.is_empty()
        })
        .ok_or_else(|| {
            ApiError::BadRequest(
                "a Host header naming this server is needed (or set api.public_url)".into(),
            )
        })?;
    let scheme = if state.config().tls_cert_file.as_os_str().is_empty() {
        "http"
    } else {
        "https"
    };
    Ok(format!("{scheme}://{host}"))
}

/// The script with this deployment's URLs and the units filled in.
pub fn render(api: &str, nats: &str) -> String {
    SCRIPT
        .replace("@AGENT_UNIT@", AGENT_UNIT.trim_end())
        .replace("@TASKS_SLICE@", TASKS_SLICE.trim_end())
        .replace("@API_URL@", api)
        .replace("@NATS_URL@", nats)
}

/// The agent's install script (`curl -fsSL …/install.sh | sh -s -- --enroll TOKEN`).
#[utoipa::path(
    get,
    path = "/install.sh",
    tag = "install",
    responses((status = 200, body = String, content_type = "text/x-shellscript")),
)]
pub(super) async fn script(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let api = api_url(&state, &headers)?;
    let nats = state.config().agent_nats_url.clone();
    if !script_safe(&api) || !script_safe(&nats) {
        return Err(ApiError::Unavailable(
            "api.public_url and api.agent_nats_url must be plain URLs (no quotes, `$` or spaces)"
                .into(),
        ));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
        render(&api, &nats),
    )
        .into_response())
}

/// The `nerve` binary the install script installs.
#[utoipa::path(
    get,
    path = "/download/nerve",
    tag = "install",
    responses((
        status = 200,
        body = Vec<u8>,
        content_type = "application/octet-stream",
    )),
)]
pub(super) async fn download(State(state): State<AppState>) -> Result<Response, ApiError> {
    let path = binary(&state)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Unavailable(format!("agent binary {}: {e}", path.display())))?;
    let len = file.metadata().await.map(|m| m.len()).ok();
    let mut response = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(file)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, len.into());
    }
    Ok(response)
}

/// Checksums computed, by file, size and modification time (a replaced binary is hashed anew).
type Key = (PathBuf, u64, Option<std::time::SystemTime>);
static SUMS: Mutex<Vec<(Key, Arc<str>)>> = Mutex::new(Vec::new());

/// The binary's SHA-256, in `sha256sum` format.
#[utoipa::path(
    get,
    path = "/download/nerve.sha256",
    tag = "install",
    responses((status = 200, body = String, content_type = "text/plain")),
)]
pub(super) async fn checksum(State(state): State<AppState>) -> Result<Response, ApiError> {
    let path = binary(&state)?;
    let unreadable =
        |e: std::io::Error| ApiError::Unavailable(format!("agent binary {}: {e}", path.display()));
    let meta = tokio::fs::metadata(&path).await.map_err(unreadable)?;
    let key: Key = (path.clone(), meta.len(), meta.modified().ok());
    let known = SUMS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, sum)| sum.clone());
    let sum = match known {
        Some(sum) => sum,
        None => {
            let file = path.clone();
            let sum: Arc<str> = tokio::task::spawn_blocking(move || sha256_file(&file))
                .await
                .map_err(|e| ApiError::Unavailable(format!("hashing failed: {e}")))?
                .map_err(unreadable)?
                .into();
            let mut sums = SUMS.lock().unwrap_or_else(|e| e.into_inner());
            sums.retain(|(k, _)| k.0 != key.0);
            sums.push((key, sum.clone()));
            sum
        }
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{sum}  nerve\n"),
    )
        .into_response())
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_gets_the_urls_and_both_units() {
        let s = render("https://nerve:8080", "tls://nerve:4222");
        assert!(s.contains("api='https://nerve:8080'"));
        assert!(s.contains("nats='tls://nerve:4222'"));
        assert!(s.contains("ExecStart=/usr/local/bin/nerve --config /etc/nerve/agent.toml agent"));
        assert!(s.contains("[Slice]"));
        assert!(!s.contains('@'), "every placeholder is filled");
    }

    #[test]
    fn only_plain_urls_go_into_the_script() {
        assert!(script_safe("https://nerve.example:8080"));
        for bad in [
            "",
            "http://x'y",
            "http://$(id)",
            "http://a b",
            "http://x\"",
            "http://`id`",
        ] {
            assert!(!script_safe(bad), "{bad}");
        }
    }
}
