//! One module per resource, each with a `configure` that registers its routes.

pub mod auth;
pub mod bots;
pub mod channels;
pub mod docs;
pub mod files;
pub mod health;
pub mod messages;
pub mod tokens;
pub mod users;
pub mod web;
pub mod webhooks;
pub mod ws;
