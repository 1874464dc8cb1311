//! A small typed client over reqwest: one helper per boundary, so tests read like the
//! contract.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

/// A response: status, headers and the JSON body (or `Value::Null`).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and that the body is a documented error with this code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.body["code"], code, "body: {}", self.text);
        assert!(self.body["detail"].is_string(), "detail must be a string: {}", self.text);
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        &self.body
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self { base: base.to_owned(), http: reqwest::Client::builder().pool_max_idle_per_host(32).build().unwrap() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(Method::GET, path, token)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(Method::DELETE, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path, token).json(body)).await
    }

    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(Method::POST, path, token)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(self.request(Method::PATCH, path, token).json(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(self.request(Method::PUT, path, token).json(body)).await
    }

    /// Uploads `bytes` as the multipart part `file` named `filename` (docs/api.md section 6).
    pub async fn upload(&self, token: Option<&str>, filename: &str, bytes: Vec<u8>) -> Reply {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        self.send(self.request(Method::POST, "/api/files", token).multipart(form)).await
    }

    /// Registers with the conventional test password and returns the access token.
    pub async fn register(&self, username: &str) -> String {
        let reply = self
            .post(
                "/api/auth/register",
                None,
                &json!({"username": username, "email": format!("{username}@example.com"), "password": "secretpass"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "register {username}: {}", reply.text);
        reply.body["access_token"].as_str().unwrap().to_owned()
    }
}
