use clap::Parser;

fn main() -> std::process::ExitCode {
    samlgate::cli::private_umask();
    samlgate::cli::limit_malloc_arenas();
    samlgate::cli::run(samlgate::cli::Cli::parse())
}
