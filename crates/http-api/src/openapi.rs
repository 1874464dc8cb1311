//! The OpenAPI document's frame; the paths come from the handlers' `#[utoipa::path]`.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chat API",
        description = "A real-time chat backend: REST for accounts, channels, messages, threads, reactions, files and moderation; a WebSocket at `/api/ws` for live delivery. Errors are always `{\"detail\", \"code\"}`.",
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Registration, login, logout"),
        (name = "users", description = "Accounts"),
        (name = "channels", description = "Channels, membership, DMs and moderation"),
        (name = "messages", description = "Messages, threads, reactions and search"),
        (name = "files", description = "Uploads and downloads"),
        (name = "integrations", description = "Personal API tokens and bot accounts"),
        (name = "realtime", description = "The WebSocket handshake; the frames are described in its text"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        // Swagger UI's "Authorize" dialog speaks the OAuth2 password flow to the login
        // endpoint, which accepts form bodies for exactly this reason.
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new("/api/auth/login", Scopes::new()))])),
        );
    }
}

/// Errors every operation of a kind can answer, added where a handler did not list them:
/// 401 on authenticated operations; 400, 413, 415 and 422 on those with a body; 422 on those
/// with query parameters. Keeps the document honest for clients and schema-driven testers.
/// Applied after the routes have added their paths (see `app.rs`).
pub struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::content::ContentBuilder;
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{Ref, ResponseBuilder};

        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = operation.request_body.is_some();
                let has_query = operation
                    .parameters
                    .as_ref()
                    .is_some_and(|ps| ps.iter().any(|p| p.parameter_in == ParameterIn::Query));
                let mut add = |status: &str, description: &str| {
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description).into());
                };
                if authenticated {
                    add("401", "Missing, invalid, expired or revoked token");
                }
                if has_body {
                    add("400", "The body is not valid JSON");
                    add("413", "The body is too large");
                    add("415", "Wrong content type");
                    add("422", "The body does not fit the schema");
                }
                if has_query {
                    add("422", "A query parameter is out of range");
                }
            }
        }
    }
}
