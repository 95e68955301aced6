//! Starting and stopping the HTTP server.

use crate::config::Settings;
use anyhow::Context;
use cardplane_api::{ApiState, admin::AdminAccess};
use cardplane_app::Platform;
use cardplane_app::ports::{Clock, SystemClock};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server that is running.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The use cases it serves (for tests that drive a worker of their own on the same store).
    pub platform: Platform,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Stops taking connections, lets in-flight requests finish, then closes the store (which
    /// finishes every write it accepted).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.context("the server task failed")?
    }

    /// Waits until the server stops on its own (after `shutdown` resolved).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the server task failed")?
    }
}

/// Opens the platform on the wall clock, onboards the configured issuers, binds and serves until
/// [`RunningServer::stop`].
pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
    start_with(settings, Arc::new(SystemClock), std::future::pending()).await
}

/// [`start`], on `clock`, serving until `shutdown` resolves (or [`RunningServer::stop`]).
pub async fn start_with(
    settings: Settings,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningServer> {
    let platform = crate::platform(&settings, clock.clone()).await?;
    crate::onboard_configured_issuers(&platform, &settings).await?;
    let listener =
        TcpListener::bind(settings.listen).await.with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let state = ApiState::new(platform.clone(), AdminAccess::new(settings.admin_token.clone()), settings.sandbox);
    let app = cardplane_api::router(state);
    tracing::info!(%addr, database = %crate::redact_url(&settings.database_url), "cardplane listening");
    let worker = settings.worker.then(|| worker(&platform, &settings, clock).start());
    let served_platform = platform.clone();
    let task = tokio::spawn(async move {
        let signal = async move {
            tokio::select! {
                () = shutdown => {}
                _ = stopped => {}
            }
            tracing::info!("shutting down: finishing in-flight requests");
        };
        let served = crate::serving::serve(listener, app, settings.http_threads, signal).await;
        if let Some(worker) = worker {
            worker.stop().await;
        }
        close(&platform).await;
        served.context("the HTTP server failed")
    });
    Ok(RunningServer { addr, platform: served_platform, stop: Some(stop), task })
}

/// The worker of this process: notification delivery through the issuers' HTTP backends.
pub fn worker(platform: &Platform, settings: &Settings, clock: Arc<dyn Clock>) -> cardplane_worker::Worker {
    let backend = Arc::new(cardplane_connectors::HttpIssuerBackend::new(&settings.outbound, clock));
    cardplane_worker::Worker::new(platform.clone(), backend, settings.worker_settings.clone())
}

async fn close(platform: &Platform) {
    platform.store().close().await;
    tracing::info!("cardplane stopped");
}

/// A future that resolves on SIGTERM or SIGINT (Ctrl-C).
///
/// The handlers are installed here, when it is called, not when the future is first polled: the
/// server is polled for the first time inside its own task, and a SIGTERM that arrives before that
/// (a supervisor stopping a server that has just said it listens) would otherwise kill the process
/// with the default action instead of draining it.
pub fn termination() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
