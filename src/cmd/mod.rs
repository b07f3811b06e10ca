//! One module per subcommand; each turns arguments into library calls and an exit code.

pub mod broker_bench;
pub mod claims;
pub mod gate;
pub mod har;
pub mod kafka_bench;
pub mod load;
pub mod merge;
pub mod proxy;
pub mod report;
pub mod run;
pub mod serve;
pub mod stack;
pub mod system;

/// Resolves on Ctrl-C or SIGTERM (written once, in chaos, whose proxy command needs it too).
pub use faultline_chaos::cli::terminated;
