//! Stages after the WAL: everything that reads the log rather than a socket. Tail sampling and
//! the logs follower live here ([`tail_sampling`]); the exporters ([`crate::exporter`]) are
//! stages too. Which entries each reads is the plan's business ([`crate::plan`]).
//!
//! This module is the one loop every such stage runs, on its own [`WalConsumer`]: read a batch, hand it to the [`Stage`], move the checkpoint as far as the stage
//! allows, and again; a tick for stages with timed work; read errors backed off; an end on the
//! stop signal or once a closed log is drained.
//!
//! Cancel-safety: the only future the loop drops is the read ([`WalConsumer::next_batch`] is
//! cancel-safe: a dropped read loses and skips nothing). A stage's own work runs to completion
//! outside the `select!`, and watches the stop signal itself where it may wait long (retries).
//!
//! Checkpoints: after each event the checkpoint moves to [`Stage::checkpoint`] of the end of what
//! the stage has handled (persisted at most every 200 ms by the WAL). At the end the last value is
//! persisted for good; after a normal end the stage first [`finishes`](Stage::finish) and may allow
//! more. A stage stopped in the middle of its work ([`Flow::Stopped`]: output it could not write)
//! moves nothing further, so a restart redoes that work.

pub mod tail_sampling;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sift_wal::{WalConsumer, WalRecord};
use tokio::sync::watch;

/// The future a stage's handler returns.
pub type StageFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What woke the driver.
pub enum Event {
    /// Records read from the log, in order (never empty).
    Records(Vec<WalRecord>),
    /// The stage's [`Stage::tick`] came round.
    Tick,
}

/// What a stage made of an event.
pub enum Flow {
    /// Handled; `Some(end)`: everything before `end` was read and handled (the driver then asks
    /// [`Stage::checkpoint`] where the checkpoint may go).
    Handled(Option<u64>),
    /// Stopped before its work was done: nothing more is committed.
    Stopped,
}

/// One WAL consumer's work.
pub trait Stage: Send {
    /// The consumer's name, for logs.
    fn name(&self) -> &str;

    /// About how many bytes of log to read at once.
    fn batch_bytes(&self) -> usize {
        BATCH_BYTES
    }

    /// How often [`Event::Tick`] comes when no records do (`None`: never).
    fn tick(&self) -> Option<Duration> {
        None
    }

    /// Called before each read (gauges).
    fn before_read(&mut self, _consumer: &WalConsumer) {}

    /// Handles an event. `consumer` may be read further (batching); `stop` is for waits.
    fn handle<'a>(
        &'a mut self,
        event: Event,
        consumer: &'a mut WalConsumer,
        stop: &'a mut watch::Receiver<bool>,
    ) -> StageFuture<'a, Flow>;

    /// Where the checkpoint may move once everything before `handled_end` is handled (`None`:
    /// where it is).
    fn checkpoint(&self, handled_end: u64) -> Option<u64>;

    /// Runs once after a normal end (the log drained or stopped between events).
    fn finish(&mut self) -> StageFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Bytes of log read per batch, unless a stage says otherwise.
pub const BATCH_BYTES: usize = 4 << 20;

/// How long a read error waits before the read is tried again.
const READ_RETRY: Duration = Duration::from_secs(1);

/// Runs `stage` on `consumer` until the log is closed and drained or `stop` is set.
pub async fn drive(mut stage: impl Stage, mut consumer: WalConsumer, mut stop: watch::Receiver<bool>) {
    let mut tick = stage.tick().map(|every| {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    let mut handled_end: Option<u64> = None;
    let mut committed: Option<u64> = None;
    let mut stopped_midway = false;
    loop {
        stage.before_read(&consumer);
        let event = tokio::select! {
            next = consumer.next_batch(stage.batch_bytes()) => match next {
                Ok(Some(records)) => Event::Records(records),
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(consumer = stage.name(), error = %e, "cannot read the WAL; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(READ_RETRY) => continue,
                        () = stopped(&mut stop) => break,
                    }
                }
            },
            () = next_tick(&mut tick) => Event::Tick,
            () = stopped(&mut stop) => break,
        };
        match stage.handle(event, &mut consumer, &mut stop).await {
            Flow::Handled(end) => handled_end = end.max(handled_end),
            Flow::Stopped => {
                stopped_midway = true;
                break;
            }
        }
        if let Some(position) = handled_end.and_then(|end| stage.checkpoint(end)) {
            commit(&stage, &mut consumer, position, false);
            committed = Some(position);
        }
    }
    if !stopped_midway {
        stage.finish().await;
        if let Some(position) = handled_end.and_then(|end| stage.checkpoint(end)) {
            committed = Some(position);
        }
    }
    if let Some(position) = committed {
        commit(&stage, &mut consumer, position, true);
    }
    tracing::debug!(consumer = stage.name(), "WAL consumer stopped");
}

fn commit(stage: &impl Stage, consumer: &mut WalConsumer, position: u64, force: bool) {
    if let Err(e) = consumer.commit(position, force) {
        tracing::error!(consumer = stage.name(), error = %e, "cannot store the WAL checkpoint");
    }
}

/// Resolves at the next tick, or never without one.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(tick) => {
            tick.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves once `stop` is set (holding no borrow of the flag afterwards).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
