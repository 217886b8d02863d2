//! `tug version`: this client's version and the server's (`/version`).

use crate::ctx::{ConnectArgs, Ctx};
use crate::error::Result;

/// Print the client and server version information.
///
/// Examples:
///   # Print the client and server versions for the current context
///   tug version
///
///   # Only the client version (no server needed)
///   tug version --client
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct VersionArgs {
    /// If true, shows client version only (no server required).
    #[arg(long)]
    pub client: bool,
}

pub async fn run(connect: &ConnectArgs, a: VersionArgs) -> Result<()> {
    crate::out(&format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION")))?;
    if a.client {
        return Ok(());
    }
    let ctx = Ctx::connect(connect).await?;
    let info = ctx.client.apiserver_version().await?;
    crate::out(&format!("Server Version: {}\n", info.git_version))?;
    Ok(())
}
