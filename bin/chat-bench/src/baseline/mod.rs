//! The ceilings a server's figures are compared with, measured on the same machine in the
//! same run: a bare single-row INSERT loop against the same PostgreSQL, and a bare WebSocket
//! broadcast server inside chat-bench.

pub mod broadcast;
pub mod insert;
