//! The in-memory run queue: two lanes (GPU and CPU) with their own
//! concurrency limits. Within a lane, tenants of a higher priority class go
//! first; tenants of the same class take turns (the one served least
//! recently goes next), so one tenant's burst cannot starve the others; a
//! tenant's own jobs run by job priority, then in submission order. The
//! database holds the durable queue; this is rebuilt from it at start.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: String,
    pub tenant_id: String,
    /// The tenant's scheduling class.
    pub tenant_priority: i64,
    /// The job's priority among its tenant's jobs.
    pub priority: i64,
    /// Submission order.
    pub seq: i64,
    pub gpu: bool,
}

#[derive(Default)]
struct Lane {
    queued: Vec<QueuedJob>,
    running: usize,
    limit: usize,
    /// When each tenant was last served (lane clock); absent = never.
    served: HashMap<String, u64>,
    clock: u64,
}

impl Lane {
    /// Index of the job to run next: one pass over the queue (this runs
    /// for every dispatch, so it must stay linear in the queue length).
    fn pick(&self) -> Option<usize> {
        let class = self.queued.iter().map(|j| j.tenant_priority).max()?;
        // Each tenant's next job: highest priority, then oldest.
        let mut next_of: HashMap<&str, usize> = HashMap::new();
        for (i, j) in self.queued.iter().enumerate() {
            if j.tenant_priority != class {
                continue;
            }
            let e = next_of.entry(j.tenant_id.as_str()).or_insert(i);
            let cur = &self.queued[*e];
            if (j.priority, -j.seq) > (cur.priority, -cur.seq) {
                *e = i;
            }
        }
        // The tenant to serve: least recently served, ties to the one whose
        // next job was submitted first.
        next_of
            .into_iter()
            .min_by_key(|(t, i)| {
                (
                    self.served.get(*t).copied().unwrap_or(0),
                    self.queued[*i].seq,
                )
            })
            .map(|(_, i)| i)
    }

    fn take(&mut self, i: usize) -> QueuedJob {
        let j = self.queued.swap_remove(i);
        self.clock += 1;
        self.served.insert(j.tenant_id.clone(), self.clock);
        j
    }
}

pub struct Scheduler {
    lanes: Mutex<[Lane; 2]>,
    notify: Notify,
    /// Wakes callers of [`Scheduler::acquire`] when a slot frees (separate from `notify`,
    /// which the dispatcher alone waits on, so a waiter never takes the dispatcher's wake-up).
    freed: Notify,
}

fn lane(gpu: bool) -> usize {
    usize::from(!gpu)
}

/// Queue sizes for metrics and limits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Depth {
    pub gpu_queued: usize,
    pub cpu_queued: usize,
    pub gpu_running: usize,
    pub cpu_running: usize,
}

impl Scheduler {
    pub fn new(gpu_limit: usize, cpu_limit: usize) -> Self {
        let lanes = [
            Lane {
                limit: gpu_limit,
                ..Default::default()
            },
            Lane {
                limit: cpu_limit,
                ..Default::default()
            },
        ];
        Scheduler {
            lanes: Mutex::new(lanes),
            notify: Notify::new(),
            freed: Notify::new(),
        }
    }

    pub fn push(&self, job: QueuedJob) {
        let mut l = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        l[lane(job.gpu)].queued.push(job);
        drop(l);
        self.notify.notify_one();
    }

    /// Removes a queued job (cancel); false when it is not queued here.
    pub fn remove(&self, id: &str) -> bool {
        let mut l = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        for lane in l.iter_mut() {
            if let Some(i) = lane.queued.iter().position(|j| j.id == id) {
                lane.queued.remove(i);
                return true;
            }
        }
        false
    }

    /// The next job of a lane with a free slot, counted as running.
    pub fn next(&self) -> Option<QueuedJob> {
        let mut l = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        for lane in l.iter_mut() {
            if lane.running < lane.limit
                && let Some(i) = lane.pick()
            {
                lane.running += 1;
                return Some(lane.take(i));
            }
        }
        None
    }

    /// A job taken by [`Scheduler::next`] ended; frees its slot.
    pub fn finished(&self, gpu: bool) {
        let mut l = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let lane = &mut l[lane(gpu)];
        lane.running = lane.running.saturating_sub(1);
        drop(l);
        self.notify.notify_one();
        self.freed.notify_waiters();
    }

    /// Takes a slot of a lane outside the queue (a plugin's model run), waiting for one to
    /// free; give it back with [`Scheduler::finished`]. Waiters and queued jobs race for a
    /// freed slot, so the lane's limit holds for both together.
    pub async fn acquire(&self, gpu: bool) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between still wakes us.
            freed.as_mut().enable();
            {
                let mut l = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
                let lane = &mut l[lane(gpu)];
                if lane.running < lane.limit {
                    lane.running += 1;
                    return;
                }
            }
            freed.await;
        }
    }

    /// Waits until something changed (a push or a finished job).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Jobs that would run before `id` if nothing else arrived.
    pub fn position(&self, id: &str) -> Option<usize> {
        let l = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let lane = l
            .iter()
            .find(|lane| lane.queued.iter().any(|j| j.id == id))?;
        let mut sim = Lane {
            queued: lane.queued.clone(),
            served: lane.served.clone(),
            clock: lane.clock,
            ..Default::default()
        };
        let mut n = 0;
        while let Some(i) = sim.pick() {
            if sim.take(i).id == id {
                return Some(n);
            }
            n += 1;
        }
        None
    }

    pub fn depth(&self) -> Depth {
        let l = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        Depth {
            gpu_queued: l[0].queued.len(),
            cpu_queued: l[1].queued.len(),
            gpu_running: l[0].running,
            cpu_running: l[1].running,
        }
    }

    pub fn queued_for(&self, tenant: &str) -> usize {
        let l = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        l.iter()
            .map(|lane| lane.queued.iter().filter(|j| j.tenant_id == tenant).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, tenant: &str, class: i64, prio: i64, seq: i64) -> QueuedJob {
        QueuedJob {
            id: id.into(),
            tenant_id: tenant.into(),
            tenant_priority: class,
            priority: prio,
            seq,
            gpu: true,
        }
    }

    fn drain(s: &Scheduler) -> Vec<String> {
        let mut order = vec![];
        while let Some(j) = s.next() {
            order.push(j.id);
            s.finished(true);
        }
        order
    }

    #[test]
    fn tenants_take_turns() {
        let s = Scheduler::new(1, 1);
        for i in 0..4 {
            s.push(job(&format!("a{i}"), "a", 0, 0, i));
        }
        s.push(job("b0", "b", 0, 0, 10));
        s.push(job("b1", "b", 0, 0, 11));
        assert_eq!(s.position("b0"), Some(1));
        assert_eq!(drain(&s), ["a0", "b0", "a1", "b1", "a2", "a3"]);
    }

    #[test]
    fn priorities_and_limits() {
        let s = Scheduler::new(2, 1);
        s.push(job("low", "a", 0, 0, 1));
        s.push(job("urgent", "a", 0, 9, 2));
        s.push(job("vip", "v", 5, 0, 3));
        assert_eq!(s.next().unwrap().id, "vip", "higher tenant class first");
        assert_eq!(
            s.next().unwrap().id,
            "urgent",
            "then the tenant's high-priority job"
        );
        assert!(s.next().is_none(), "GPU lane limit of 2 reached");
        assert_eq!(s.depth().gpu_running, 2);
        s.finished(true);
        assert!(s.remove("low"));
        assert!(!s.remove("low"));
        assert!(s.next().is_none());
    }

    #[test]
    fn picking_stays_linear_in_queue_length() {
        // 2000 queued jobs of 50 tenants drain in well under a second (the
        // first version was quadratic per pick and took minutes here).
        let s = Scheduler::new(1, 1);
        for i in 0..2000 {
            s.push(job(&format!("j{i}"), &format!("t{}", i % 50), 0, 0, i));
        }
        let t = std::time::Instant::now();
        let order = drain(&s);
        assert_eq!(order.len(), 2000);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        // Round-robin: the first 50 picks are 50 different tenants.
        let first: std::collections::HashSet<_> = order[..50]
            .iter()
            .map(|id| id[1..].parse::<usize>().unwrap() % 50)
            .collect();
        assert_eq!(first.len(), 50);
    }

    #[tokio::test]
    async fn acquired_slots_count_against_the_lane() {
        let s = std::sync::Arc::new(Scheduler::new(1, 1));
        s.acquire(true).await;
        s.push(job("g", "a", 0, 0, 1));
        assert!(s.next().is_none(), "the acquired slot fills the GPU lane");
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.acquire(true).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a second acquire waits");
        s.finished(true);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the freed slot wakes the waiter")
            .unwrap();
        assert_eq!(s.depth().gpu_running, 1);
        assert!(s.next().is_none(), "the waiter holds the slot now");
    }

    #[test]
    fn lanes_are_independent() {
        let s = Scheduler::new(1, 1);
        s.push(job("g", "a", 0, 0, 1));
        s.push(QueuedJob {
            gpu: false,
            ..job("c", "a", 0, 0, 2)
        });
        let got: Vec<_> = [s.next().unwrap().id, s.next().unwrap().id].into();
        assert_eq!(got, ["g", "c"]);
        assert_eq!(s.queued_for("a"), 0);
    }
}
