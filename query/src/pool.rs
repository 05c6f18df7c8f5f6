//! Where store queries run: a few threads of their own, with a bounded queue in front, that yield
//! to the threads that receive and store data once a query has run a while.
//!
//! On a machine with few cores a query that reads much (a trace search by a rare attribute, a
//! metric over a day) competes with the store's writer for the same CPU, and the writer falling
//! behind means a growing WAL and, at its limit, refused data. So a query that has not answered
//! within [`PROMPT`] has its thread lowered to nice [`NICE`] (which the kernel's scheduler weighs
//! at about a tenth of a normal thread when both want the CPU, and at full speed when ingest
//! leaves the CPU idle) for the rest of its work. The store's own threads (its write loop, merges,
//! index writers) run at [`STORE_NICE`], so a query in its prompt goes before them and a lowered
//! one after them. A lookup — a trace by id, a metric from its rollups — mostly answers within the
//! prompt: during a 20-minute soak on 2 cores a trace by id took 10 ms at p50 and 23 ms at p99
//! (soak Z in `benches/results/2026-12-01-queries.md`), 18 and 56 ms with the store's threads at
//! the receivers' priority (soak X), 25 and 204 ms run at nice 10 from the start (soak U).
//! A thread cannot raise its own priority again without privilege, so a lowered thread ends after
//! its query and a supervisor thread (which never runs queries) starts another in its place: a
//! thread inherits its creator's priority. At most `threads` queries run at once (each holding its
//! own memory) and at most `queue` wait; beyond that a query is refused at once with 503 and
//! retry advice, as Elasticsearch's search pool and Tempo's querier queue do, rather than piling
//! up. A query whose caller gave up (timed out, hung up) before it started is never run.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ApiError;

/// How much lower than the writers a query's thread runs once it has run [`PROMPT`] (`nice`
/// units, 0–19).
pub const NICE: i32 = 10;

/// How long a query runs at the writers' priority.
pub const PROMPT: Duration = Duration::from_millis(50);

/// How much lower than the receivers the store's own threads run (its write loop, merges and the
/// index writers' threads, which inherit it): below a query in its [`PROMPT`], above one lowered
/// to [`NICE`]. Acknowledgements do not wait for them (data is acknowledged once in the WAL), and
/// they need the CPU on average, not at every moment: nice 5 weighs about a third of a normal
/// thread when both want the CPU, full speed when it is idle.
pub const STORE_NICE: i32 = 5;

/// Lowers the calling thread's priority by `by` nice units (at most to 19); threads it starts
/// afterwards inherit the new priority. It cannot be raised again without privilege.
pub fn lower_this_thread(by: i32) {
    set_nice(thread_id(), (own_nice() + by).min(19));
}

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of query threads (see the module docs).
pub struct QueryPool {
    jobs: SyncSender<Job>,
}

/// What a query thread is doing, as its supervisor sees it.
enum Slot {
    Idle,
    Busy {
        /// The thread's id, to lower its priority.
        tid: i32,
        since: Instant,
        lowered: bool,
    },
    /// Ended after a lowered query: to be started again.
    Gone,
    /// Ended because the pool is gone.
    Closed,
}

struct Shared {
    jobs: Mutex<Receiver<Job>>,
    slots: Mutex<Vec<Slot>>,
    /// Signalled when a query starts or a thread ends.
    changed: Condvar,
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl QueryPool {
    /// Starts `threads` query threads (at least one) with room for `queue` waiting queries.
    pub fn new(threads: usize, queue: usize) -> QueryPool {
        QueryPool::start(threads, queue, PROMPT)
    }

    fn start(threads: usize, queue: usize, prompt: Duration) -> QueryPool {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue);
        let shared = Arc::new(Shared {
            jobs: Mutex::new(receiver),
            slots: Mutex::new((0..threads.max(1)).map(|_| Slot::Gone).collect()),
            changed: Condvar::new(),
        });
        let spawned = std::thread::Builder::new()
            .name("sift-query-supervisor".into())
            .spawn(move || supervise(&shared, prompt));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the query threads' supervisor");
        }
        QueryPool { jobs }
    }

    /// Runs `query` on a query thread and waits for its answer; refused with 503 if the queue is
    /// full. If the returned future is dropped before the query starts, it never runs.
    pub async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if answer.is_closed() {
                return;
            }
            let _ = answer.send(query());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::Unavailable(
                    "too many queries are running or waiting; retry shortly".into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::Internal("the query threads are gone".into()));
            }
        }
        answered
            .await
            .map_err(|_| ApiError::Internal("the query failed before answering".into()))?
    }
}

/// Starts the query threads, lowers each query's thread once it has run `prompt`, and starts a
/// thread again in place of one that ended; returns once the pool is gone.
fn supervise(shared: &Arc<Shared>, prompt: Duration) {
    let base = own_nice();
    let mut slots = shared.slots();
    loop {
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        for (n, slot) in slots.iter_mut().enumerate() {
            match slot {
                Slot::Closed => return,
                Slot::Gone => {
                    let worker = shared.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("sift-query-{n}"))
                        .spawn(move || work(&worker, n));
                    match spawned {
                        Ok(_) => *slot = Slot::Idle,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start a query thread");
                            // Try again in a while.
                            let retry = now + Duration::from_secs(1);
                            wake = Some(wake.map_or(retry, |wake| wake.min(retry)));
                        }
                    }
                }
                Slot::Busy { tid, since, lowered } if !*lowered => {
                    let due = *since + prompt;
                    if due <= now {
                        set_nice(*tid, (base + NICE).min(19));
                        *lowered = true;
                    } else {
                        wake = Some(wake.map_or(due, |wake| wake.min(due)));
                    }
                }
                Slot::Busy { .. } | Slot::Idle => {}
            }
        }
        slots = match wake {
            Some(wake) => {
                let wait = wake.saturating_duration_since(Instant::now());
                shared
                    .changed
                    .wait_timeout(slots, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared.changed.wait(slots).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Query thread `n`: runs queries until one has its priority lowered or the pool is gone.
fn work(shared: &Shared, n: usize) {
    let tid = thread_id();
    loop {
        let job = {
            let jobs = shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.recv()
        };
        let Ok(job) = job else {
            shared.slots()[n] = Slot::Closed;
            shared.changed.notify_all();
            return;
        };
        shared.slots()[n] = Slot::Busy {
            tid,
            since: Instant::now(),
            lowered: false,
        };
        shared.changed.notify_all();
        // A panicking query answers its caller with an error (its sender is dropped) and the
        // thread goes on with the next one.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        let mut slots = shared.slots();
        if matches!(slots[n], Slot::Busy { lowered: true, .. }) {
            slots[n] = Slot::Gone;
            shared.changed.notify_all();
            return;
        }
        slots[n] = Slot::Idle;
    }
}

/// The calling thread's id (Linux sets niceness per thread); 0 elsewhere.
fn thread_id() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Sets a thread's niceness (only ever raised: lowering needs privilege).
fn set_nice(tid: i32, nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its arguments.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower a thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (tid, nice);
}

/// The niceness of the calling thread.
fn own_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority only reads its arguments (-1 is also a valid niceness, so errors
        // are not told apart: a thread whose niceness cannot be read is taken as it says).
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_query_runs_at_normal_priority_then_lower_and_answers() {
        let base = own_nice();
        let pool = QueryPool::start(1, 4, Duration::from_millis(300));
        let first = pool.run(|| Ok((own_nice(), thread_id()))).await.unwrap();
        assert_eq!(first.0, base, "a query starts at the writers' priority");
        // A query still running after the prompt is lowered...
        let long = pool
            .run(move || {
                let started = Instant::now();
                while own_nice() == base && started.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok((own_nice(), thread_id(), started.elapsed()))
            })
            .await
            .unwrap();
        assert_eq!(long.0, (base + NICE).min(19), "lowered after {:?}", long.2);
        assert!(long.2 >= Duration::from_millis(250), "lowered too early: {:?}", long.2);
        assert_eq!(long.1, first.1, "one thread ran both");
        // ...and the next runs on a new thread, at the writers' priority again.
        let next = pool.run(|| Ok((own_nice(), thread_id()))).await.unwrap();
        assert_eq!(next.0, base);
        assert_ne!(next.1, long.1);
        let err = pool
            .run(|| -> Result<(), ApiError> { Err(ApiError::BadRequest("q: bad".into())) })
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
        let panicked = pool.run(|| -> Result<(), ApiError> { panic!("boom") }).await;
        assert!(matches!(panicked, Err(ApiError::Internal(_))));
        assert_eq!(pool.run(|| Ok(7)).await.unwrap(), 7, "the thread survives a panic");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_abandoned_queries_never_run() {
        let pool = Arc::new(QueryPool::new(1, 1));
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let blocked = Arc::new(Mutex::new(blocked));
        let ran = Arc::new(AtomicUsize::new(0));
        // One query holds the only thread...
        let hold = {
            let (pool, blocked) = (pool.clone(), blocked.clone());
            tokio::spawn(async move {
                pool.run(move || {
                    let _ = blocked.lock().unwrap().recv();
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...one waits in the queue and is abandoned by its caller...
        let abandoned = {
            let (pool, ran) = (pool.clone(), ran.clone());
            tokio::spawn(async move {
                pool.run(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...and the next finds the queue full.
        let refused = pool.run(|| Ok(())).await.unwrap_err();
        assert!(matches!(refused, ApiError::Unavailable(_)), "{refused:?}");
        abandoned.abort();
        let _ = abandoned.await;
        release.send(()).unwrap();
        hold.await.unwrap().unwrap();
        // The thread takes the abandoned query off the queue (and drops it) before the next.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.run(|| Ok(1)).await.unwrap(), 1);
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a query nobody waits for is not run");
    }
}
