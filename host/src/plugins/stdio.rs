//! stdout/stderr of a guest, appended line by line to its bounded log.
//!
//! Writing past the log-byte limit fails the stream with a trap carrying
//! [`Violation::LogBytes`], so a guest that floods stdout ends like one that floods `log`.

use super::errors::Violation;
use super::state::{LogLevel, SharedLog};
use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// A guest output stream feeding the call's log.
#[derive(Clone)]
pub(crate) struct LogPipe {
    log: SharedLog,
    level: LogLevel,
}

impl LogPipe {
    pub fn new(log: SharedLog, level: LogLevel) -> Self {
        Self { log, level }
    }

    fn append(&self, bytes: &[u8]) -> Result<(), Violation> {
        let text = String::from_utf8_lossy(bytes);
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let text = text.trim_end_matches('\n');
        if text.is_empty() {
            return Ok(());
        }
        log.push(self.level, text)
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
            .map_err(|v| StreamError::Trap(wasmtime::Error::new(v)))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.append(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
