//! The `wasix-dl` command line.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wasix_dl::{MappedDir, Program, DEFAULT_STACK_SIZE};

#[derive(Parser)]
#[command(
    name = "wasix-dl",
    version,
    about = "A dynamic linker and WASIX runtime for WebAssembly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WASI/WASIX program (a plain module or a PIE main module built by wasix-cc).
    ///
    /// The guest's exit status becomes wasix-dl's; a trap is reported on stderr and exits
    /// with status 134. stdin, stdout and stderr are the host's.
    Run {
        #[command(flatten)]
        guest: Guest,
        /// Guest working directory (a guest path), overriding the rule above.
        #[arg(long, value_name = "GUEST_PATH")]
        cwd: Option<String>,
        /// Stack size of the main thread in bytes: the C stack in the guest's memory and, up
        /// to 100 MiB, the engine's stack for wasm frames (like a native thread's one stack).
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_STACK_SIZE)]
        stack_size: u32,
        /// How long, in seconds, a dlopen/dlclose/dlsym waits for another thread that runs
        /// wasm to catch up with it before it fails naming that thread. Threads in host calls
        /// (sleeping, reading, waiting) are never waited for.
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        sync_timeout: f64,
        /// Compile modules without the epoch checks at loop headers and function entries
        /// that let a thread computing without host calls answer a dlopen in another thread
        /// (slightly faster CPU-bound code; such a thread then delays dlopen until its next
        /// host call or the sync timeout).
        #[arg(long)]
        no_epoch_checks: bool,
        /// The module to run, then its arguments.
        module: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the shared libraries a module loads at start-up and where they are found, in
    /// load order, like ldd. Searches the same guest file system `run` would.
    Ldd {
        #[command(flatten)]
        guest: Guest,
        /// The module to examine.
        module: String,
    },
    /// Print a module's dylink.0 section (sizes, needed, runtime path, symbol flags), its
    /// imports by namespace and its exports.
    Inspect {
        /// The module to examine.
        module: String,
    },
}

/// What the guest sees: its files and environment (`run` and `ldd` alike).
#[derive(Args)]
struct Guest {
    /// Make a host directory visible to the guest, as HOST[:GUEST]. Without GUEST it
    /// appears at its absolute host path. The directory holding the current directory
    /// (e.g. `--dir .`) becomes the guest's working directory; otherwise the first one.
    #[arg(long = "dir", value_name = "HOST[:GUEST]")]
    dirs: Vec<String>,
    /// Set an environment variable of the guest (repeatable). The host's environment is
    /// not passed through (LD_LIBRARY_PATH too must be given here).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    envs: Vec<String>,
    /// Host directory mounted read-only at the guest's /lib, where libraries such as the
    /// shared C++ runtime (libc++.so) are found; '' for none. Default: $WASIX_DL_SYSTEM_LIBS,
    /// else the toolchain sysroot's system-lib.
    #[arg(long, value_name = "DIR")]
    system_libs: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_level(false)
        .without_time()
        .init();
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("wasix-dl: error: {e:#}");
            // What ld.so does when a program cannot be loaded.
            ExitCode::from(127)
        }
    }
}

/// `WASIX_DL_DEBUG=libs,bindings,symbols` (or `all`), like glibc's LD_DEBUG, plus any
/// `tracing` filter in `WASIX_DL_LOG` (e.g. `debug`, `wasmer_wasix=trace`).
fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut directives: Vec<String> = std::env::var("WASIX_DL_LOG")
        .map(|v| vec![v])
        .unwrap_or_else(|_| vec!["off".into()]);
    if let Ok(debug) = std::env::var("WASIX_DL_DEBUG") {
        for topic in debug.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let topics: &[&str] = match topic {
                "all" => &["libs", "bindings", "symbols"],
                "libs" | "bindings" | "symbols" => std::slice::from_ref(&topic),
                other => {
                    eprintln!("wasix-dl: WASIX_DL_DEBUG: unknown topic `{other}` (libs, bindings, symbols, all)");
                    &[]
                }
            };
            directives.extend(topics.iter().map(|t| format!("wasix_dl::{t}=debug")));
        }
    }
    tracing_subscriber::EnvFilter::new(directives.join(","))
}

fn program(module: &str, guest: &Guest) -> anyhow::Result<Program> {
    let mut program = Program::new(module);
    for spec in &guest.dirs {
        program = program.dir(MappedDir::parse(spec)?);
    }
    if let Some(dir) = &guest.system_libs {
        program = program.system_libs((!dir.is_empty()).then(|| dir.into()));
    }
    for kv in &guest.envs {
        let (key, value) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--env {kv}: expected KEY=VALUE"))?;
        program = program.env(key, value);
    }
    Ok(program)
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Ldd { guest, module } => {
            print!("{}", program(&module, &guest)?.ldd()?);
            Ok(0)
        }
        Command::Inspect { module } => {
            print!("{}", Program::new(&module).inspect()?);
            Ok(0)
        }
        Command::Run {
            guest,
            cwd,
            stack_size,
            sync_timeout,
            no_epoch_checks,
            module,
            args,
        } => {
            let timeout = std::time::Duration::try_from_secs_f64(sync_timeout)
                .map_err(|e| anyhow::anyhow!("--sync-timeout {sync_timeout}: {e}"))?;
            let mut program = program(&module, &guest)?
                .args(args)
                .stack_size(stack_size)
                .sync_timeout(timeout)
                .epoch_checks(!no_epoch_checks);
            if let Some(cwd) = cwd {
                program = program.cwd(cwd);
            }
            Ok(program.run()?)
        }
    }
}
