fn main() -> std::process::ExitCode {
    mgc_cli::main()
}
