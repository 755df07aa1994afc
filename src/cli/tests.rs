//! The command tree as clap builds it (`Cli::command()`): every subcommand and argument has help
//! text, and the flags shared by subcommands keep one name and meaning (see `args.rs`), with the
//! old spellings still parsed.
use super::{Cli, Command};
use clap::{CommandFactory, Parser};

/// Calls `f(path, command)` for `cmd` and every subcommand below it.
fn walk(cmd: &clap::Command, path: &str, f: &mut dyn FnMut(&str, &clap::Command)) {
    f(path, cmd);
    for sub in cmd.get_subcommands() {
        walk(sub, &format!("{path} {}", sub.get_name()), f);
    }
}

/// The built tree (with clap's own --help, --version and `help` subcommand, as users see it).
fn tree() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

fn has_long(cmd: &clap::Command, long: &str) -> bool {
    cmd.get_arguments().any(|a| a.get_long() == Some(long))
}

#[test]
fn every_subcommand_and_argument_has_help_text() {
    let mut missing = Vec::new();
    walk(&tree(), "ebm", &mut |path, cmd| {
        if path != "ebm" && cmd.get_about().is_none() && cmd.get_long_about().is_none() {
            missing.push(path.to_string());
        }
        for arg in cmd.get_arguments() {
            let documented =
                [arg.get_help(), arg.get_long_help()].iter().flatten().any(|h| !h.to_string().trim().is_empty());
            if !documented {
                let name = arg.get_long().map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                missing.push(format!("{path} {name}"));
            }
        }
    });
    assert!(missing.is_empty(), "without help text: {}", missing.join(", "));
}

/// The subcommands that compute with libtorch, as paths below `ebm`.
const COMPUTE: [&str; 9] =
    ["train", "sample", "eval", "calibrate", "ood", "logz", "bench", "experiment toy2d", "experiment is-mle"];

fn find<'a>(root: &'a clap::Command, path: &str) -> &'a clap::Command {
    path.split(' ').fold(root, |c, name| c.find_subcommand(name).unwrap_or_else(|| panic!("no subcommand {path}")))
}

#[test]
fn shared_flags_have_one_name_everywhere() {
    let root = tree();
    for path in COMPUTE {
        assert!(has_long(find(&root, path), "threads"), "ebm {path} lacks --threads");
    }
    for path in ["data", "train", "eval", "calibrate", "ood", "logz", "bench"] {
        assert!(has_long(find(&root, path), "resize"), "ebm {path} lacks --resize");
    }
    for path in ["eval", "calibrate", "ood", "logz"] {
        let cmd = find(&root, path);
        assert!(has_long(cmd, "eval-batch") && !has_long(cmd, "batch"), "ebm {path}: the chunk size is --eval-batch");
    }
    for path in ["sample", "bench"] {
        assert!(has_long(find(&root, path), "sgld-steps"), "ebm {path}: sampler steps are --sgld-steps");
    }
    walk(&root, "ebm", &mut |path, cmd| {
        for arg in cmd.get_arguments() {
            let long = arg.get_long().unwrap_or_default();
            assert!(!["steps", "sampler-steps"].contains(&long), "{path} --{long}: sampler steps are --sgld-steps");
            assert!(
                long != "batch" || ["ebm bench", "ebm experiment rbm"].contains(&path),
                "{path} --batch: only a training batch is --batch"
            );
            if long == "device" {
                let default: Vec<String> =
                    arg.get_default_values().iter().map(|v| v.to_string_lossy().into()).collect();
                assert!(default.is_empty() || default == ["auto"], "{path} --device defaults to {default:?}, not auto");
            }
            let shown = arg.get_visible_aliases().unwrap_or_default();
            assert!(shown.is_empty(), "{path} --{long} shows the aliases {shown:?}: old spellings stay hidden");
        }
    });
}

#[test]
fn old_spellings_still_parse() {
    let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command;
    match parse(&["ebm", "sample", "--ckpt", "c", "--out", "o.png", "--steps", "7"]) {
        Command::Sample(a) => assert_eq!(a.sgld_steps, Some(7)),
        other => panic!("{other:?}"),
    }
    match parse(&["ebm", "eval", "--ckpt", "c", "--data", "d", "--batch", "7"]) {
        Command::Eval(a) => assert_eq!(a.common.eval_batch, 7),
        other => panic!("{other:?}"),
    }
    match parse(&["ebm", "bench", "--case", "sampler2d", "--sampler-steps", "5"]) {
        Command::Bench(a) => assert_eq!(a.sgld_steps, Some(5)),
        other => panic!("{other:?}"),
    }
    match parse(&["ebm", "logz", "--ckpt", "c", "--batch", "3", "--threads", "2", "--resize", "32"]) {
        Command::Logz(a) => {
            assert_eq!((a.common.eval_batch, a.common.threads.get(), a.common.resize.resize), (3, Some(2), Some(32)))
        }
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["ebm", "data", "synthetic:shapes", "--resize", "0"]).is_err(), "--resize 0");
}
