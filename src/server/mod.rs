//! The HTTP server loop: accepts connections up to `[server] max_connections` and serves each
//! with hyper (HTTP/1.1 and HTTP/2), cutting the ones that only hold a slot — a request head that
//! does not complete within `header_read_timeout`, or no request and no byte moving for
//! `idle_timeout`. Request time is bounded by the router's timeout layer (see [`crate::app`]).
//!
//! A connection's watchdog, not hyper's own header timer, does both cuts: hyper's timer also
//! runs while a kept-alive HTTP/1.1 connection waits for its next request, which would make the
//! header timeout the keep-alive time too (and a proxy's pooled connections race our closes).

mod activity;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::Service;

use self::activity::{Activity, Cut, Watched};
use crate::config::ServerConfig;

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections finish
/// their requests (for at most `request_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: at the limit, new connections wait in the kernel's backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (router, limits, stop) = (router.clone(), limits.clone(), stop_rx.clone());
        tokio::spawn(async move {
            serve_connection(stream, peer, router, &limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = limits.max_connections as u32;
    if tokio::time::timeout(limits.request_timeout, slots.acquire_many(open)).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: &ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |mut req: hyper::Request<Incoming>| {
            // Handlers read the peer address from here (the client's address for limits).
            req.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = activity.request_started();
            let answer = router.clone().call(req);
            async move {
                let res = answer.await;
                drop(in_flight);
                res
            }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The watchdog below times request heads; see the module comment.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(activity::tick_for(limits));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => match activity.check(limits) {
                Some(Cut::HalfSent) => {
                    tracing::debug!(%peer, "closing a connection whose request head did not arrive in time");
                    return;
                }
                Some(Cut::Idle) => return,
                None => {}
            },
        }
    }
}
