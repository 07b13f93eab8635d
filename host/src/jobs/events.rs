//! Live job events for SSE streams, `Prefer: wait` and cancel: one broadcast
//! channel per job that someone is listening to. The database stays the
//! source of truth; listeners read it after subscribing, so an event missed
//! before subscribing is never needed.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use super::model::JobStatus;
use crate::tasks::Progress;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// Jobs ahead of this one in its lane (0 = next).
    Queued {
        position: usize,
    },
    Started {
        attempt: u32,
    },
    Progress(Progress),
    Log {
        message: String,
    },
    Completed {
        status: JobStatus,
    },
}

impl JobEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Queued { .. } => "queued",
            JobEvent::Started { .. } => "started",
            JobEvent::Progress(_) => "progress",
            JobEvent::Log { .. } => "log",
            JobEvent::Completed { .. } => "completed",
        }
    }
}

#[derive(Default)]
pub struct EventBus {
    channels: Mutex<HashMap<String, broadcast::Sender<JobEvent>>>,
}

impl EventBus {
    pub fn subscribe(&self, job_id: &str) -> broadcast::Receiver<JobEvent> {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        ch.entry(job_id.to_owned())
            .or_insert_with(|| broadcast::channel(256).0)
            .subscribe()
    }

    /// Sends to current listeners; without listeners this is a no-op. After
    /// `Completed` the channel is closed, ending every listener's stream.
    pub fn publish(&self, job_id: &str, ev: JobEvent) {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let done = matches!(ev, JobEvent::Completed { .. });
        if let Some(tx) = ch.get(job_id) {
            let _ = tx.send(ev);
            if tx.receiver_count() == 0 || done {
                ch.remove(job_id);
            }
        }
    }

    /// Drops the channel of a listener that is going away, if it was the last.
    pub fn release(&self, job_id: &str) {
        let mut ch = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if ch.get(job_id).is_some_and(|tx| tx.receiver_count() <= 1) {
            ch.remove(job_id);
        }
    }

    pub fn listened(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}
