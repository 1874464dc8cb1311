//! The HTTP API: routes, extractors, error mapping and the OpenAPI description.
//!
//! Architecture Invariant: status codes are chosen in exactly one place, `error.rs`.
//! Handlers turn request DTOs into domain values, make one call, and turn the result into a
//! response DTO.

pub mod accounts;
pub mod app;
pub mod banner;
pub mod config;
pub mod dto;
pub mod error;
pub mod extract;
pub mod files;
pub mod guard;
pub mod history_cache;
pub mod listener;
pub mod methods;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod request_id;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod thumbnails;

pub use app::{Application, StartError};
pub use config::Settings;
