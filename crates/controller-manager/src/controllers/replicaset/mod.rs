//! Placeholder: the replicaset controller is being written.

use crate::context::Context;

pub async fn run(_ctx: Context) -> anyhow::Result<()> {
    std::future::pending().await
}
