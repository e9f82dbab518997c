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
pub(crate) struct Node<Id> {
    /// The node.
    pub id: Id,
    /// Nodes that must finish first.
    pub deps: Vec<Id>,
}

/// Runs one node given the results of its dependencies.
pub(crate) trait StageRunner<Id, Out>: Sync {
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
pub(crate) enum ScheduleError<Id, E> {
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
pub(crate) fn run_dag<Id, Out, R>(
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
    use std::time::Duration;

    struct Sleepy {
        fail: Option<u32>,
        log: Mutex<Vec<String>>,
        /// Nodes 1 and 2 wait for each other (see `met_peer`).
        meet: bool,
    }

    impl Sleepy {
        /// Whether `id` (1 or 2) has met the other independent node: noted as `"{id} met
        /// {other}"` when the other has started and not ended while `id` runs (proof of
        /// running side by side, with no clock), or met by the other already.
        fn met_peer(&self, id: u32) -> bool {
            let other = 3 - id;
            let mut log = self.log.lock().unwrap();
            if log.contains(&format!("{other} met {id}")) {
                return true;
            }
            let running =
                log.contains(&format!("start {other}")) && !log.contains(&format!("end {other}"));
            if running {
                log.push(format!("{id} met {other}"));
            }
            running
        }
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
            // With `meet`, nodes 1 and 2 wait (up to 10 s) for each other, so they meet only
            // if the scheduler runs them at the same time; otherwise each sleeps 200 ms.
            let peer = self.meet && matches!(id, 1 | 2);
            for _ in 0..if peer { 1000 } else { 20 } {
                if cancel.is_cancelled() {
                    return Err(format!("{id} cancelled"));
                }
                if peer && self.met_peer(*id) {
                    break;
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
            meet: true,
        };
        let out = run_dag(&dag(), 2, &r, &CancelToken::new()).unwrap();
        assert_eq!(*out[&4], 4 + 3 + 1 + 2);
        let log = r.log.lock().unwrap();
        let pos = |s: &str| log.iter().position(|l| l == s).unwrap();
        // 1 and 2 met while both were running (see `Sleepy::met_peer`): side by side.
        assert!(log.iter().any(|l| l.contains(" met ")), "{log:?}");
        assert!(pos("end 1") < pos("start 3") && pos("end 2") < pos("start 3"));
    }

    #[test]
    fn jobs_one_runs_serially() {
        let r = Sleepy {
            fail: None,
            log: Mutex::new(vec![]),
            meet: false,
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
            meet: false,
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
            meet: false,
        };
        let cancel = CancelToken::new();
        cancel.cancel();
        assert!(matches!(
            run_dag(&dag(), 2, &r, &cancel),
            Err(ScheduleError::Cancelled)
        ));
    }
}
