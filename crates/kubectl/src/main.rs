//! The `tug` binary: parse flags, run the verb, print the error kubectl's
//! way and exit 1 on failure.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = match tugboat_kubectl::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors exit
            // 1 like kubectl's (clap would use 2).
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if let Err(e) = tugboat_kubectl::run(cli).await {
        let text = e.to_string();
        if !text.is_empty() {
            eprintln!("{text}");
        }
        std::process::exit(1);
    }
}
