//! Connecting to a real nats-server, as services do.

use ladder_bus::{
    server::{free_port, NatsServer},
    topology, Bus, BusError,
};

#[tokio::test]
async fn a_list_of_cluster_servers_connects_through_the_one_that_is_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server starts (make test installs it)");
    let down = format!("nats://127.0.0.1:{}", free_port().expect("port"));
    let bus = Bus::connect(&format!("{down},{}", nats.url())).await.expect("connects through the live server");
    bus.jetstream().get_stream(topology::EVENTS_STREAM).await.expect("the topology is in place");
    nats.stop().await;
}

#[tokio::test]
async fn a_malformed_url_is_refused_with_its_text() {
    let error = Bus::connect("nats://127.0.0.1:4222,nats://[bad").await.err().expect("refused");
    assert!(matches!(error, BusError::InvalidUrl { .. }), "{error}");
    assert!(error.to_string().contains("[bad"), "{error}");
}
