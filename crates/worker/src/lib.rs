//! cardplane's worker: the background work that talks to the outside world from durable records.
//!
//! Today that is delivering the notification outbox (outbound.md §2) and completing operations that
//! wait for the issuer (its card credentials, §4, or consumer information, §3). The worker runs inside
//! `cardplane serve`, or alone as `cardplane worker`; any number of workers may share one
//! PostgreSQL database, since each batch is claimed under a lease in the database (see
//! [`cardplane_app::ports::OutboxTx`]). On SQLite, one process does the work.
//!
//! # Layout
//! - [`Worker`]: a few *lanes*, each a loop that delivers one batch after another
//!   ([`Platform::deliver_next_batch`]), completes operations waiting for the issuer
//!   ([`Platform::complete_next_pending`]) and, when nothing is due, waits a short poll interval.
//!
//! The worker holds no state of its own: stopping it (or killing it) at any point loses nothing. A
//! batch it was sending when killed is sent again once its lease runs out.

use cardplane_app::Platform;
use cardplane_app::notifications::Turn;
use cardplane_app::ports::IssuerBackend;
use cardplane_domain::consumer::PersonalInformation;
use cardplane_domain::delivery::AttemptOutcome;
use cardplane_domain::ids::{CardId, ConsumerId, IssuerId};
use cardplane_domain::issuer::CallbackSettings;
use cardplane_domain::operation::Operation;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the worker paces itself.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Batches sent at the same time (each lane sends one at a time).
    pub lanes: usize,
    /// How long an idle lane waits before looking again: the delay before a new notification
    /// leaves, at worst.
    pub idle_poll: Duration,
    /// How long a claimed batch is held before another worker may take it. Every attempt is cut
    /// off 5 s before its lease ends (see `Deadline`), so a live worker never outlasts its
    /// lease; a dead worker's batches wait this long before another worker sends them. The
    /// default, 15 s, gives an attempt (token fetch and notification together) the 10 s of
    /// outbound.md §2.
    pub lease: time::Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { lanes: 4, idle_poll: Duration::from_millis(100), lease: time::Duration::seconds(15) }
    }
}

/// Delivers notifications until told to stop.
pub struct Worker {
    platform: Platform,
    backend: Arc<dyn IssuerBackend>,
    settings: WorkerSettings,
    /// Names this worker in the leases it holds (unique per start).
    id: String,
}

/// A running worker.
pub struct RunningWorker {
    stop: watch::Sender<bool>,
    lanes: JoinSet<()>,
}

impl RunningWorker {
    /// Lets each lane finish the batch it is sending, then returns.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.lanes.join_next().await.is_some() {}
        tracing::info!("worker stopped");
    }
}

impl Worker {
    pub fn new(platform: Platform, backend: Arc<dyn IssuerBackend>, settings: WorkerSettings) -> Self {
        let limit = (settings.lease - time::Duration::seconds(5)).max(time::Duration::seconds(1));
        let backend = Arc::new(Deadline { inner: backend, limit: limit.unsigned_abs() });
        Self { platform, backend, settings, id: format!("worker-{}", uuid::Uuid::new_v4()) }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts the lanes on the current runtime.
    pub fn start(self) -> RunningWorker {
        let (stop, stopped) = watch::channel(false);
        let mut lanes = JoinSet::new();
        let worker = Arc::new(self);
        for lane in 0..worker.settings.lanes.max(1) {
            lanes.spawn(worker.clone().lane(lane, stopped.clone()));
        }
        tracing::info!(worker = %worker.id, lanes = worker.settings.lanes, "worker started");
        RunningWorker { stop, lanes }
    }

    async fn lane(self: Arc<Self>, lane: usize, mut stopped: watch::Receiver<bool>) {
        while !*stopped.borrow() {
            let backend = self.backend.as_ref();
            let turns = async {
                let delivered = self.platform.deliver_next_batch(backend, &self.id, self.settings.lease).await?;
                let renewed = self.platform.complete_next_pending(backend, &self.id, self.settings.lease).await?;
                Ok::<_, cardplane_app::AppError>((delivered, renewed))
            };
            let rest = match turns.await {
                Ok((Turn::Idle, Turn::Idle)) => self.settings.idle_poll,
                Ok(_) => continue,
                Err(error) => {
                    // The store is down or shutting down: nothing is lost (what was claimed stays
                    // claimed until its lease ends); look again a little later.
                    tracing::error!(lane, error = %error, "background work failed");
                    self.settings.idle_poll * 10
                }
            };
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                _ = stopped.changed() => {}
            }
        }
    }
}

/// Cuts every call to the issuer off at `limit`, however many HTTP requests it makes (token fetch,
/// a 401 and a second try): the attempt then counts as a retryable timeout. So an attempt never
/// outlives the lease it runs under, and another worker never sends a batch this one still holds.
struct Deadline {
    inner: Arc<dyn IssuerBackend>,
    limit: Duration,
}

impl Deadline {
    fn timed_out(&self) -> AttemptOutcome {
        AttemptOutcome::Retryable {
            error: format!("the attempt took longer than {} s", self.limit.as_secs()),
            retry_after: None,
        }
    }
}

#[async_trait::async_trait]
impl IssuerBackend for Deadline {
    async fn notify_operations(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        operations: &[Operation],
    ) -> AttemptOutcome {
        tokio::time::timeout(self.limit, self.inner.notify_operations(issuer, callback, operations))
            .await
            .unwrap_or_else(|_| self.timed_out())
    }

    async fn notify_digital_card(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        operation: &Operation,
    ) -> AttemptOutcome {
        tokio::time::timeout(self.limit, self.inner.notify_digital_card(issuer, callback, operation))
            .await
            .unwrap_or_else(|_| self.timed_out())
    }

    async fn consumer_information(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        consumer: &ConsumerId,
        card: Option<&CardId>,
    ) -> Result<PersonalInformation, AttemptOutcome> {
        tokio::time::timeout(self.limit, self.inner.consumer_information(issuer, callback, consumer, card))
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
    }

    async fn card_credentials(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        card: &CardId,
    ) -> Result<String, AttemptOutcome> {
        tokio::time::timeout(self.limit, self.inner.card_credentials(issuer, callback, card))
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
    }
}
