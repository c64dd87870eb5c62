//! A test subscriber on the local Mosquitto (127.0.0.1:1883), shared by the end-to-end tests.

use std::sync::{Arc, Mutex};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// Subscribes to `filter` on the local Mosquitto and collects (topic, JSON payload); returns
/// once the broker has confirmed the subscription.
pub async fn subscribe(client_id: &str, filter: &str) -> (Received, tokio::task::JoinHandle<()>) {
    let got: Received = Arc::default();
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
                    if let Ok(v) = serde_json::from_slice(&p.payload) {
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
