//! The appliance's local HTTP server (the tablet's side of the counter).
//!
//! Today it serves `GET /health`: whether the link to the control plane is up, how
//! many messages wait in the outbox, the boot counter and the version — what a
//! technician at the counter or central IT's monitoring asks first. The daemon
//! merges the staff UI's routes (`crate::ui::Ui::router`) into this router.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::link::LinkHandle;
use crate::store::ApplianceStore;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The link.
    pub link: LinkHandle,
    /// The store.
    pub store: Arc<ApplianceStore>,
    /// This start's boot counter.
    pub boot_counter: u64,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    let store = Arc::clone(&state.store);
    let pending = tokio::task::spawn_blocking(move || store.pending_count())
        .await
        .ok()
        .and_then(Result::ok);
    Json(json!({
        "link": if state.link.is_online() { "online" } else { "offline" },
        "outbox_pending": pending,
        "boot_counter": state.boot_counter,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
