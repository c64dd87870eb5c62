//! Sinks: where analysis results go. Between analytics and the sinks sits a durable
//! [`outbox::Outbox`]: what analytics hands over is on disk before it is acknowledged, and each
//! sink (MQTT, the store) reads and acknowledges at its own pace, so a broker or database
//! outage loses nothing.

pub mod broker;
pub mod mqtt;
pub mod outbox;
pub mod store;
