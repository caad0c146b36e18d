//! The `ordershop-rigs` binary: parses the command line, sets up logging and hands over to the
//! library. Everything it runs lives in `ordershop_rigs::cli`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = ordershop_rigs::cli::parse();
    ordershop::telemetry::init_with_default(cli.default_log_level());
    match ordershop_rigs::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
