//! Real-time delivery: WebSocket sessions, the channel hub, event-log replay and Redis
//! fan-out (docs/websocket.md).

mod hub;
mod presence;
pub mod protocol;
mod relay;
pub mod session;

pub use hub::{ConnId, Hub, Outbound, Registration, Relay};
pub use presence::Presence;
pub use relay::RedisRelay;
pub use session::{SessionEnv, shutdown_switch, start};
