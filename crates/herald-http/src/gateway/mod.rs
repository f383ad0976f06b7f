//! The real-time transports: Socket.io (`/socket.io/`) and plain WebSocket (`/ws`) framing over
//! the transport-free session engine of [`herald_core::realtime`] (see `docs/realtime.md`). Each
//! transport authenticates its handshake through the engine, opens a session with its own
//! [`Outlet`](herald_core::realtime::Outlet), and hands the session what its client asks.

mod sio;
mod ws;

use axum::{Router, routing::get};
use herald_core::realtime::Engine;

/// Adds `/ws` and the demo page to `app`, and serves Socket.io at `/socket.io/` in front of it,
/// all on `engine`.
pub fn attach(engine: &Engine, app: Router) -> Router {
    let sio = sio::layer(engine.clone());
    app.merge(Router::new().route("/ws", get(ws::upgrade)).with_state(engine.clone()))
        .merge(crate::demo::routes())
        .layer(sio)
}
