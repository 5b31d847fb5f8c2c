//! An OTLP/HTTP trace receiver for the tests: `POST /v1/traces` with an `ExportTraceServiceRequest` in
//! protobuf, decoded with the official OpenTelemetry definitions (`opentelemetry-proto`), as a collector
//! would. No OpenTelemetry Collector or Jaeger can be installed on these machines; this is the receiving end
//! of the same protocol, keeping every span it gets.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{body::Bytes, extract::State, http::header, routing::post, Router};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{any_value::Value, AnyValue},
};
use prost::Message;

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
}

pub struct Receiver {
    pub port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<usize>>,
    _runtime: tokio::runtime::Runtime,
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
struct Shared {
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<usize>>,
}

async fn traces(State(shared): State<Shared>, body: Bytes) -> ([(header::HeaderName, &'static str); 1], Vec<u8>) {
    let request = ExportTraceServiceRequest::decode(body).expect("an ExportTraceServiceRequest in protobuf");
    let mut received = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(&kv.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.push(Span {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span.attributes.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect(),
                });
            }
        }
    }
    shared.spans.lock().expect("spans").extend(received);
    *shared.requests.lock().expect("requests") += 1;
    ([(header::CONTENT_TYPE, "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
}

impl Receiver {
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
        let shared = Shared { spans: Arc::default(), requests: Arc::default() };
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = Router::new().route("/v1/traces", post(traces)).with_state(shared.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver { port, spans: shared.spans, requests: shared.requests, _runtime: runtime }
    }

    /// The base URL to give as `--otlp-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans").clone()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> usize {
        *self.requests.lock().expect("requests")
    }
}
