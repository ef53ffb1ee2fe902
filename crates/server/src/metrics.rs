//! Request counters and latency totals in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// (endpoint, status) -> (count, seconds).
type Counters = BTreeMap<(&'static str, u16), (u64, f64)>;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<Counters>,
}

impl Metrics {
    pub fn record(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            let e = m.entry((endpoint, status)).or_default();
            e.0 += 1;
            e.1 += elapsed.as_secs_f64();
        }
    }

    pub fn render(&self) -> String {
        let m = self.requests.lock().map(|m| m.clone()).unwrap_or_default();
        let mut out = String::from(
            "# HELP digits_requests_total API requests by endpoint and status.\n# TYPE digits_requests_total counter\n",
        );
        for ((e, s), (n, _)) in &m {
            out += &format!("digits_requests_total{{endpoint=\"{e}\",status=\"{s}\"}} {n}\n");
        }
        out += "# HELP digits_request_seconds_sum Time spent answering API requests.\n# TYPE digits_request_seconds_sum counter\n";
        for ((e, s), (_, t)) in &m {
            out +=
                &format!("digits_request_seconds_sum{{endpoint=\"{e}\",status=\"{s}\"}} {t:.6}\n");
        }
        out
    }
}
