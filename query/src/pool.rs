//! Where store queries run: a few threads of their own, below the priority of the threads that
//! receive and store data, with a bounded queue in front.
//!
//! On a machine with few cores a query that reads much (a trace search by a rare attribute, a
//! metric over a day) competes with the store's writer for the same CPU, and the writer falling
//! behind means a growing WAL and, at its limit, refused data. So queries yield: their threads
//! run at nice [`NICE`], which the kernel's scheduler weighs at about a tenth of a normal thread
//! when both want the CPU, and at full speed when ingest leaves the CPU idle. At most
//! `threads` queries run at once (each holding its own memory) and at most `queue` wait; beyond
//! that a query is refused at once with 503 and retry advice, as Elasticsearch's search pool and
//! Tempo's querier queue do, rather than piling up. A query whose caller gave up (timed out,
//! hung up) before it started is never run.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::ApiError;

/// How much lower than the writers query threads run (`nice` units, 0–19).
pub const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of low-priority query threads (see the module docs).
pub struct QueryPool {
    jobs: SyncSender<Job>,
}

impl QueryPool {
    /// Starts `threads` query threads (at least one) with room for `queue` waiting queries.
    pub fn new(threads: usize, queue: usize) -> QueryPool {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sift-query-{n}"))
                .spawn(move || worker(&receiver));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a query thread");
            }
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

fn worker(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.recv()
        };
        let Ok(job) = job else { return };
        // A panicking query answers its caller with an error (its sender is dropped) and the
        // thread goes on with the next one.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// Lowers this thread's scheduling priority by [`NICE`] (Linux sets niceness per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
        };
        if result != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower a query thread's priority");
        }
    }
}

/// The niceness of the calling thread (for tests).
#[cfg(all(test, target_os = "linux"))]
fn own_nice() -> i32 {
    // SAFETY: as above.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn queries_run_below_normal_priority_and_answer() {
        let pool = QueryPool::new(1, 4);
        let nice = pool.run(|| Ok(own_nice())).await.unwrap();
        assert_eq!(nice, NICE);
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
