//! HTTP method basics for every route at once: `HEAD` is served as `GET` without a body, and
//! a known path asked with a method it does not have answers 405 with `Allow`.
//!
//! actix routes by path *and* method guard, so a path whose guards all refuse the method
//! falls through to the application's default service exactly like an unknown path: 404.
//! Proxies, load balancers and uptime checkers expect `HEAD` to work wherever `GET` does and
//! a wrong method to be a 405, so both are handled here, once, instead of in every handler.

use actix_web::body::MessageBody;
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, web};

use crate::error::ApiError;

/// Every route template the application serves and the methods each one answers.
///
/// Built from the OpenAPI document (every documented operation is a registered route) plus
/// the few undocumented routes (the documentation pages themselves), so a new handler is in
/// the table as soon as it is in `/openapi.json`.
pub struct RouteTable {
    routes: Vec<(ResourceDef, Vec<Method>)>,
}

impl RouteTable {
    /// The templates and methods of an OpenAPI document's `paths`.
    pub fn from_openapi(openapi: &utoipa::openapi::OpenApi) -> Self {
        let mut table = Self { routes: Vec::new() };
        for (path, item) in &openapi.paths.paths {
            let operations = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::DELETE, item.delete.is_some()),
                (Method::OPTIONS, item.options.is_some()),
                (Method::HEAD, item.head.is_some()),
                (Method::TRACE, item.trace.is_some()),
            ];
            let methods = operations.into_iter().filter_map(|(method, present)| present.then_some(method)).collect();
            table.add(path, methods);
        }
        table
    }

    /// Adds a template in actix's syntax (`/docs/{_:.*}`) with the methods it answers.
    pub fn add(&mut self, template: &str, methods: Vec<Method>) {
        self.routes.push((ResourceDef::new(template), methods));
    }

    /// The methods `path` answers, in a stable order, with `HEAD` wherever `GET` is; empty
    /// when no template matches the path.
    pub fn allowed(&self, path: &str) -> Vec<Method> {
        let mut allowed: Vec<Method> = Vec::new();
        for (template, methods) in &self.routes {
            if template.is_match(path) {
                for method in methods {
                    if !allowed.contains(method) {
                        allowed.push(method.clone());
                    }
                }
            }
        }
        if allowed.contains(&Method::GET) && !allowed.contains(&Method::HEAD) {
            allowed.push(Method::HEAD);
        }
        const ORDER: [Method; 8] = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
        ];
        allowed.sort_by_key(|method| ORDER.iter().position(|m| m == method));
        allowed
    }
}

/// Middleware: a `HEAD` request is routed as the `GET` it stands for.
///
/// The body is not sent: actix-http's HTTP/1 and HTTP/2 encoders remember that the request
/// line said `HEAD` and write only the status and headers (with the `Content-Length` the
/// `GET` body has). The request log and metrics, outside this middleware, still say `HEAD`.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}

/// The application's default service: the request matched no route. A path that a route
/// template matches was asked with a method it does not answer (405 with `Allow`); any
/// other path does not exist (404).
pub async fn no_route(req: HttpRequest, table: web::Data<RouteTable>) -> Result<HttpResponse, ApiError> {
    let allow = table.allowed(req.path());
    if allow.is_empty() { Err(ApiError::not_found("resource")) } else { Err(ApiError::MethodNotAllowed(allow)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut table = RouteTable { routes: Vec::new() };
        table.add("/api/channels", vec![Method::GET, Method::POST]);
        table.add("/api/channels/me", vec![Method::GET]);
        table.add("/api/channels/{id}", vec![Method::GET, Method::PATCH, Method::DELETE]);
        table.add("/api/auth/login", vec![Method::POST]);
        table.add("/docs/{_:.*}", vec![Method::GET]);
        table
    }

    #[test]
    fn allowed_methods_are_the_union_of_every_matching_template_with_head_beside_get() {
        use Method as M;
        let table = table();
        for (path, expected) in [
            ("/api/channels", vec![M::GET, M::HEAD, M::POST]),
            ("/api/channels/me", vec![M::GET, M::HEAD, M::PATCH, M::DELETE]),
            ("/api/channels/0190", vec![M::GET, M::HEAD, M::PATCH, M::DELETE]),
            ("/api/auth/login", vec![M::POST]),
            ("/docs/index.css", vec![M::GET, M::HEAD]),
            ("/api/channels/0190/nope", vec![]),
            ("/api/nope", vec![]),
        ] {
            assert_eq!(table.allowed(path), expected, "{path}");
        }
    }
}
