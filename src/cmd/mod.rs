//! One module per subcommand; each turns arguments into library calls and an exit code.

pub mod load;
pub mod merge;
pub mod stack;
