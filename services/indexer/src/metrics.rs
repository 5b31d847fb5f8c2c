//! What the indexer counts.

use std::{sync::LazyLock, time::Duration};

use ladder_proto::Event;
use ladder_telemetry::{register, seconds_histograms, Counter, EventLabels, Family, HistogramFamily};

pub(crate) struct Metrics {
    pub apply: HistogramFamily<EventLabels>,
    pub failed: Family<EventLabels, Counter>,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    apply: register(
        "ladder_indexer_apply_seconds",
        "Time to apply one event to the index, by event (subject prefix), successful writes only",
        seconds_histograms(),
    ),
    failed: register(
        "ladder_indexer_apply_failures",
        "Index writes that failed (the event is redelivered)",
        Family::default(),
    ),
});

/// One event applied (or not) to the index.
pub(crate) fn applied(event: &Event, ok: bool, took: Duration) {
    let labels = EventLabels { event: event.subject_prefix() };
    if ok {
        METRICS.apply.get_or_create(&labels).observe(took.as_secs_f64());
    } else {
        METRICS.failed.get_or_create(&labels).inc();
    }
}
