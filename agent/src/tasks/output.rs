//! A task's output: both pipes of the child read in chunks into one channel, and the part of
//! it kept within the task's byte limit, numbered across stdout and stderr.

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::CHUNK_BYTES;

/// Both of the child's pipes, read in chunks of at most [`CHUNK_BYTES`] into one channel.
pub fn pipe_output(child: &mut tokio::process::Child) -> mpsc::Receiver<(&'static str, Vec<u8>)> {
    let (tx, rx) = mpsc::channel::<(&'static str, Vec<u8>)>(16);
    let pipes = [
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ),
        (
            "stderr",
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ),
    ];
    for (name, pipe) in pipes {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK_BYTES];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 || tx.send((name, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// A task's output within its byte limit: chunks numbered across stdout and stderr, and
/// whether anything was cut.
pub struct Output {
    limit: u64,
    seq: i64,
    kept: u64,
    pub total: u64,
    pub truncated: bool,
}

impl Output {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            seq: 0,
            kept: 0,
            total: 0,
            truncated: false,
        }
    }

    /// The part of `data` to report and its number; `None` once the limit is reached.
    pub fn take<'a>(&mut self, data: &'a [u8]) -> Option<(i64, &'a [u8])> {
        self.total += data.len() as u64;
        let room = self.limit.saturating_sub(self.kept) as usize;
        if data.len() > room {
            self.truncated = true;
        }
        let data = &data[..data.len().min(room)];
        if data.is_empty() {
            return None;
        }
        self.kept += data.len() as u64;
        self.seq += 1;
        Some((self.seq - 1, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_numbered_and_cut_at_the_limit() {
        let mut out = Output::new(5);
        assert_eq!(out.take(b"abc"), Some((0, &b"abc"[..])));
        assert_eq!(out.take(b"defg"), Some((1, &b"de"[..])));
        assert_eq!(out.take(b"h"), None);
        assert_eq!((out.kept, out.total, out.truncated), (5, 8, true));
    }
}
