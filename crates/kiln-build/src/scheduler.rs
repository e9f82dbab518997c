//! Runs a DAG of stages: each stage starts as soon as the stages it needs are done, at most
//! `jobs` at a time; the first failure cancels the rest (running stages see the
//! [`CancelToken`] and stop; stages not yet started never start).
//!
//! Generic over [`StageRunner`] so it is tested with in-memory fakes (DESIGN.md §3).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};

/// A shared cancellation flag: the sandbox's token, so cancelling a build also kills the
/// process trees of running RUN steps at once.
pub use kiln_sandbox::CancelToken;

/// One node of the DAG: an id and the ids it needs.
#[derive(Debug, Clone)]
pub struct Node<Id> {
    /// The node.
    pub id: Id,
    /// Nodes that must finish first.
    pub deps: Vec<Id>,
}

/// Runs one node given the results of its dependencies.
pub trait StageRunner<Id, Out>: Sync {
    /// The error type.
    type Error: Send;

    /// Runs `id`. `deps` holds the outputs of every node it depends on.
    fn run(
        &self,
        id: &Id,
        deps: &BTreeMap<Id, Arc<Out>>,
        cancel: &CancelToken,
    ) -> Result<Out, Self::Error>;
}

/// Why the schedule stopped.
#[derive(Debug)]
pub enum ScheduleError<Id, E> {
    /// A node failed (the first failure; later ones are consequences).
    Failed {
        /// The failing node.
        id: Id,
        /// Its error.
        error: E,
    },
    /// The caller cancelled.
    Cancelled,
}

struct State<Id, Out, E> {
    done: BTreeMap<Id, Arc<Out>>,
    running: BTreeSet<Id>,
    failure: Option<(Id, E)>,
}

/// Runs every node of `nodes` (which must be closed under `deps`) with at most `jobs`
/// running at once, and returns all outputs.
pub fn run_dag<Id, Out, R>(
    nodes: &[Node<Id>],
    jobs: usize,
    runner: &R,
    cancel: &CancelToken,
) -> Result<BTreeMap<Id, Arc<Out>>, ScheduleError<Id, R::Error>>
where
    Id: Ord + Clone + Send + Sync,
    Out: Send + Sync,
    R: StageRunner<Id, Out>,
{
    let jobs = jobs.max(1);
    let state = Mutex::new(State {
        done: BTreeMap::new(),
        running: BTreeSet::new(),
        failure: None,
    });
    let wake = Condvar::new();
    let lock = || {
        state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };

    std::thread::scope(|scope| {
        for _ in 0..jobs.min(nodes.len()) {
            scope.spawn(|| {
                loop {
                    // Pick a ready node, or wait until one becomes ready.
                    let (node, deps) = {
                        let mut st = lock();
                        loop {
                            if st.failure.is_some() || cancel.is_cancelled() {
                                wake.notify_all();
                                return;
                            }
                            if st.done.len() + st.running.len() == nodes.len()
                                && st.running.is_empty()
                            {
                                return;
                            }
                            let ready = nodes.iter().find(|n| {
                                !st.done.contains_key(&n.id)
                                    && !st.running.contains(&n.id)
                                    && n.deps.iter().all(|d| st.done.contains_key(d))
                            });
                            if let Some(n) = ready {
                                st.running.insert(n.id.clone());
                                let deps = n
                                    .deps
                                    .iter()
                                    .map(|d| (d.clone(), Arc::clone(&st.done[d])))
                                    .collect::<BTreeMap<_, _>>();
                                break (n, deps);
                            }
                            if st.running.is_empty() {
                                // Nothing runs and nothing is ready: done (or a dependency
                                // outside `nodes`, which the planner never produces).
                                return;
                            }
                            st = wake
                                .wait(st)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                    };
                    let result = runner.run(&node.id, &deps, cancel);
                    let mut st = lock();
                    st.running.remove(&node.id);
                    match result {
                        Ok(out) => {
                            st.done.insert(node.id.clone(), Arc::new(out));
                        }
                        Err(error) => {
                            if st.failure.is_none() && !cancel.is_cancelled() {
                                st.failure = Some((node.id.clone(), error));
                            }
                            cancel.cancel();
                        }
                    }
                    wake.notify_all();
                }
            });
        }
    });

    let st = state
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((id, error)) = st.failure {
        return Err(ScheduleError::Failed { id, error });
    }
    if st.done.len() < nodes.len() {
        return Err(ScheduleError::Cancelled);
    }
    Ok(st.done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    struct Sleepy {
        fail: Option<u32>,
        log: Mutex<Vec<String>>,
    }

    impl StageRunner<u32, u32> for Sleepy {
        type Error = String;
        fn run(
            &self,
            id: &u32,
            deps: &BTreeMap<u32, Arc<u32>>,
            cancel: &CancelToken,
        ) -> Result<u32, String> {
            self.log.lock().unwrap().push(format!("start {id}"));
            for _ in 0..20 {
                if cancel.is_cancelled() {
                    return Err(format!("{id} cancelled"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.fail == Some(*id) {
                return Err(format!("{id} failed"));
            }
            self.log.lock().unwrap().push(format!("end {id}"));
            Ok(id + deps.values().map(|v| **v).sum::<u32>())
        }
    }

    fn dag() -> Vec<Node<u32>> {
        // 1 and 2 are independent; 3 needs both; 4 needs 3.
        vec![
            Node {
                id: 1,
                deps: vec![],
            },
            Node {
                id: 2,
                deps: vec![],
            },
            Node {
                id: 3,
                deps: vec![1, 2],
            },
            Node {
                id: 4,
                deps: vec![3],
            },
        ]
    }

    #[test]
    fn independent_nodes_run_in_parallel_and_results_flow() {
        let r = Sleepy {
            fail: None,
            log: Mutex::new(vec![]),
        };
        let t = Instant::now();
        let out = run_dag(&dag(), 2, &r, &CancelToken::new()).unwrap();
        let elapsed = t.elapsed();
        assert_eq!(*out[&4], 4 + 3 + 1 + 2);
        // 3 levels of 200 ms; serial would be 4 × 200 ms.
        assert!(elapsed < Duration::from_millis(750), "{elapsed:?}");
        let log = r.log.lock().unwrap();
        let pos = |s: &str| log.iter().position(|l| l == s).unwrap();
        assert!(pos("end 1") < pos("start 3") && pos("end 2") < pos("start 3"));
    }

    #[test]
    fn jobs_one_runs_serially() {
        let r = Sleepy {
            fail: None,
            log: Mutex::new(vec![]),
        };
        run_dag(&dag(), 1, &r, &CancelToken::new()).unwrap();
        let log = r.log.lock().unwrap();
        for pair in log.chunks(2) {
            assert!(
                pair[0].starts_with("start") && pair[1].starts_with("end"),
                "{log:?}"
            );
        }
    }

    #[test]
    fn the_first_failure_cancels_the_rest() {
        let r = Sleepy {
            fail: Some(1),
            log: Mutex::new(vec![]),
        };
        let err = run_dag(&dag(), 2, &r, &CancelToken::new()).unwrap_err();
        match err {
            ScheduleError::Failed { id, error } => {
                assert_eq!(id, 1);
                assert_eq!(error, "1 failed");
            }
            ScheduleError::Cancelled => panic!("expected a failure"),
        }
        let log = r.log.lock().unwrap();
        assert!(!log.iter().any(|l| l == "start 3"), "{log:?}");
    }

    #[test]
    fn caller_cancellation_stops_everything() {
        let r = Sleepy {
            fail: None,
            log: Mutex::new(vec![]),
        };
        let cancel = CancelToken::new();
        cancel.cancel();
        assert!(matches!(
            run_dag(&dag(), 2, &r, &cancel),
            Err(ScheduleError::Cancelled)
        ));
    }
}
