//! The command line of `fairmq-shmmonitor`: FairMQ's options (spec §6.1, the seed's tables)
//! plus `--cleanup-dead`, `--force` and `--output`.

use clap::{Parser, ValueEnum};

/// Output format of `--view` and `--list-all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// FairMQ's text (spec §6.3).
    Text,
    /// One JSON document on standard output (logs go to standard error).
    Json,
}

/// FairMQ Shared Memory Monitor
#[derive(Parser, Debug)]
#[command(
    name = "fairmq-shmmonitor",
    about = "FairMQ Shared Memory Monitor",
    long_about = "FairMQ Shared Memory Monitor\n\n\
        Shows, watches and cleans up the shared memory of FairMQ sessions (the /dev/shm objects \
        fmq_<shmId>_*). Modes, first match wins: --get-shmid, --cleanup, --cleanup-dead, \
        --reset-content, --debug, --list-all, then --view (the default: print the session once), \
        --interactive or --monitor.\n\n\
        Exit codes: 0 success (also when a monitor for the session is already running), \
        1 bad input or a refused action, 2 unhandled error.",
    disable_version_flag = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Session id (translated to a shmId with the effective user id)
    #[arg(short = 's', long, default_value = "default")]
    pub session: String,

    /// Shmem id as used in the object names (8 to 16 hex digits); overrides --session
    #[arg(long, default_value = "")]
    pub shmid: String,

    /// Clean up the shared memory of the session (all its objects and the monitor marker) and
    /// exit; refused for a session that processes still hold open, unless --force
    #[arg(short = 'c', long)]
    pub cleanup: bool,

    /// Beyond FairMQ: remove every dead session of the current user (no process holds it
    /// open) and exit; live sessions and sessions of other users are not touched
    #[arg(long = "cleanup-dead")]
    pub cleanup_dead: bool,

    // (help as a string: rustdoc would read `[x]` as a link)
    #[arg(
        long,
        help = "Allow --cleanup, the interactive [x] and --clean-on-exit on a session that processes still hold open (they keep their mappings, but the session is split)"
    )]
    pub force: bool,

    /// EXPERIMENTAL in FairMQ: reset the content of the segments in place. Not supported by
    /// fairmq-rs (refused with an explanation)
    #[arg(short = 'r', long = "reset-content")]
    pub reset_content: bool,

    /// Monitor mode: exit once the memory was observed and then cleaned up, or if none
    /// appears within 2 * timeout
    #[arg(short = 'x', long = "self-destruct")]
    pub self_destruct: bool,

    /// Interactive mode: print the session every --interval, with keyboard controls
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// View-only: print the session and exit; with -i, no marker and no cleanup actions
    #[arg(short = 'v', long)]
    pub view: bool,

    /// Heartbeat timeout in milliseconds
    #[arg(short = 't', long, default_value_t = 5000)]
    pub timeout: u64,

    /// Daemonize the monitor (with --monitor)
    #[arg(short = 'd', long)]
    pub daemonize: bool,

    /// Monitor mode: watch the heartbeats and clean up a dead session after the timeout
    #[arg(short = 'm', long)]
    pub monitor: bool,

    /// Print the list of live messages of the session and exit
    #[arg(short = 'b', long)]
    pub debug: bool,

    /// Clean up the session when the monitor exits (monitor or interactive mode)
    #[arg(short = 'e', long = "clean-on-exit", visible_alias = "cleanup-on-exit")]
    pub clean_on_exit: bool,

    /// Refresh interval of the interactive mode in milliseconds
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,

    /// Print the shmId of --session and --user-id and exit
    #[arg(long = "get-shmid")]
    pub get_shmid: bool,

    /// Print every session found in --list-all-path, with whether it is alive, and exit
    #[arg(long = "list-all")]
    pub list_all: bool,

    /// Directory scanned by --list-all
    #[arg(long = "list-all-path", default_value = "/dev/shm/")]
    pub list_all_path: String,

    // (help as a string: rustdoc would read `<timestamp>` as HTML)
    #[arg(
        long,
        help = "When daemonized, log (at trace level) to fairmq-shmmonitor_<timestamp>.log in the working directory"
    )]
    pub verbose: bool,

    /// Log severity: trace, debug, info, state, warn, error, fatal, nolog
    #[arg(long, default_value = "info")]
    pub severity: String,

    /// User id for --get-shmid (-1: the effective user id)
    #[arg(long = "user-id", default_value_t = -1, allow_negative_numbers = true)]
    pub user_id: i64,

    /// Output format of --view and --list-all
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}
