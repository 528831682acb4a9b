//! The limits of `paycode serve` (the real binary, docs/production.md
//! "Limits"), each on a configuration with short timeouts and small
//! numbers: slow clients sending a header byte a second are cut off by the
//! header read timeout while a normal request is answered at once; a body
//! that trickles in is cut off by the request timeout (408); requests past
//! the in-flight limit answer 503 and connections past the connection limit
//! wait; request heads over 16 KiB or 64 headers answer 431; a shutdown
//! ends within its timeout whatever the clients do; an address that keeps
//! sending wrong keys is refused with 429; a merchant past its default rate
//! gets 429; `/metrics` moves to `metrics_listen`; logs in a pipe have no
//! colour codes; a statement upload is held once, not multiplied.
//!
//! Every server listens on 127.0.0.1 port 0, with the in-process sandbox and
//! the memory store: nothing outside the machine, nothing left behind.

use std::process::Stdio;
use std::time::{Duration, Instant};

use paycode::config::embedded::DEMO_API_KEY;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

struct Server {
    child: Child,
    base: String,
    address: String,
    metrics: Option<String>,
    stderr: tokio::task::JoinHandle<String>,
    _dir: tempfile::TempDir,
}

/// `paycode serve` on a configuration whose `[server]` section adds
/// `server`; waits until it listens.
async fn start(server: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paycode.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\n[store]\nkind = \"memory\"\n\n\
             [[merchants]]\nid = \"demo\"\napi_keys = [\"{DEMO_API_KEY}\"]\n\n\
             [sandbox]\nin_process = true\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paycode"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the paycode binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (base, metrics) = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(address) = line.trim().strip_prefix("listening") {
                let base = address.trim().to_owned();
                // The metrics line, if any, comes right after.
                let metrics = if server.contains("metrics_listen") {
                    let line = lines.next_line().await.unwrap().unwrap_or_default();
                    line.trim()
                        .strip_prefix("metrics")
                        .map(|address| address.trim().to_owned())
                } else {
                    None
                };
                return (base, metrics);
            }
        }
        panic!("paycode serve exited before listening");
    })
    .await
    .expect("paycode serve listens within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let address = base.trim_start_matches("http://").to_owned();
    Server {
        child,
        base,
        address,
        metrics,
        stderr,
        _dir: dir,
    }
}

impl Server {
    /// SIGTERM; how long the process took to exit, and what it logged.
    async fn stop(mut self) -> (Duration, String) {
        let pid = self.child.id().unwrap().to_string();
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("paycode exits within 60 s of SIGTERM")
            .unwrap();
        (started.elapsed(), self.stderr.await.unwrap())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A client that sends `head` one byte per second; resolves to how long the
/// server kept the connection open (until it closed it or `give_up`).
async fn trickle(address: String, head: &'static [u8], give_up: Duration) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let (mut read, mut write) = stream.split();
    let closed = async {
        let mut buffer = [0u8; 1024];
        loop {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let sending = async {
        for byte in head.iter().cycle() {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        () = closed => {}
        () = sending => {}
        () = tokio::time::sleep(give_up) => {}
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_the_header_timeout_and_cannot_hold_the_service() {
    let server = start("header_read_timeout_secs = 2").await;
    let slow: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(trickle(
                server.address.clone(),
                b"GET /healthz HTTP/1.1\r\nHost: paycode\r\nX-Slow: aaaaaaaaaaaaaaaa",
                Duration::from_secs(12),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let asked = Instant::now();
    let answer = client()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "a normal request waited {:?}",
        asked.elapsed()
    );
    for connection in slow {
        let held = connection.await.unwrap();
        assert!(
            held < Duration::from_secs(6),
            "a slow client held its connection for {held:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_is_cut_off_by_the_request_timeout() {
    let server = start("request_timeout_secs = 2").await;
    let mut stream = TcpStream::connect(&server.address).await.unwrap();
    let head = format!(
        "POST /v1/payments HTTP/1.1\r\nHost: paycode\r\nAuthorization: Bearer {DEMO_API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = stream.split();
    let answer = async {
        let mut text = Vec::new();
        let mut buffer = [0u8; 1024];
        while let Ok(n) = read.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&text).into_owned()
    };
    let trickling = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if write.write_all(b" ").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let answer = tokio::select! {
        answer = answer => answer,
        () = trickling => unreachable!(),
        () = tokio::time::sleep(Duration::from_secs(10)) => String::new(),
    };
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer:?}",
        started.elapsed()
    );
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

/// Sends `head` (a whole request head) on a fresh connection; the answer's
/// status line.
async fn status_line(address: &str, head: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    // The server may answer and close before reading it all: a failed write is fine.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused_with_431() {
    let server = start("").await;
    let request = |headers: &str| {
        format!("GET /healthz HTTP/1.1\r\nHost: paycode\r\n{headers}Connection: close\r\n\r\n")
    };
    // A realistic head, with a 4 KiB header: answered.
    let normal = request(&format!("X-Trace: {}\r\n", "a".repeat(4096)));
    assert!(
        status_line(&server.address, &normal)
            .await
            .starts_with("HTTP/1.1 200")
    );
    // One header of 32 KiB: the head is over 16 KiB.
    let long = request(&format!("X-Big: {}\r\n", "a".repeat(32 * 1024)));
    let status = status_line(&server.address, &long).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status:?}");
    // 80 small headers: more than 64 (hyper alone would take up to 100).
    let many = (0..80).fold(String::new(), |mut headers, n| {
        headers.push_str(&format!("X-H{n}: v\r\n"));
        headers
    });
    let status = status_line(&server.address, &request(&many)).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_limit_answer_503_at_once() {
    let server = start("requests_in_flight_max = 2").await;
    // Two payments that wait for a password that never comes: held 4 s each.
    let held: Vec<_> = (0..2)
        .map(|n| {
            let base = server.base.clone();
            tokio::spawn(async move {
                client()
                    .post(format!("{base}/v1/payments?wait=4"))
                    .bearer_auth(DEMO_API_KEY)
                    .json(&serde_json::json!({
                        "order_no": format!("HELD{n}"), "auth_code": "134567890123456702",
                        "amount": "1.00", "subject": "held"
                    }))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answer = client()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    for request in held {
        assert_eq!(request.await.unwrap(), 201);
    }
    let answer = client()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let server = start("connections_max = 2\nheader_read_timeout_secs = 30").await;
    let idle_one = TcpStream::connect(&server.address).await.unwrap();
    let _idle_two = TcpStream::connect(&server.address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(1_500))
        .build()
        .unwrap();
    let refused = quick.get(format!("{}/healthz", server.base)).send().await;
    assert!(refused.is_err(), "answered past the limit: {refused:?}");
    drop(idle_one);
    let answer = client()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_within_its_timeout_whatever_the_clients_do() {
    let server = start("shutdown_timeout_secs = 2\nheader_read_timeout_secs = 30").await;
    let slow = tokio::spawn(trickle(
        server.address.clone(),
        b"GET /healthz HTTP/1.1\r\nHost: paycode\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        Duration::from_secs(40),
    ));
    let base = server.base.clone();
    let waiting = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(format!("{base}/v1/payments?wait=30"))
            .bearer_auth(DEMO_API_KEY)
            .json(&serde_json::json!({
                "order_no": "WAITING", "auth_code": "134567890123456702",
                "amount": "1.00", "subject": "waiting"
            }))
            .send()
            .await;
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (took, _) = server.stop().await;
    assert!(took < Duration::from_secs(8), "the shutdown took {took:?}");
    slow.abort();
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_guessing_keys_is_refused_with_429() {
    // The default budget: 30 missing or wrong keys a minute per address.
    let server = start("").await;
    let http = client();
    let url = format!("{}/v1/payments/X1", server.base);
    for n in 0..30 {
        let answer = http
            .get(&url)
            .bearer_auth(format!("sk_guess_{n:04}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401, "guess {n}");
    }
    let answer = http.get(&url).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 429);
    let retry: u64 = answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // While blocked, even the right key cannot tell a good guess from a bad one.
    let answer = http
        .get(&url)
        .bearer_auth(DEMO_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 429);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    // When the block lifts is the limiter's rule, tested on its own clock
    // (http::limits::tests); here, the address is blocked, not the service.
    let answer = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_past_the_default_rate_gets_429() {
    let server = start("").await;
    let http = client();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{}/v1/payments/X1", server.base));
            tokio::spawn(async move {
                let mut limited = Vec::new();
                for _ in 0..80 {
                    let answer = http
                        .get(&url)
                        .bearer_auth(DEMO_API_KEY)
                        .send()
                        .await
                        .unwrap();
                    if answer.status().as_u16() == 429 {
                        limited.push(answer.headers()["retry-after"].to_str().unwrap().to_owned());
                    } else {
                        assert_eq!(answer.status().as_u16(), 404);
                    }
                }
                limited
            })
        })
        .collect();
    let mut limited = Vec::new();
    for worker in workers {
        limited.extend(worker.await.unwrap());
    }
    assert!(!limited.is_empty(), "1280 requests at once were all served");
    assert!(limited.iter().all(|secs| secs == "1"), "{limited:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_their_own_listener_when_asked() {
    let http = client();
    let together = start("").await;
    let answer = http
        .get(format!("{}/metrics", together.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("paycode_pending_orders")
    );
    together.stop().await;

    let apart = start("metrics_listen = \"127.0.0.1:0\"").await;
    let metrics = apart
        .metrics
        .clone()
        .expect("the metrics address is printed");
    let answer = http
        .get(format!("{}/metrics", apart.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    let answer = http.get(&metrics).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("paycode_pending_orders")
    );
    let answer = http
        .get(format!("{}/healthz", apart.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    apart.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_pipe_have_no_colour_codes() {
    let server = start("").await;
    let answer = client()
        .get(format!("{}/v1/payments/X1", server.base))
        .bearer_auth(DEMO_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    let (_, logs) = server.stop().await;
    assert!(logs.contains("INFO"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "colour codes in a pipe: {logs:?}");
}

/// A WeChat ALL bill of `records` records whose stated count is one too
/// many: the import parses every record, then rejects the file whole.
fn bill_with_a_wrong_count(records: usize) -> Vec<u8> {
    paycode_adapters::testing::bills::wechat_bill_of_payments(
        records,
        records + 1,
        "Coffee and a croissant",
    )
    .into_bytes()
}

/// A process's memory figure from /proc (`VmRSS`, `VmHWM`), in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or_else(
            || panic!("no {field} in /proc/{pid}/status"),
            |kib| kib * 1024,
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_upload_is_held_once_not_multiplied() {
    // A 64 MiB bill: the service's peak memory grows by the file and the
    // rows parsed from it, not by copies of the body.
    let bill = bill_with_a_wrong_count(250_000);
    let upload = bill.len() as u64;
    let server = start("").await;
    let pid = server.child.id().unwrap();
    let before = proc_status_bytes(pid, "VmHWM:");
    let answer = client()
        .post(format!(
            "{}/v1/reconciliations?channel=wechat&date=2026-11-22",
            server.base
        ))
        .bearer_auth(DEMO_API_KEY)
        .header("content-type", "text/csv")
        .timeout(Duration::from_secs(120))
        .body(bill)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 422);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("250001"),
        "the whole file was parsed: {body}"
    );
    let grown = proc_status_bytes(pid, "VmHWM:").saturating_sub(before);
    eprintln!("upload {} MiB, peak grew {} MiB", upload >> 20, grown >> 20);
    assert!(
        grown < upload * 12 / 5,
        "a {} MiB upload grew the peak by {} MiB",
        upload >> 20,
        grown >> 20
    );
    server.stop().await;
}
