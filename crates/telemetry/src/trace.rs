//! Traces: one chunk is one trace, from ingest to the manifest's first listing of it.
//!
//! Spans are `tracing` spans; with `--otlp-endpoint` set, [`layer`] turns them into OpenTelemetry spans and
//! exports them over OTLP/HTTP (protobuf) in batches from a thread of their own. The context crosses services
//! as a W3C `traceparent` header on the NATS messages ([`with_context`] when publishing, [`set_parent`] when
//! consuming). Without an endpoint nothing is recorded and no header is written.
//!
//! Which spans: ingest opens `ingest.gop` at each keyframe of a publisher's TS (the messages until the next
//! carry it); the segmenter's `segmenter.chunk` is its child, from the chunk's start to its upload; the
//! transcoder's `transcoder.chunk` (with `ffmpeg` and one `storage.put` per upload), the indexer's
//! `indexer.apply` and the manifest's `manifest.listing` are children of the message that caused them.

use std::time::Duration;

use async_nats::{jetstream::message::PublishMessage, HeaderMap};
use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
    Context, KeyValue,
};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider},
    Resource,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::TelemetryError;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// Keeps the exporter running; dropping it flushes the spans not yet sent (bounded by the exporter's timeout).
pub struct TraceGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The OTLP/HTTP traces URL of a collector given as its base URL (`http://host:4318`), or as the full URL.
pub fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let endpoint = endpoint.trim_end_matches('/');
    if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
        return Err(TelemetryError::Otlp(format!("{endpoint:?} is not an http:// URL")));
    }
    if endpoint.starts_with("https://") {
        return Err(TelemetryError::Otlp(format!(
            "{endpoint:?}: OTLP over https is not built in; export to a local collector over http"
        )));
    }
    let after_host = endpoint.trim_start_matches("http://").split_once('/').map(|(_, path)| path);
    Ok(match after_host {
        None | Some("") => format!("{endpoint}/v1/traces"),
        Some(_) => endpoint.to_string(),
    })
}

/// The `tracing` layer that exports spans to `endpoint` as `service` (OpenTelemetry's `service.name`), and
/// the guard that keeps it exporting. Sets the W3C propagator for the whole process.
pub fn layer<S>(
    service: &str,
    endpoint: &str,
) -> Result<(impl tracing_subscriber::Layer<S>, TraceGuard), TelemetryError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let url = traces_url(endpoint)?;
    let client = reqwest_blocking_client()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
    // Spans leave within a second: a trace of a live chunk is wanted while the chunk is still live.
    let batch = BatchConfigBuilder::default().with_scheduled_delay(Duration::from_secs(1)).build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
    let resource = Resource::builder().with_service_name(service.to_string()).with_attributes([KeyValue::new(
        "service.instance.id",
        std::env::var("LADDER_INSTANCE").unwrap_or_else(|_| std::process::id().to_string()),
    )]);
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.build()).build();
    let tracer = provider.tracer("ladder");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((layer, TraceGuard { provider: Some(provider) }))
}

/// reqwest's blocking client, built off the async runtime (it starts one of its own, which may not be created
/// inside another).
fn reqwest_blocking_client() -> Result<reqwest::blocking::Client, TelemetryError> {
    // reqwest is built without a TLS provider of its own: ring, as for object storage (the process's provider
    // may already be installed, which is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::thread::spawn(|| reqwest::blocking::Client::builder().build())
        .join()
        .map_err(|_| TelemetryError::Otlp("building the HTTP client panicked".into()))?
        .map_err(|e| TelemetryError::Otlp(e.to_string()))
}

struct HeaderInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes an empty `tracestate`; an empty header is noise.
        if !value.is_empty() {
            self.0.push((key.to_string(), value));
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, "tracestate"].into_iter().filter(|key| self.0.get(*key).is_some()).collect()
    }
}

/// The trace headers of `span`'s context: none when it is not recorded (no exporter, or a disabled span).
pub fn headers_of(span: &tracing::Span) -> Vec<(String, String)> {
    let context = span.context();
    let mut headers = Vec::new();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut headers));
    }
    headers
}

/// `message` with the trace context of the current span, so that what consumes it continues the trace.
pub fn with_context(mut message: PublishMessage) -> PublishMessage {
    for (key, value) in headers_of(&tracing::Span::current()) {
        message = message.header(key.as_str(), value.as_str());
    }
    message
}

/// The context a message carries; empty if it carries none.
pub fn context_of(headers: Option<&HeaderMap>) -> Context {
    match headers {
        Some(headers) => TraceContextPropagator::new().extract(&HeaderExtractor(headers)),
        None => Context::new(),
    }
}

/// Makes `span` a child of the span that published a message with `headers`, if it carried one. Call it
/// before the span is first entered.
pub fn set_parent(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let context = context_of(headers);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The `traceparent` a message carries, to keep until a span is made a child of it ([`set_parent_to`]).
pub fn traceparent(headers: Option<&HeaderMap>) -> Option<String> {
    headers?.get(TRACEPARENT).map(|value| value.as_str().to_string())
}

/// [`set_parent`] from a kept `traceparent`.
pub fn set_parent_to(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, traceparent);
        set_parent(span, Some(&headers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_urls() {
        assert_eq!(traces_url("http://127.0.0.1:4318").ok().as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(traces_url("http://c:4318/").ok().as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(traces_url("http://c:4318/custom/path").ok().as_deref(), Some("http://c:4318/custom/path"));
        assert!(traces_url("c:4318").is_err());
        assert!(traces_url("https://c:4318").is_err());
    }

    #[test]
    fn a_traceparent_header_is_read_back() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let context = context_of(Some(&headers));
        let span = context.span();
        let span_context = span.span_context();
        assert!(span_context.is_valid());
        assert_eq!(span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!context_of(None).span().span_context().is_valid());
    }
}
