//! Serving HTTP on threads of its own: one single-threaded runtime per core, each owning the
//! connections handed to it.
//!
//! One accept loop (on the process's shared runtime) hands each new connection, in turn, to one of
//! the serving threads, which serves it to the end on its own current-thread runtime. A request's
//! work (parsing, the JWE's ECDH, the answer) thus never moves between threads: the shared
//! work-stealing runtime spent a measurable share of the machine looking for work on the other
//! worker and waking it (docs/PERFORMANCE.md, twentieth sitting). Handing connections out in turn,
//! rather than letting each thread accept on a `SO_REUSEPORT` socket of its own, keeps the threads'
//! shares even: the kernel's hash of 64 connections over two sockets is seldom 32 and 32, and a
//! closed-loop client then waits on the busier thread. Everything else (the worker's deliveries,
//! the store's background threads, shutdown) stays on the shared runtime.

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// A connection the accept loop took, on its way to a serving thread.
type Handoff = (std::net::TcpStream, SocketAddr);

/// Serves `app` on `listener` with `threads` serving threads until `shutdown` resolves, then lets
/// every connection finish its request in flight (as `axum::serve`'s graceful shutdown does) and
/// returns once all threads have.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    threads: usize,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let threads = threads.max(1);
    let (stop, stopped) = watch::channel(false);
    let mut lanes = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for index in 0..threads {
        let (handoff, connections) = mpsc::unbounded_channel::<Handoff>();
        let (done, finish) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (app, mut stopped) = (app.clone(), stopped.clone());
        std::thread::Builder::new().name(format!("http-{index}")).spawn(move || {
            let served = runtime.block_on(async move {
                // `tap_io` only so that axum's `ConnectInfo<SocketAddr>` (the admin API's peer
                // check) knows this listener's address type.
                let listener = Handed { connections, addr }.tap_io(|_| {});
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
            });
            let _ = done.send(served);
        })?;
        lanes.push(handoff);
        finished.push(finish);
    }

    let mut next = 0;
    let mut shutdown = std::pin::pin!(shutdown);
    let accepted = loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break Ok(()),
            // axum's own accept: it retries what a client caused and backs off on the rest (EMFILE).
            accepted = Listener::accept(&mut listener) => accepted,
        };
        // Out of this runtime's reactor, into the serving thread's (which registers it again).
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%peer, %error, "cannot hand a connection over; closed");
                continue;
            }
        };
        if lanes[next].send((stream, peer)).is_err() {
            break Err(io::Error::other(format!("HTTP serving thread {next} has stopped")));
        }
        next = (next + 1) % lanes.len();
    };
    drop(listener);
    let _ = stop.send(true);
    drop(lanes);
    for (index, finish) in finished.into_iter().enumerate() {
        match finish.await {
            Ok(served) => served?,
            Err(_) => return Err(io::Error::other(format!("HTTP serving thread {index} panicked"))),
        }
    }
    accepted
}

/// The connections the accept loop handed to one serving thread, as axum's [`Listener`].
struct Handed {
    connections: mpsc::UnboundedReceiver<Handoff>,
    addr: SocketAddr,
}

impl Listener for Handed {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, peer)) = self.connections.recv().await else {
                // The accept loop has ended: the graceful shutdown takes it from here.
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, peer),
                Err(error) => tracing::warn!(%peer, %error, "cannot take a connection over; closed"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    /// One request on a connection of its own; the body of the answer.
    async fn fetch(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("sends");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("reads");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer.split("\r\n\r\n").nth(1).expect("a body").to_owned()
    }

    fn start(
        app: Router,
        threads: usize,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<io::Result<()>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let listener = TcpListener::from_std(listener).expect("a tokio listener");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, app, threads, async move {
            let _ = stopped.await;
        }));
        (addr, stop, served)
    }

    #[tokio::test]
    async fn connections_are_served_by_each_thread_in_turn_with_their_peer_address() {
        let app = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("{} {}", std::thread::current().name().unwrap_or("?"), peer.ip())
            }),
        );
        let (addr, stop, served) = start(app, 3);
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(fetch(addr, "/").await);
        }
        let expected: Vec<String> = [0, 1, 2, 0, 1, 2].iter().map(|i| format!("http-{i} 127.0.0.1")).collect();
        assert_eq!(seen, expected);
        stop.send(()).expect("still serving");
        served.await.expect("the task ends").expect("a clean stop");
    }

    #[tokio::test]
    async fn a_request_in_flight_is_answered_after_the_stop_and_then_nothing_is_accepted() {
        let started = Arc::new(Notify::new());
        let app = {
            let started = Arc::clone(&started);
            Router::new().route(
                "/slow",
                get(move || async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            )
        };
        let (addr, stop, served) = start(app, 2);
        let in_flight = tokio::spawn(fetch(addr, "/slow"));
        started.notified().await;
        stop.send(()).expect("still serving");
        assert_eq!(in_flight.await.expect("the request ends"), "done");
        served.await.expect("the task ends").expect("a clean stop");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "a connection was accepted after the stop");
    }
}
