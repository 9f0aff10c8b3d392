//! `monitor` command line. Exit codes: see [`cli::exit`].

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    cli::logging::init(args.verbose);
    match cli::execute(args) {
        Ok(code) => code,
        Err(err) => {
            log::error!("{}", monitor::errors::chain(err.as_ref()));
            cli::exit::code_for(&err)
        }
    }
}
