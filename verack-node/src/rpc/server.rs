//! The HTTP side: accepting connections, routing, authentication and status codes, as
//! Bitcoin Core's `src/httpserver.cpp` (`http_request_cb`) and `src/httprpc.cpp`
//! (`HTTPReq_JSONRPC`) do it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::auth::RpcAuth;
use super::backend::RpcBackend;
use super::dispatch;

/// Requests executed at once, Core's `-rpcthreads` default (`DEFAULT_HTTP_THREADS`).
pub const RPC_THREADS: usize = 16;

/// Requests allowed to wait for an RPC thread before the server answers
/// 503 "Work queue depth exceeded", Core's `-rpcworkqueue` default (`DEFAULT_HTTP_WORKQUEUE`).
pub const RPC_WORK_QUEUE: usize = 64;

/// Largest request body accepted, Core's `MAX_SIZE` (32 MiB), which it gives libevent as
/// the body limit; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 0x0200_0000;

/// How long a connection may take to send a request's headers, including the idle time
/// on a kept-alive connection before the next request: Core's `-rpcservertimeout`
/// default (`DEFAULT_HTTP_SERVER_TIMEOUT`, 30 s).
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`serve`] lets requests in progress finish after cancellation before it drops
/// their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Delay before answering a wrong password, Core's brute-force deterrent (250 ms).
const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(250);

/// Core's `WWW_AUTH_HEADER_DATA`.
const WWW_AUTH: &str = "Basic realm=\"jsonrpc\"";

/// libevent's default content type, which Core's non-JSON replies carry.
const TEXT_HTML: &str = "text/html; charset=ISO-8859-1";

struct State {
    backend: Arc<dyn RpcBackend>,
    auth: RpcAuth,
    /// Bounds concurrent execution to [`RPC_THREADS`].
    threads: Semaphore,
    /// Requests executing or waiting to, for the work-queue limit.
    queued: AtomicUsize,
}

/// Serves Bitcoin Core-compatible JSON-RPC on `listener` until `shutdown` is cancelled.
///
/// Accepts `POST /` with HTTP Basic credentials from `auth`; each request runs on the
/// blocking thread pool (at most [`RPC_THREADS`] at once) so [`RpcBackend`] methods may
/// block briefly. On cancellation it stops accepting, lets requests in progress finish
/// (their replies are sent, so `stop` gets its answer), closes idle keep-alive connections,
/// and returns; connections still busy after [`SHUTDOWN_GRACE`] are dropped.
///
/// Accept errors (e.g. out of file descriptors) are logged and retried after a short
/// pause rather than ending the server, as Core's libevent loop does.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn RpcBackend>,
    auth: RpcAuth,
    shutdown: CancellationToken,
) {
    let state = Arc::new(State {
        backend,
        auth,
        threads: Semaphore::new(RPC_THREADS),
        queued: AtomicUsize::new(0),
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(
                        stream,
                        peer,
                        Arc::clone(&state),
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RPC server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("RPC server: dropping connections still busy after shutdown grace");
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(req, peer, &state).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(SERVER_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            // Finish the request in progress (if any), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "RPC connection ended with an error");
    }
}

fn reply(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    response
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = reply(StatusCode::UNAUTHORIZED, None, Bytes::new());
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTH));
    response
}

/// Decrements the work-queue count however the request ends.
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, state: &State) -> Response<Full<Bytes>> {
    // Core's http_request_cb: methods libevent does not map are refused before routing.
    let method = req.method().clone();
    if ![Method::GET, Method::POST, Method::HEAD, Method::PUT].contains(&method) {
        return reply(StatusCode::METHOD_NOT_ALLOWED, None, Bytes::new());
    }
    // Only "/" (exact, query included) has a handler: no wallet, so "/wallet/…" is 404 too.
    if req.uri().path_and_query().map(|pq| pq.as_str()) != Some("/") {
        return reply(StatusCode::NOT_FOUND, None, Bytes::new());
    }
    // Core queues requests for its RPC threads and refuses them when the queue is full.
    let waiting = state.queued.fetch_add(1, Ordering::AcqRel);
    let slot = QueueSlot(&state.queued);
    if waiting >= RPC_THREADS + RPC_WORK_QUEUE {
        tracing::warn!(%peer, "RPC request rejected because the work queue is full");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(TEXT_HTML),
            "Work queue depth exceeded",
        );
    }
    if method != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            Some(TEXT_HTML),
            "JSONRPC server handles only POST requests",
        );
    }
    let Some(authorization) = req.headers().get(AUTHORIZATION) else {
        return unauthorized();
    };
    if !state.auth.authorizes(authorization.as_bytes()) {
        tracing::warn!(%peer, "RPC: incorrect password attempt");
        tokio::time::sleep(AUTH_FAILURE_DELAY).await;
        return unauthorized();
    }
    // A declared Content-Length over the limit is refused before reading anything.
    if req.body().size_hint().lower() > MAX_BODY_BYTES as u64 {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, None, Bytes::new());
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return reply(StatusCode::PAYLOAD_TOO_LARGE, None, Bytes::new());
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "RPC: failed reading request body");
            return reply(StatusCode::BAD_REQUEST, None, Bytes::new());
        }
    };
    let Ok(_permit) = state.threads.acquire().await else {
        // The semaphore is never closed.
        return reply(StatusCode::SERVICE_UNAVAILABLE, None, Bytes::new());
    };
    let backend = Arc::clone(&state.backend);
    let outcome =
        tokio::task::spawn_blocking(move || dispatch::handle_body(&body, backend.as_ref())).await;
    drop(slot);
    match outcome {
        Ok(http) => {
            let status =
                StatusCode::from_u16(http.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match http.body {
                Some(json) => reply(status, Some("application/json"), json),
                None => reply(status, None, Bytes::new()),
            }
        }
        Err(e) => {
            // A backend method panicked; the node keeps running, the client sees a 500.
            tracing::error!(%peer, error = %e, "RPC handler panicked");
            reply(StatusCode::INTERNAL_SERVER_ERROR, None, Bytes::new())
        }
    }
}
