fn main() -> std::process::ExitCode {
    mgc_runtime::cli::main()
}
