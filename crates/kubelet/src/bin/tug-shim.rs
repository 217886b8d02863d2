//! `tug-shim process-shim <container dir>`: the process runtime's shim (see
//! `tugboat_kubelet::runtime::process`). The same body runs as
//! `tug-kubelet process-shim`; this binary exists because it starts in a
//! fraction of the time: it links only the shim, and one is exec'd for every
//! container start.

use tugboat_kubelet::runtime::process::{shim_main, SHIM_SUBCOMMAND};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(sub), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: tug-shim {SHIM_SUBCOMMAND} <container dir>");
        std::process::exit(2);
    };
    if sub != SHIM_SUBCOMMAND {
        eprintln!("usage: tug-shim {SHIM_SUBCOMMAND} <container dir>");
        std::process::exit(2);
    }
    std::process::exit(shim_main(std::path::Path::new(&dir)));
}
