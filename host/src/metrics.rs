//! Prometheus metrics: HTTP requests and latency, queue depth, job counts and
//! durations per task and tenant, webhook attempts, GPU memory.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub jobs_running: IntGaugeVec,
    pub jobs_finished: IntCounterVec,
    pub job_duration: HistogramVec,
    pub job_queue_wait: HistogramVec,
    pub webhook_attempts: IntCounterVec,
    pub gpu_memory: IntGaugeVec,
    pub credits_charged: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
const JOB_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("easel".into()), None).expect("valid prefix");
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let hist = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    labels,
                )
                .expect("valid metric"),
            )
        };
        Metrics {
            http_requests: counter(
                "http_requests_total",
                "HTTP requests by route and status",
                &["method", "route", "status"],
            ),
            http_latency: hist(
                "http_request_duration_seconds",
                "HTTP request latency",
                &["method", "route"],
                LATENCY_BUCKETS,
            ),
            queue_depth: gauge("queue_depth", "Jobs waiting, by lane", &["lane"]),
            jobs_running: gauge("jobs_running", "Jobs running, by lane", &["lane"]),
            jobs_finished: counter(
                "jobs_finished_total",
                "Jobs that ended, by task, tenant and status",
                &["task", "tenant", "status"],
            ),
            job_duration: hist(
                "job_duration_seconds",
                "Job run time, by task, tenant and status",
                &["task", "tenant", "status"],
                JOB_BUCKETS,
            ),
            job_queue_wait: hist(
                "job_queue_wait_seconds",
                "Time from submit to start, by task",
                &["task"],
                JOB_BUCKETS,
            ),
            webhook_attempts: counter(
                "webhook_attempts_total",
                "Webhook delivery attempts by result",
                &["result"],
            ),
            gpu_memory: gauge(
                "gpu_memory_bytes",
                "GPU memory held (live tensors, pooled buffers, peak, resident models)",
                &["kind"],
            ),
            credits_charged: counter(
                "credits_charged_total",
                "Credits charged for succeeded jobs, by tenant",
                &["tenant"],
            ),
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
