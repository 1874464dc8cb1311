//! A headless Chromium driven over WebDriver, for the web client's tests.
//!
//! The W3C WebDriver protocol is plain JSON over HTTP, so this speaks it with the `reqwest`
//! the harness already has, instead of adding a WebDriver crate and its dependency tree to
//! the workspace: the handful of commands below are all the tests need.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// W3C's key for an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver's codes for special keys in "send keys".
pub const ENTER: &str = "\u{E007}";
pub const SHIFT: &str = "\u{E008}";
/// Releases modifier keys held by an earlier key in the same "send keys".
pub const RELEASE: &str = "\u{E000}";
pub const ESCAPE: &str = "\u{E00C}";

/// The Chromium and ChromeDriver binaries, or why the browser tests cannot run here.
pub fn find_chromium() -> Result<(PathBuf, PathBuf), String> {
    let browser = ["/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| which(name))
        .ok_or("no Chromium found (apt-get install chromium chromium-driver)")?;
    let driver = which("chromedriver").ok_or("no chromedriver found (apt-get install chromium-driver)")?;
    Ok((browser, driver))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// One browser: its own ChromeDriver, profile directory and WebDriver session; all of them
/// go away on drop.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    profile: PathBuf,
}

/// A reference to an element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts a browser with a 1280×800 viewport.
    pub async fn start() -> Self {
        let (binary, driver_path) = find_chromium().expect("Chromium and ChromeDriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(reply) = http.get(format!("{base}/status")).send().await
                && reply.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("chat-browser-{}", uuid::Uuid::new_v4().simple()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,800", "--lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let reply: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session =
            reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {reply}")).to_owned();
        let browser = Self { http, session: format!("{base}/session/{session}"), driver, profile };
        browser.viewport(1280, 800, false).await;
        browser
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = reply["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", reply["value"]["message"]);
        }
        reply["value"].clone()
    }

    /// Makes the page's viewport exactly this size (a phone's with `mobile`).
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
            }})),
        )
        .await;
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Waits until `script` returns something truthy, and returns it; panics with `what`
    /// after 30 s.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.eval(script, args.clone()).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let toasts = self.eval("return document.querySelector('#toasts')?.innerText", json!([])).await;
                panic!("timed out waiting for {what} (toasts on the page: {toasts})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css`, waiting up to 30 s for it to exist.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(
            &format!("an element {css}"),
            "return document.querySelector(arguments[0]) !== null",
            json!([css]),
        )
        .await;
        let value =
            self.command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        Element(value[ELEMENT].as_str().unwrap().to_owned())
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{}/click", element.0), Some(json!({}))).await;
    }

    /// Types `text` into the element as key presses (so Enter and Shift+Enter reach the
    /// page's key handlers); for a file input, `text` is the file's path.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{}/value", element.0), Some(json!({"text": text})))
            .await;
    }

    /// The page as PNG bytes.
    pub async fn screenshot(&self) -> Vec<u8> {
        let value = self.command(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap()).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session stops Chromium (killing only the driver would orphan it). Drop
        // cannot await, so this is one blocking HTTP request by hand.
        if let Some((host, path)) = self.session.strip_prefix("http://").and_then(|rest| rest.split_once('/')) {
            use std::io::{Read as _, Write as _};
            if let Ok(mut stream) = std::net::TcpStream::connect(host) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
