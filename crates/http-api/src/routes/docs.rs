//! The API description: `/openapi.json`, Swagger UI at `/docs`, ReDoc at `/redoc`, all
//! served from the binary so they work with no internet.

use actix_web::{HttpResponse, get, web};

/// ReDoc's standalone bundle (redoc 2.5.4 from npm, MIT, see `assets/redoc.LICENSE`).
const REDOC_JS: &str = include_str!("../../assets/redoc.standalone.js");

/// The routes below, which are not in the OpenAPI document they serve; all answer `GET` only.
/// `methods::RouteTable` needs them to answer a wrong method with 405 rather than 404.
pub const ROUTES: [&str; 5] = ["/openapi.json", "/redoc", "/redoc/redoc.standalone.js", "/docs", "/docs/{_:.*}"];

pub fn configure(cfg: &mut web::ServiceConfig, openapi: utoipa::openapi::OpenApi) {
    let json = openapi.to_json().unwrap_or_else(|_| String::from("{}"));
    cfg.app_data(web::Data::new(OpenApiJson(json)))
        .service(openapi_json)
        .service(redoc)
        .service(redoc_js)
        .service(utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi))
        .service(web::redirect("/docs", "/docs/"));
}

struct OpenApiJson(String);

#[get("/openapi.json")]
async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(doc.0.clone())
}

#[get("/redoc")]
async fn redoc() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(
        r#"<!DOCTYPE html>
<html>
  <head>
    <title>Chat API — ReDoc</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="/redoc/redoc.standalone.js"></script>
  </body>
</html>"#,
    )
}

#[get("/redoc/redoc.standalone.js")]
async fn redoc_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(REDOC_JS)
}
