use clap::Parser;

fn main() -> std::process::ExitCode {
    samlgate::server::private_umask();
    samlgate::server::limit_malloc_arenas();
    samlgate::cli::run(samlgate::cli::Cli::parse())
}
