//! The embedded broker: with credentials configured it lets in only clients that give them, and
//! what it keeps is capped (a message larger than its memory allows is refused).

use std::time::Duration;

use pantau_sinks::broker::{start, BrokerOptions};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Connects and returns the broker's answer to CONNECT (or the error that ended it), then the
/// client and its event loop for more.
async fn connect(
    port: u16,
    login: Option<(&str, &str)>,
) -> (
    Result<ConnectReturnCode, String>,
    AsyncClient,
    rumqttc::EventLoop,
) {
    let mut opts = MqttOptions::new(format!("test-{}", rand_id()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(4 << 20, 4 << 20);
    if let Some((u, p)) = login {
        opts.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(opts, 10);
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Ok(code),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 5 s".into()));
    (answer, client, events)
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_and_memory_is_capped() {
    let port = free_port();
    start(BrokerOptions {
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        credentials: Some(("pantau".into(), "broker secret".into())),
        memory_mb: 1,
    })
    .expect("broker starts");

    let (anonymous, _, _) = connect(port, None).await;
    assert!(
        !matches!(anonymous, Ok(ConnectReturnCode::Success)),
        "a client without credentials got in: {anonymous:?}"
    );
    let (wrong, _, _) = connect(port, Some(("pantau", "guess"))).await;
    assert!(
        !matches!(wrong, Ok(ConnectReturnCode::Success)),
        "a wrong password got in: {wrong:?}"
    );
    let (right, client, mut events) = connect(port, Some(("pantau", "broker secret"))).await;
    assert_eq!(right, Ok(ConnectReturnCode::Success));

    // A small message goes through; one larger than the broker may keep (1 MiB in 4 segments)
    // ends the connection instead of being held.
    client
        .subscribe("pantau/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    client
        .publish("pantau/a", QoS::AtLeastOnce, false, vec![1u8; 1000])
        .await
        .expect("publish");
    let delivered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await {
                return p.payload.len();
            }
        }
    })
    .await
    .expect("the small message comes back");
    assert_eq!(delivered, 1000);
    client
        .publish("pantau/b", QoS::AtLeastOnce, false, vec![2u8; 512 * 1024])
        .await
        .expect("queued");
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == "pantau/b" => return false,
                Err(_) => return true,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or(true);
    assert!(refused, "a message over the memory cap was delivered");
}
