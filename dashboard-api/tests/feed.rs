//! The router with a camera feed that is not ingest (the test double the node's seam allows):
//! no GStreamer, no database. Health, metrics, the live stream and the frame endpoint read the
//! feed; a broken feed gives a clear answer.

use std::sync::Mutex;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pantau_dashboard_api::cameras::BoxFuture;
use pantau_dashboard_api::StatusChange;
use pantau_dashboard_api::{app, ApiSettings, ApiState, CameraFeed, CameraState, CameraStatus};
use std::sync::Arc;
use tower::ServiceExt;

#[derive(Debug)]
struct Fixed {
    cameras: Mutex<Vec<CameraStatus>>,
    changes: tokio::sync::broadcast::Sender<StatusChange>,
}

fn status(id: &str, state: CameraState, fps: f64) -> CameraStatus {
    CameraStatus {
        id: id.into(),
        name: id.into(),
        source: format!("rtsp://192.0.2.1/{id}"),
        state,
        problem: None,
        since: SystemTime::now(),
        attempt: 0,
        retry_in_ms: None,
        frames_decoded: 250,
        frames_queued: 50,
        frames_analysed: 48,
        frames_dropped: 2,
        frames_skipped: 0,
        analysis_fps: 5.0,
        analysis_fps_now: 5.0,
        degraded: false,
        reconnects: 1,
        last_frame_age_ms: Some(40),
        fps,
        width: Some(1280),
        height: Some(720),
    }
}

impl CameraFeed for Fixed {
    fn statuses(&self) -> Vec<CameraStatus> {
        self.cameras.lock().expect("lock").clone()
    }
    fn status(&self, id: &str) -> Option<CameraStatus> {
        self.statuses().into_iter().find(|c| c.id == id)
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StatusChange> {
        self.changes.subscribe()
    }
    fn frame_jpeg(&self, id: &str) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        let id = id.to_string();
        Box::pin(async move { Err(format!("camera {id} has not sent a frame yet")) })
    }
}

#[tokio::test]
async fn health_and_metrics_read_the_feed_without_the_video_stack() {
    let feed = Arc::new(Fixed {
        cameras: Mutex::new(vec![
            status("gate", CameraState::Streaming, 24.5),
            status("pasar", CameraState::BackingOff, 0.0),
        ]),
        changes: tokio::sync::broadcast::channel(8).0,
    });
    let state = ApiState::new(feed.clone(), ApiSettings::default());
    let get = |uri: &str| {
        Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request")
    };
    let res = app(state.clone())
        .oneshot(get("/healthz"))
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let res = app(state.clone())
        .oneshot(get("/metrics"))
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let text = String::from_utf8(
        res.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf-8");
    assert!(
        text.contains("pantau_camera_fps{camera=\"gate\"} 24.5"),
        "{text}"
    );
    assert!(
        text.contains("pantau_camera_streaming{camera=\"gate\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pantau_camera_streaming{camera=\"pasar\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("pantau_camera_frames_dropped_total{camera=\"pasar\"} 2"),
        "{text}"
    );
    // A camera that went away is gone from the next scrape.
    feed.cameras
        .lock()
        .expect("lock")
        .retain(|c| c.id != "pasar");
    let res = app(state).oneshot(get("/metrics")).await.expect("response");
    let text = String::from_utf8(
        res.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf-8");
    assert!(!text.contains("pasar"), "{text}");
}
