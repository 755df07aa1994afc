//! `ebm`: the command line. Thin: it parses arguments and calls one library function per subcommand.
mod cli;

use clap::Parser;

fn main() {
    // `ebm ... | head` ends quietly, as other command-line tools do, instead of panicking on a
    // closed pipe (Rust ignores SIGPIPE by default).
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A write beyond the file-size limit (RLIMIT_FSIZE) fails with EFBIG and is reported like a
    // full disk, instead of SIGXFSZ killing the process in the middle of a checkpoint.
    // SAFETY: as above, one signal's disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        // One line: causes joined, line breaks of nested messages folded.
        let msg = format!("{e:#}");
        eprintln!("error: {}", msg.split_whitespace().collect::<Vec<_>>().join(" "));
        std::process::exit(1);
    }
}
