use clap::Parser;

fn main() -> std::process::ExitCode {
    samlgate::cli::run(samlgate::cli::Cli::parse())
}
