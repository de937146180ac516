//! The `hopstage` binary: parse the command line, run it, map the outcome to an exit code.
//!
//! Everything of substance lives in the library; this file only wires clap to
//! [`hopstage::run`] and prints a fatal error once.

use clap::Parser;

fn main() {
    let opts = hopstage::cli::Opts::parse();
    let code = match hopstage::run(opts) {
        Ok(code) => code as i32,
        Err(err) => {
            eprintln!(
                "hopstage: {}",
                hopstage::redact::redact(&format!("{err:#}"))
            );
            hopstage::error::ExitCode::from_error(&err)
        }
    };
    std::process::exit(code);
}
