//! Independent runs (seeds, configurations) side by side, each on one core.
//!
//! At CPU scale one run is a chain of small matrix products that a second thread speeds up by
//! far less than 2× (measured on the shipped CIFAR subset: a step 1.4×, a Hessian-vector
//! product 1.1×, a measurement not at all), while two runs on two cores take the time of one.
//! So eoslab parallelises across runs: with more than one worker each task runs on its own
//! single-threaded rayon pool, which makes every parallel kernel inside it sequential, so a
//! task computes exactly the bits of a single-worker run with `RAYON_NUM_THREADS=1` (tested in
//! `tests/training.rs`). With one worker, tasks run one after the other on the calling thread
//! and their kernels may use rayon's global pool (`RAYON_NUM_THREADS`), as for one large run.
use crate::{Error, Result};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Workers to use when none is given: `EOSLAB_JOBS` if set, else 1.
///
/// One by default because a GPU run or a paper-size CPU run wants the whole machine; the
/// notebook driver and CI set `EOSLAB_JOBS` to the number of cores.
pub fn default_jobs() -> usize {
    std::env::var("EOSLAB_JOBS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// Run `task(0..n)` on `jobs` workers and return the results in task order. After a task
/// fails no new task starts; the error of the lowest failing task index is returned (an
/// interruption by the step budget is reported only if no other error occurred).
pub fn run_tasks<T: Send>(
    n: usize,
    jobs: usize,
    task: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let jobs = jobs.clamp(1, n.max(1));
    if jobs == 1 {
        return (0..n).map(&task).collect();
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let out = match &pool {
                        Ok(p) => p.install(|| task(i)),
                        Err(e) => Err(Error::Config(format!("cannot start a worker: {e}"))),
                    };
                    if out.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    results.lock().expect("no worker panicked holding the lock")[i] = Some(out);
                }
            });
        }
    });
    let results = results.into_inner().expect("workers finished");
    let mut out = Vec::with_capacity(n);
    let mut interrupted = None;
    for r in results {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e @ Error::Interrupted(_))) => {
                interrupted.get_or_insert(e);
            }
            Some(Err(e)) => return Err(e),
            // Not started because another task failed or was interrupted.
            None => {}
        }
    }
    match interrupted {
        Some(e) => Err(e),
        None if out.len() == n => Ok(out),
        None => Err(Error::Numerics("a task did not run".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_in_order_and_first_error_wins() {
        let squares = run_tasks(7, 3, |i| Ok(i * i)).unwrap();
        assert_eq!(squares, vec![0, 1, 4, 9, 16, 25, 36]);
        let e = run_tasks(6, 2, |i| {
            if i >= 2 {
                Err(Error::Config(format!("task {i}")))
            } else {
                Ok(i)
            }
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("task 2"), "{e}");
        // Inside a task, kernels see a single thread.
        let threads = run_tasks(2, 2, |_| Ok(rayon::current_num_threads())).unwrap();
        assert_eq!(threads, vec![1, 1]);
        assert!(run_tasks(0, 2, Ok).unwrap().is_empty());
    }
}
