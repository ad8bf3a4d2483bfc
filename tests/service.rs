//! The example Python service (`examples/python_service`), end to end: started on
//! 127.0.0.1, then concurrent requests — one importing C extension modules, one looping for
//! ever (its deadline), one exhausting memory (its limit), malformed ones — and its page,
//! served and driven in headless Chromium.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// The service, killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    // target/<profile>/deps/service-* -> target/<profile>/examples/python_service
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let mut child = Command::new(examples.join("python_service"))
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start examples/python_service (cargo test builds it)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("the service did not start (is CPython built? run python-demo/run-python -c pass): {line:?}"))
        .to_string();
    Server { child, address }
}

/// One HTTP/1.1 request; the status code and the body. Fails past two minutes.
fn request(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("a response within two minutes");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let status_line = String::from_utf8_lossy(&response[..split]).into_owned();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{status_line}"));
    (code, response[split + 4..].to_vec())
}

fn run(address: &str, query: &str, snippet: &str) -> serde_json::Value {
    let (code, body) = request(address, "POST", &format!("/run{query}"), snippet.as_bytes());
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn the_service_runs_snippets_with_deadlines_and_memory_limits_concurrently() {
    let server = start();
    let address = server.address.clone();
    let snippets: Vec<(&str, &str)> = vec![
        (
            "",
            "import math, _json, binascii, unicodedata\nprint(math.sqrt(16), unicodedata.name('a'), binascii.hexlify(b'wasm'))",
        ),
        ("?deadline_ms=1000", "while True:\n    pass"),
        ("?memory_mb=64", "blocks = [bytearray(1 << 20) for _ in range(1000)]"),
        ("", "import sys\nprint('to stderr', file=sys.stderr)\nsys.exit(3)"),
    ];
    let runs: Vec<_> = snippets
        .into_iter()
        .map(|(query, snippet)| {
            let address = address.clone();
            std::thread::spawn(move || run(&address, query, snippet))
        })
        .collect();
    let results: Vec<serde_json::Value> = runs.into_iter().map(|r| r.join().unwrap()).collect();

    assert_eq!(results[0]["status"], 0, "{}", results[0]);
    assert_eq!(
        results[0]["stdout"], "4.0 LATIN SMALL LETTER A b'7761736d'\n",
        "{}",
        results[0]
    );
    let ended = results[1]["error"].as_str().unwrap_or_default();
    assert!(
        results[1]["status"].is_null() && ended.contains("deadline"),
        "{}",
        results[1]
    );
    let stderr = results[2]["stderr"].as_str().unwrap_or_default();
    assert!(
        results[2]["status"] == 1 && stderr.contains("MemoryError"),
        "{}",
        results[2]
    );
    assert_eq!(results[3]["status"], 3, "{}", results[3]);
    assert_eq!(results[3]["stderr"], "to stderr\n", "{}", results[3]);

    // Malformed requests are refused with a reason.
    let (code, body) = request(&address, "POST", "/run", b"");
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, _) = request(&address, "POST", "/run", b"\xff\xfe");
    assert_eq!(code, 400);
    // The service still runs snippets after all that.
    assert_eq!(
        run(&address, "", "print('still here')")["stdout"],
        "still here\n"
    );
}

#[test]
fn the_service_serves_its_page() {
    let server = start();
    let (code, body) = request(&server.address, "GET", "/", b"");
    let page = String::from_utf8_lossy(&body);
    assert!(
        code == 200 && page.contains("<textarea") && page.contains("fetch(\"/run\""),
        "{page}"
    );
}

#[test]
fn the_page_in_headless_chromium_runs_a_snippet_and_shows_its_output() {
    // The page's `?code=...&run` fills the text area and presses Run; Chromium prints the
    // page as its scripts left it.
    let server = start();
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("no chromium: toolchain/setup.sh installs Debian's (apt-get install chromium)");
    let url = format!(
        "http://{}/?code=import%20math%3B%20print(math.factorial(20))&run",
        server.address
    );
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=60000",
        "--dump-dom",
        &url,
    ]);
    let out = common::output_within(cmd, b"", std::time::Duration::from_secs(120));
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<pre id=\"output\">2432902008176640000\n</pre>")
            && dom.contains("<span id=\"state\">exit status 0</span>"),
        "{dom}"
    );
}
