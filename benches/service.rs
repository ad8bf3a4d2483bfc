//! The example service (`cargo bench --bench service`): requests per second and p50/p99
//! latency of a trivial snippet (`pass`) at 1 and 8 concurrent clients, against the same
//! snippet run directly on the service's `Runtime` (no HTTP) in the same run; and the peak
//! host memory each concurrent CPython instance takes.

#[path = "../examples/python_service/service.rs"]
mod service;

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One `POST /run` of `snippet`; its latency. Panics unless the snippet ran with status 0.
fn post(address: &str, snippet: &str) -> Duration {
    let start = Instant::now();
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "POST /run HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        snippet.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(snippet.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let elapsed = start.elapsed();
    assert!(response.contains("\"status\":0"), "{response}");
    elapsed
}

/// `clients` threads sending `per_client` requests each: requests per second, p50, p99.
fn load(address: &str, clients: usize, per_client: usize) -> (f64, Duration, Duration) {
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let address = address.to_string();
            std::thread::spawn(move || {
                (0..per_client)
                    .map(|_| post(&address, "pass"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let rps = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (rps, at(0.5), at(0.99))
}

/// The process's resident memory now, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn main() {
    let prefix = service::cpython_prefix().unwrap_or_else(|e| panic!("{e}"));
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let runtime = wasix_dl::Runtime::on(tokio.handle().clone(), None);
    let app = service::app(runtime.clone(), prefix.clone());
    let listener = tokio
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio.spawn(async move { axum::serve(listener, app).await });

    // The same snippet without HTTP: the service's floor.
    let direct = wasix_dl::Program::new(prefix.join("bin/python3.13.wasm"))
        .dir(wasix_dl::MappedDir::parse(&prefix.display().to_string()).unwrap())
        .env("PYTHONHOME", prefix.display().to_string())
        .args(["-c", "pass"])
        .stdout(wasix_dl::Output::Capture);
    direct.output_on(&runtime).unwrap(); // compiles and caches
    let runs: Vec<f64> = (0..10)
        .map(|_| {
            let start = Instant::now();
            direct.output_on(&runtime).unwrap();
            start.elapsed().as_secs_f64()
        })
        .collect();
    let floor = common::median(runs);

    load(&address, 1, 3); // warm
    println!("the example service, `pass` per request (4 run at once at most)");
    println!("                 req/s       p50       p99");
    for clients in [1, 8] {
        let (rps, p50, p99) = load(&address, clients, 40 / clients.min(4));
        println!(
            "  {clients} client(s) {rps:9.1} {:7.1} ms {:7.1} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "  direct run on the Runtime, no HTTP: {:.1} ms (median of 10)",
        floor * 1e3
    );

    // Peak memory per concurrent CPython: 4 snippets that hold on for a second (the
    // service's limit of runs at once), sampled every 20 ms.
    let idle = rss_mib();
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || post(&address, "import time\ntime.sleep(1)"))
        })
        .collect();
    let mut peak = idle;
    while !sleepers.iter().all(|s| s.is_finished()) {
        peak = peak.max(rss_mib());
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in sleepers {
        s.join().unwrap();
    }
    println!(
        "  host memory: {idle:.0} MiB idle, {peak:.0} MiB with 4 CPythons running: {:.1} MiB each",
        (peak - idle) / 4.0
    );
}
