//! Alerts: what an operator should know now. Each has a key so that the
//! same condition raised again updates one alert instead of piling up.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        })
    }
}

/// Progress of a long job.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub percent: f64,
    /// Items per second so far.
    pub rate: f64,
    /// Seconds left at the current rate, when it can be estimated.
    pub eta_secs: Option<f64>,
}

impl Progress {
    pub fn new(done: u64, total: u64, started: Instant) -> Progress {
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        let eta_secs = (rate > 0.0).then(|| (total.saturating_sub(done)) as f64 / rate);
        Progress {
            done,
            total,
            percent,
            rate,
            eta_secs,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: u64,
    #[serde(skip)]
    pub key: String,
    pub severity: Severity,
    pub message: String,
    pub data: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Unix seconds when first raised.
    pub raised_at: u64,
}

#[derive(Default)]
pub struct Alerts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    list: Vec<Alert>,
}

impl Alerts {
    /// Raises (or updates, by key) an alert and logs it. Returns its id.
    pub fn raise(
        &self,
        key: &str,
        severity: Severity,
        message: impl Into<String>,
        data: serde_json::Value,
    ) -> u64 {
        self.raise_with(key, severity, message.into(), data, None)
    }

    pub fn raise_with(
        &self,
        key: &str,
        severity: Severity,
        message: String,
        data: serde_json::Value,
        progress: Option<Progress>,
    ) -> u64 {
        let mut inner = self.inner.lock();
        if let Some(a) = inner.list.iter_mut().find(|a| a.key == key) {
            let changed = a.message != message || a.severity != severity;
            a.severity = severity;
            a.message = message;
            a.data = data;
            a.progress = progress;
            if changed && a.progress.is_none() {
                log(a);
            }
            return a.id;
        }
        inner.next_id += 1;
        let alert = Alert {
            id: inner.next_id,
            key: key.to_string(),
            severity,
            message,
            data,
            progress,
            raised_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        log(&alert);
        let id = alert.id;
        inner.list.push(alert);
        id
    }

    /// Clears the alert with this key, if any (the condition went away).
    pub fn clear(&self, key: &str) {
        self.inner.lock().list.retain(|a| a.key != key);
    }

    /// Dismisses one alert by id; false if there is none.
    pub fn dismiss(&self, id: u64) -> bool {
        let mut inner = self.inner.lock();
        let before = inner.list.len();
        inner.list.retain(|a| a.id != id);
        inner.list.len() != before
    }

    pub fn dismiss_all(&self) {
        self.inner.lock().list.clear();
    }

    pub fn list(&self) -> Vec<Alert> {
        self.inner.lock().list.clone()
    }

    pub fn get(&self, key: &str) -> Option<Alert> {
        self.inner
            .lock()
            .list
            .iter()
            .find(|a| a.key == key)
            .cloned()
    }
}

/// `value` as an alert's data (null, logged, should it not serialize).
pub(crate) fn data_of(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|e| {
        tracing::error!("cannot serialize an alert's data: {e}");
        serde_json::Value::Null
    })
}

fn log(a: &Alert) {
    match a.severity {
        Severity::Info => tracing::info!(alert = a.id, "{}", a.message),
        Severity::Warning => tracing::warn!(alert = a.id, "{}", a.message),
        Severity::Error | Severity::Critical => tracing::error!(alert = a.id, "{}", a.message),
    }
}
