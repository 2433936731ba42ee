//! Guest stdout/stderr: every instance of one host writes into one buffer that tests read with
//! [`SpinHost::logs`](crate::SpinHost::logs), echoed to the host's stderr when `SPIN_TEST_HOST_ECHO=1`.

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The environment variable that turns on echoing of guest output.
pub(crate) const ECHO_VARIABLE: &str = "SPIN_TEST_HOST_ECHO";

/// The output of all instances of one host, in the order it was written.
#[derive(Clone)]
pub(crate) struct LogBuffer {
    bytes: Arc<Mutex<Vec<u8>>>,
    echo: bool,
}

impl LogBuffer {
    pub(crate) fn new(echo: bool) -> Self {
        Self {
            bytes: Arc::default(),
            echo,
        }
    }

    pub(crate) fn append(&self, bytes: &[u8]) {
        self.bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        if self.echo {
            // Echo is a debugging aid; a closed stderr must not fail the guest's write.
            let _ = std::io::stderr().write_all(bytes);
        }
    }

    /// A line from the host itself (denied requests, traps), marked so it cannot pass for guest output.
    pub(crate) fn host_line(&self, line: &str) {
        self.append(format!("[spin-test-host] {line}\n").as_bytes());
    }

    pub(crate) fn contents(&self) -> String {
        let bytes = self
            .bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A guest's stdout or stderr: both go to the same [`LogBuffer`], as they would interleave on a terminal.
#[derive(Clone)]
pub(crate) struct GuestOutput(pub(crate) LogBuffer);

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    // Writes complete immediately, so the guest's blocking `write` needs no background task.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
