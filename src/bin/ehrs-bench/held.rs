//! `ehrs-bench held`: the memory a real `ehrs serve` holds for connections that send
//! nothing, half a request head, or drip a request body, N at a time. The server is the
//! release binary beside this one, in a process of its own, so its resident memory
//! (`VmRSS`) is its own; the limits are raised above N and the timeouts lengthened so
//! every connection stays held while it is measured.

use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const ADMIN_PASSWORD: &str = "held-bench-root-pw-7";

/// What each kind of held connection sends, then nothing more.
const KINDS: [(&str, &[u8]); 3] = [
    ("idle (connected, nothing sent)", b""),
    (
        "half a request head",
        b"GET /api/v1/patients HTTP/1.1\r\nHost: bench\r\n",
    ),
    (
        "a dripping body (head sent, 1 of 100000 body bytes)",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    ),
];

pub async fn held(connections: usize) {
    let bin = std::env::current_exe()
        .expect("the bench knows its own path")
        .with_file_name("ehrs");
    assert!(
        bin.exists(),
        "{} is missing: build both programs first (cargo build --release)",
        bin.display()
    );
    // A fresh server for each kind, so one kind's freed memory (which the allocator
    // keeps) does not count for the next.
    for (kind, first_bytes) in KINDS {
        measure(&bin, connections, kind, first_bytes).await;
    }
}

async fn measure(bin: &std::path::Path, connections: usize, kind: &str, first_bytes: &[u8]) {
    let dir = std::env::temp_dir().join(format!("ehrs-held-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let cap = (connections + 64).to_string();
    let mut server = tokio::process::Command::new(bin)
        .arg("serve")
        .env("EHRS_BIND", format!("127.0.0.1:{port}"))
        .env("EHRS_DATA_DIR", &dir)
        .env("EHRS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("EHRS_HTTP_MAX_CONNECTIONS", &cap)
        .env("EHRS_HTTP_MAX_CONNECTIONS_PER_ADDRESS", &cap)
        .env("EHRS_HTTP_HEADER_TIMEOUT", "10m")
        .env("EHRS_HTTP_BODY_TIMEOUT", "10m")
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .spawn()
        .expect("ehrs serve starts");
    let pid = server.id().expect("the server runs");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_healthy(&client, &base, &mut server).await;
    // Warm up the paths a connection takes (a few full requests), then settle.
    for _ in 0..50 {
        let _ = client.get(format!("{base}/health")).send().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rest = rss_kib(pid);
    let mut held = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("a connection");
        if !first_bytes.is_empty() {
            stream.write_all(first_bytes).await.expect("bytes sent");
        }
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = open_connections(&client, &base).await;
    let rss = rss_kib(pid);
    let over = rss.saturating_sub(rest);
    println!(
        "{connections} held, {kind}: VmRSS {rest} -> {rss} KiB, {over} KiB more ({:.1} KiB each); the server counts {open} open",
        over as f64 / connections as f64
    );
    drop(held);
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_healthy(client: &reqwest::Client, base: &str, server: &mut tokio::process::Child) {
    for _ in 0..300 {
        if let Ok(Some(status)) = server.try_wait() {
            panic!("ehrs serve stopped ({status}); its error is above");
        }
        if let Ok(answer) = client.get(format!("{base}/health")).send().await
            && answer.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ehrs serve did not become healthy at {base}");
}

/// `ehrs_http_connections_open` from `/metrics` (this bench's own connection included).
async fn open_connections(client: &reqwest::Client, base: &str) -> String {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(answer) => answer.text().await.unwrap_or_default(),
        Err(err) => return format!("? ({err})"),
    };
    text.lines()
        .find(|line| line.starts_with("ehrs_http_connections_open "))
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server runs");
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS is in /proc/<pid>/status")
}
