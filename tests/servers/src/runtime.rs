//! Runs an axum router on its own thread and runtime, bound to a free loopback port.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use axum::Router;
use tokio::sync::oneshot;

/// A server running on a background thread; dropping it stops the server and frees the port.
#[derive(Debug)]
pub(crate) struct Running {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Binds `127.0.0.1:0` and serves `router` until dropped.
    ///
    /// The server gets a thread and runtime of its own rather than a task on the caller's runtime: tests
    /// of the app block their runtime in places (the wasm test host, sync tests), and a server sharing
    /// that runtime would stop answering.
    pub(crate) fn start(name: &str, router: Router) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .with_context(|| format!("binding a loopback port for the {name} test server"))?;
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("building the runtime of the {name} test server"))?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-test-server"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(err) => panic!("adopting the listener of a test server: {err}"),
                    };
                    // Stopping must not wait for open connections (a client may hold a keep-alive
                    // connection or be half-way through a 100 MiB download), so the server future is
                    // simply dropped, and the runtime with it.
                    tokio::select! {
                        result = axum::serve(listener, router) => {
                            if let Err(err) = result {
                                panic!("test server stopped: {err}");
                            }
                        }
                        _ = stop => {}
                    }
                });
            })
            .with_context(|| format!("spawning the {name} test server thread"))?;
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The receiver is gone only if the server thread already ended; nothing to stop then.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Joining makes "dropped" mean "port closed"; a panic of the server thread was already
            // printed, and re-raising it inside a drop would abort the test process.
            let _ = thread.join();
        }
    }
}
