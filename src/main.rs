//! The `wasix-dl` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
        /// Make a host directory visible to the guest, as HOST[:GUEST]. Without GUEST it
        /// appears at its absolute host path. The directory holding the current directory
        /// (e.g. `--dir .`) becomes the guest's working directory; otherwise the first one.
        #[arg(long = "dir", value_name = "HOST[:GUEST]")]
        dirs: Vec<String>,
        /// Set an environment variable of the guest (repeatable). The host's environment is
        /// not passed through.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        envs: Vec<String>,
        /// Guest working directory (a guest path), overriding the rule above.
        #[arg(long, value_name = "GUEST_PATH")]
        cwd: Option<String>,
        /// Stack size of the main thread in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_STACK_SIZE)]
        stack_size: u32,
        /// The module to run, then its arguments.
        module: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASIX_DL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
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

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run {
            dirs,
            envs,
            cwd,
            stack_size,
            module,
            args,
        } => {
            let mut program = Program::new(&module).args(args).stack_size(stack_size);
            for spec in &dirs {
                program = program.dir(MappedDir::parse(spec)?);
            }
            for kv in &envs {
                let (key, value) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--env {kv}: expected KEY=VALUE"))?;
                program = program.env(key, value);
            }
            if let Some(cwd) = cwd {
                program = program.cwd(cwd);
            }
            Ok(program.run()?)
        }
    }
}
