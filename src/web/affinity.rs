//! One upstream HTTP/1.1 connection per client connection, driven in the client connection's
//! own task.
//!
//! Why: through the shared pool (`hyper_util` legacy `Client`) every proxied request went to
//! the pool connection's task and its answer came back, two task wake-ups per request, often
//! across the two worker threads; perf put a quarter of the gateway's CPU on proxied requests
//! in the scheduler (`finish_task_switch`, futex wake-ups). Here the client connection and
//! its upstream connection are polled by the same task, as an event loop like nginx does it.
//!
//! Properties:
//! - an upstream connection carries the requests of one client connection only (no response
//!   of one user's request can reach another user's connection through a desynced upstream);
//! - it lives as long as that client connection, and is closed with it;
//! - a request that could not be sent on it (upstream closed the idle connection) goes through
//!   the shared pool instead; HTTP/2 clients with concurrent streams and WebSocket upgrades use
//!   the pool too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

type ConnFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The upstream side of one client connection (shared by its requests).
pub struct Affinity {
    sender: Mutex<Option<SendRequest<Incoming>>>,
    spawn: mpsc::UnboundedSender<ConnFuture>,
}

/// Why a request did not go over the connection; `Retry` gives the request back unsent.
pub enum SendError {
    Retry(Box<Request<Incoming>>),
    Failed(hyper::Error),
}

impl Affinity {
    /// The handle for the service and the receiver that [`drive`] polls.
    pub fn new() -> (Affinity, mpsc::UnboundedReceiver<ConnFuture>) {
        let (spawn, rx) = mpsc::unbounded_channel();
        (
            Affinity {
                sender: Mutex::new(None),
                spawn,
            },
            rx,
        )
    }

    /// Sends `req` on this client's upstream connection, opening it first when there is none
    /// (or the last one closed). A connect failure or a connection found busy or closed gives
    /// the request back unsent.
    pub async fn send(
        &self,
        authority: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, SendError> {
        let kept = self.sender.lock().ok().and_then(|mut s| s.take());
        let mut sender = match kept {
            Some(s) if s.is_ready() => s,
            _ => match self.connect(authority).await {
                Some(s) => s,
                None => return Err(SendError::Retry(Box::new(req))),
            },
        };
        let answer = sender.try_send_request(req);
        // Back in the slot for the next request: HTTP/1 takes one at a time, and this client
        // connection sends its next request only after this answer is done.
        if let Ok(mut slot) = self.sender.lock() {
            *slot = Some(sender);
        }
        answer.await.map_err(|mut e| match e.take_message() {
            Some(req) => SendError::Retry(Box::new(req)),
            None => SendError::Failed(e.into_error()),
        })
    }

    async fn connect(&self, authority: &str) -> Option<SendRequest<Incoming>> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(authority),
        )
        .await
        .ok()?
        .ok()?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .ok()?;
        self.spawn
            .send(Box::pin(async move {
                let _ = conn.await;
            }))
            .ok()?;
        // The handshake of HTTP/1 is immediate; `ready` only confirms the connection is open.
        std::future::poll_fn(|cx| sender.poll_ready(cx))
            .await
            .ok()?;
        Some(sender)
    }
}

/// Polls `conn` (a client connection) and the upstream connections its requests opened, in
/// the calling task, until the client connection ends; then drops (closes) the upstream ones.
/// Without `opened` (no affinity for this connection) it only awaits `conn`.
pub async fn drive<F: Future>(conn: F, opened: Option<mpsc::UnboundedReceiver<ConnFuture>>) {
    let Some(mut opened) = opened else {
        conn.await;
        return;
    };
    let mut upstream: Vec<ConnFuture> = Vec::new();
    let mut conn = std::pin::pin!(conn);
    std::future::poll_fn(|cx| {
        while let Poll::Ready(Some(f)) = opened.poll_recv(cx) {
            upstream.push(f);
        }
        upstream.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        conn.as_mut().poll(cx).map(|_| ())
    })
    .await;
}
