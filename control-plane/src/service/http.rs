//! `/health` and `/metrics`, for load balancers, orchestrators and Prometheus. Neither
//! says anything about residents, staff or message contents.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::Service;

pub(super) fn router(service: Service) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(service)
}

/// 200 when the broker connection is up and the store answers, else 503.
async fn health(State(service): State<Service>) -> impl IntoResponse {
    let health = service.health().await;
    let status = if health.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if health.is_ok() { "ok" } else { "degraded" },
        "broker_connected": health.broker_connected,
        "store_reachable": health.store_reachable,
    });
    (status, Json(body))
}

async fn metrics(State(service): State<Service>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        service.metrics_text().await,
    )
}
