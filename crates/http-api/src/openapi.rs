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
