//! One module per verb. Each exposes its clap arguments (with kubectl-style
//! help and examples) and an async `run`.

pub mod get;
