//! The daemon's one shutdown order. Every task is spawned on the daemon's tracker into a
//! [`Stage`]; at shutdown the stages stop in [`ORDER`], each cancelled and (for the tasks
//! the next stage depends on) awaited before the next:
//!
//! 1. [`Stage::Intake`]: what brings work in stops — the socket's accept loop, the
//!    endpoint's listener, the watcher (the endpoint's tokens are removed before this, in
//!    `lib.rs`: a token must not outlive its port).
//! 2. [`Stage::Engine`]: the engine aborts its validations, broadcasts `daemon_stopping`
//!    and flushes the state.
//! 3. [`Stage::Sessions`]: sessions that are not subscribed leave (subscribers leave after
//!    forwarding `daemon_stopping`), the desktop notifier stops.
//!
//! Then `lib.rs` waits (bounded) for the tracker and removes the socket file.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A part of the daemon that stops together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Intake,
    Engine,
    Sessions,
}

/// The order the stages stop in.
pub const ORDER: [Stage; 3] = [Stage::Intake, Stage::Engine, Stage::Sessions];

/// The stages' cancellation and the tasks each waits for.
pub struct Stages {
    tracker: TaskTracker,
    stages: [(CancellationToken, Vec<JoinHandle<()>>); 3],
}

impl Stages {
    pub fn new(tracker: TaskTracker) -> Stages {
        Stages {
            tracker,
            stages: Default::default(),
        }
    }

    fn index(stage: Stage) -> usize {
        match stage {
            Stage::Intake => 0,
            Stage::Engine => 1,
            Stage::Sessions => 2,
        }
    }

    /// Cancelled when `stage` stops.
    pub fn token(&self, stage: Stage) -> CancellationToken {
        self.stages[Self::index(stage)].0.clone()
    }

    /// Spawns `task` on the tracker; its stage's stop waits for it to end.
    pub fn spawn(&mut self, stage: Stage, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.tracker.spawn(task);
        self.stages[Self::index(stage)].1.push(handle);
    }

    /// Stops the stages in [`ORDER`].
    pub async fn stop(self) {
        let mut stages = self.stages;
        for stage in ORDER {
            let (token, tasks) = &mut stages[Self::index(stage)];
            token.cancel();
            // The last stage's sessions are waited for with the tracker, bounded.
            if stage != Stage::Sessions {
                for task in tasks.drain(..) {
                    let _ = task.await;
                }
            }
        }
    }
}
