//! The embedded MQTT broker (rumqttd) that `pantau run` starts when no broker is configured,
//! so the demo needs nothing else. It listens on one address (MQTT 3.1.1) and lives until the
//! process ends. Without credentials it is meant for loopback only (the config refuses other
//! addresses then); what it keeps for slow subscribers is capped per topic filter.

use std::net::{SocketAddr, TcpListener};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot start the embedded MQTT broker on {addr}: {reason}; set embedded.mqtt_listen to a free address or configure [mqtt]")]
    Start { addr: SocketAddr, reason: String },
}

/// How the embedded broker runs.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub addr: SocketAddr,
    /// User name and password every client must give; `None` lets anyone in, which
    /// `embedded.mqtt_listen` allows on loopback only (checked with the config).
    pub credentials: Option<(String, String)>,
    /// What the broker may keep per topic filter for clients not yet served, in MiB.
    pub memory_mb: u32,
}

/// Segments of a topic filter's log; the oldest goes when the last is full.
const SEGMENTS: u64 = 4;

/// Starts the broker on its own thread and returns once it accepts connections.
pub fn start(options: BrokerOptions) -> Result<(), BrokerError> {
    let BrokerOptions {
        addr,
        credentials,
        memory_mb,
    } = options;
    let fail = |reason: String| BrokerError::Start { addr, reason };
    // Say clearly when the port is taken, instead of failing inside the broker thread.
    TcpListener::bind(addr).map_err(|e| fail(e.to_string()))?;
    // Memory: a topic filter's log holds SEGMENTS segments of this size; a message larger than
    // a segment is refused (so the payload limit stays below it).
    let segment = (u64::from(memory_mb.max(1)) << 20) / SEGMENTS;
    let payload = segment.min(1 << 20);
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 256
max_outgoing_packet_count = 200
max_segment_size = {segment}
max_segment_count = {SEGMENTS}

[v4.1]
name = "pantau-embedded"
listen = "{addr}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {payload}
    max_inflight_count = 500
    dynamic_filters = true
"#
    );
    let mut config: rumqttd::Config = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if let Some((user, password)) = credentials {
        for server in config.v4.iter_mut().flat_map(|v4| v4.values_mut()) {
            server.connections.auth = Some([(user.clone(), password.clone())].into());
        }
    }
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
