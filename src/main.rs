fn main() -> std::process::ExitCode {
    claude_failover::cli::main(std::env::args_os().skip(1).collect())
}
