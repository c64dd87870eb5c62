//! The embedded MQTT broker (rumqttd) that `pantau run` starts when no broker is configured,
//! so the demo needs nothing else. It listens on one address (MQTT 3.1.1) and lives until the
//! process ends.

use std::net::{SocketAddr, TcpListener};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot start the embedded MQTT broker on {addr}: {reason}; set embedded.mqtt_listen to a free address or configure [mqtt]")]
    Start { addr: SocketAddr, reason: String },
}

/// Starts the broker on its own thread and returns once it accepts connections.
pub fn start(addr: SocketAddr) -> Result<(), BrokerError> {
    let fail = |reason: String| BrokerError::Start { addr, reason };
    // Say clearly when the port is taken, instead of failing inside the broker thread.
    TcpListener::bind(addr).map_err(|e| fail(e.to_string()))?;
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "pantau-embedded"
listen = "{addr}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 500
    dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| fail(e.to_string()))?;
    // Ready once the broker holds the port (probing with a connection would log an error).
    for _ in 0..100 {
        if TcpListener::bind(addr).is_err() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(fail("it did not start listening within 2 s".into()))
}
