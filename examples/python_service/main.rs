//! An HTTP service that runs a Python snippet per request under the project's WASIX CPython
//! (with its C extension modules as shared libraries), every run on one shared
//! `wasix_dl::Runtime`, each with a deadline and a memory limit.
//!
//! ```sh
//! cargo run --release --example python_service -- [PORT]
//! ```
//! then open `http://127.0.0.1:PORT/` (default 8000), or
//! `curl --data-binary 'print(2 + 2)' http://127.0.0.1:8000/run`.
//!
//! `POST /run` takes the snippet as the body (UTF-8) and answers JSON:
//! `{"status": 0, "stdout": "4\n", "stderr": "", "error": null}`; `error` says why a run was
//! ended (its deadline, a failure to load) and then `status` is null. Optional query
//! parameters: `deadline_ms` (default 5000, at most 60000) and `memory_mb` (default 256, at
//! most 2048). At most 4 snippets run at once; more wait their turn.
//!
//! The CPython install is `$WASIX_PYTHON_PREFIX`, else what `python-demo/build-python.sh
//! --check` prints (run `python-demo/run-python -c pass` once to build it).

mod service;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port.parse().map_err(|_| format!("not a port: {port}"))?,
        None => 8000,
    };
    let prefix = service::cpython_prefix()?;
    let runtime = wasix_dl::Runtime::on(tokio::runtime::Handle::current(), None);
    let app = service::app(runtime, prefix);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
