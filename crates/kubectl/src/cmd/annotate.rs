//! `tug annotate`: the label machinery applied to `metadata.annotations`.

use super::label::{run as run_meta, Field, LabelArgs};
use crate::ctx::Ctx;
use crate::error::Result;

/// `tug annotate --help`: the shared flags with annotate's own examples.
pub const LONG_HELP: &str = "Update the annotations on one or more resources.

Examples:
  # Update pod 'foo' with the annotation 'description' and the value 'my frontend'
  tug annotate pods foo description='my frontend'

  # Overwrite an existing value
  tug annotate --overwrite pods foo description='my frontend running nginx'

  # Remove the annotation named 'description'
  tug annotate pods foo description-";

/// Run with the label machinery on annotations.
pub async fn run(ctx: &Ctx, a: LabelArgs) -> Result<()> {
    run_meta(ctx, a, Field::Annotations).await
}
