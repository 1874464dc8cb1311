//! Real-time delivery: WebSocket sessions, the channel hub, each connection's feed of
//! events in seq order, event-log replay and Redis fan-out (docs/websocket.md).

mod budget;
pub mod feed;
mod hub;
mod presence;
pub mod protocol;
mod relay;
pub mod session;
pub mod socket;
mod threads;

pub use budget::ReplayBudget;
pub use hub::{ConnId, Credential, Delivery, Hub, Kick, Outbound, Registration, Relay};
pub use presence::Presence;
pub use relay::RedisRelay;
pub use session::{Caller, SessionEnv, StartError, shutdown_switch, start};
pub use socket::Handover;
pub use threads::SocketThreads;
