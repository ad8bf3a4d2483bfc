//! The service itself (its routes, handlers and page), shared by the example's `main.rs` and
//! `benches/service.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use serde::{Deserialize, Serialize};
use wasix_dl::{MappedDir, Output, Program, Runtime};

/// Snippets run at once; the others wait.
const CONCURRENT_RUNS: usize = 4;

struct Service {
    runtime: Runtime,
    /// CPython's install prefix (mapped into the guest at the same path).
    prefix: PathBuf,
    runs: tokio::sync::Semaphore,
}

#[derive(Deserialize)]
struct Limits {
    deadline_ms: Option<u64>,
    memory_mb: Option<u64>,
}

#[derive(Serialize)]
struct Ran {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    error: Option<String>,
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

async fn run(
    State(service): State<Arc<Service>>,
    limits: Query<Limits>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(snippet) = String::from_utf8(body.to_vec()) else {
        return bad_request("the snippet is not UTF-8 text\n");
    };
    if snippet.trim().is_empty() {
        return bad_request("no snippet: send Python code as the request body\n");
    }
    let deadline = Duration::from_millis(limits.deadline_ms.unwrap_or(5000).clamp(1, 60_000));
    let memory = limits.memory_mb.unwrap_or(256).clamp(16, 2048) << 20;
    let prefix = service.prefix.display().to_string();
    let program = Program::new(service.prefix.join("bin/python3.13.wasm"))
        .dir(MappedDir::parse(&prefix).expect("the prefix is an absolute path"))
        .env("PYTHONHOME", &prefix)
        .env("PYTHONUNBUFFERED", "1")
        .args(["-c", &snippet])
        .stdout(Output::Capture)
        .stderr(Output::Capture)
        .deadline(deadline)
        .memory_limit(memory);
    let Ok(_turn) = service.runs.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    };
    let ran = match program.output_async(&service.runtime).await {
        Ok(out) => Ran {
            status: Some(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            error: None,
        },
        Err(e) => Ran {
            status: None,
            stdout: String::new(),
            stderr: String::new(),
            error: Some(e.to_string()),
        },
    };
    Json(ran).into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// The page: a text area, a button, and what the snippet printed. `?code=SNIPPET` fills the
/// text area and `&run` runs it when the page opens (a link to a result).
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Python on wasix-dl</title>
<style>body{font-family:sans-serif;max-width:48em;margin:2em auto}
textarea{width:100%;height:10em;font-family:monospace}pre{background:#eee;padding:1em;min-height:3em}</style>
</head>
<body>
<h1>Python on wasix-dl</h1>
<textarea id="code">import math, json
print(json.dumps({"pi": math.pi}))</textarea>
<p><button id="run">Run</button> <span id="state"></span></p>
<pre id="output"></pre>
<script>
const params = new URLSearchParams(location.search);
if (params.has("code")) document.getElementById("code").value = params.get("code");
document.getElementById("run").onclick = async () => {
  const state = document.getElementById("state"), output = document.getElementById("output");
  state.textContent = "running...";
  const response = await fetch("/run", {method: "POST", body: document.getElementById("code").value});
  if (!response.ok) { output.textContent = await response.text(); state.textContent = "refused"; return; }
  const ran = await response.json();
  output.textContent = ran.error ? ran.error : ran.stdout + ran.stderr;
  state.textContent = ran.error ? "ended" : "exit status " + ran.status;
};
// ?code=...&run: a link that runs its snippet when opened.
if (params.has("run")) document.getElementById("run").click();
</script>
</body>
</html>
"#;

/// The CPython install: `$WASIX_PYTHON_PREFIX`, else what build-python.sh --check prints.
pub fn cpython_prefix() -> Result<PathBuf, String> {
    if let Some(prefix) = std::env::var_os("WASIX_PYTHON_PREFIX") {
        return Ok(PathBuf::from(prefix));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python-demo/build-python.sh");
    let out = std::process::Command::new("bash")
        .args([script, "--check"])
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "CPython for WASIX is not built: run python-demo/run-python -c pass first\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The service's routes, running snippets on `runtime` under the CPython at `prefix`.
pub fn app(runtime: Runtime, prefix: PathBuf) -> Router {
    let service = Arc::new(Service {
        runtime,
        prefix,
        runs: tokio::sync::Semaphore::new(CONCURRENT_RUNS),
    });
    Router::new()
        .route("/", get(page))
        .route("/run", post(run))
        .with_state(service)
}
