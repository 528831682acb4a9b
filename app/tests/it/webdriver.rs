//! A small W3C WebDriver client over `reqwest`, enough for the console's
//! browser tests: start `chromedriver` and a headless Chromium, open pages,
//! find, click and type, run a script, take screenshots. Waits poll the
//! page with a deadline (a browser renders when it renders); nothing
//! sleeps for a rule about time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The W3C name of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where the browser and its driver are: Debian's `chromium` and
/// `chromium-driver` packages, unless `PAYCODE_CHROMIUM` and
/// `PAYCODE_CHROMEDRIVER` say otherwise. Missing, the test fails saying so.
pub fn browser_paths() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("PAYCODE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let driver = std::env::var_os("PAYCODE_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    for (path, package) in [(&chromium, "chromium"), (&driver, "chromium-driver")] {
        assert!(
            path.exists(),
            "the console's browser tests need {} (Debian package {package}: \
             apt-get install -y chromium chromium-driver; .ci/run installs both)",
            path.display()
        );
    }
    (chromium, driver)
}

/// A running chromedriver with one headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    /// chromedriver's port and the session's id, to end it from `Drop`.
    port: u16,
    session_id: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium
    /// of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        Browser::start_with(width, height, &[]).await
    }

    /// Like [`Browser::start`], with JavaScript turned off.
    pub async fn start_without_javascript(width: u32, height: u32) -> Browser {
        Browser::start_with(width, height, &["--blink-settings=scriptEnabled=false"]).await
    }

    async fn start_with(width: u32, height: u32, extra_args: &[&str]) -> Browser {
        let (chromium, driver_path) = browser_paths();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("{} does not start: {error}", driver_path.display()));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(answer) = ready
                && let Ok(status) = answer.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver is not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        // Headless as root on a closed network: no sandbox, and no
        // background connections (refused here, and slow to give up).
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(extra_args.iter().map(|arg| (*arg).to_owned()))
            .collect();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Browser {
            http,
            session: format!("{base}/session/{session}"),
            port,
            session_id: session.clone(),
            driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("webdriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element `css` selects, if the page has one now.
    pub async fn find(&self, css: &str) -> Option<String> {
        let answer: Value = self
            .http
            .post(format!("{}/element", self.session))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"][ELEMENT].as_str().map(ToOwned::to_owned)
    }

    /// The element `css` selects, waiting up to 20 s for it.
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(element) = self.find(css).await {
                return element;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {css} within 20 s on {}",
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let element = self.wait_for(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/attribute/{name}"),
            None,
        )
        .await
        .as_str()
        .map(ToOwned::to_owned)
    }

    /// Waits up to 20 s for `css`'s attribute `name` to be one of `values`.
    pub async fn wait_for_attribute(&self, css: &str, name: &str, values: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(value) = self.attribute(css, name).await
                && values.contains(&value.as_str())
            {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} [{name}] not one of {values:?} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` (an async function body whose last argument is the
    /// callback) and returns what it passed to the callback.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a PNG of the window as `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the session and the driver (as dropping it does).
    pub fn quit(self) {
        drop(self);
    }
}

impl Drop for Browser {
    /// Ends the browser session (chromedriver then closes Chromium, which
    /// would outlive a killed driver), also when a test panics; then kills
    /// the driver.
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session_id, self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                // The answer comes once the browser is closed; its first
                // bytes are enough (the driver may keep the connection open).
                let mut answer = [0u8; 512];
                let _ = stream.read(&mut answer);
            }
        }
        let _ = self.driver.start_kill();
    }
}
