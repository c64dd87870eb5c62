//! A test subscriber on the local Mosquitto (127.0.0.1:1883), shared by the end-to-end tests.
// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// Subscribes to `filter` on the local Mosquitto and collects (topic, JSON payload); returns
/// once the broker has confirmed the subscription.
pub async fn subscribe(client_id: &str, filter: &str) -> (Received, tokio::task::JoinHandle<()>) {
    subscribe_with(client_id, filter, |p| serde_json::from_slice(p).ok()).await
}

/// [`subscribe`] keeping every payload as it came (CAP alerts are XML).
pub async fn subscribe_raw(
    client_id: &str,
    filter: &str,
) -> (
    Arc<Mutex<Vec<(String, Vec<u8>)>>>,
    tokio::task::JoinHandle<()>,
) {
    subscribe_with(client_id, filter, |p| Some(p.to_vec())).await
}

/// Collects (topic, `keep(payload)`) of every message `keep` takes.
async fn subscribe_with<T: Send + 'static>(
    client_id: &str,
    filter: &str,
    keep: fn(&[u8]) -> Option<T>,
) -> (Arc<Mutex<Vec<(String, T)>>>, tokio::task::JoinHandle<()>) {
    let got: Arc<Mutex<Vec<(String, T)>>> = Arc::default();
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", 1883);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, 100);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let sink = got.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    let task = tokio::spawn(async move {
        let _client = client;
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    if let Some(v) = keep(&p.payload) {
                        sink.lock().expect("lock").push((p.topic.clone(), v));
                    }
                }
                _ => {}
            }
        }
    });
    ready_rx.await.expect("subscribed");
    (got, task)
}
