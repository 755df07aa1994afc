//! `ebm train --nproc-per-node N`: N local workers, as `torchrun --standalone --nproc-per-node N`
//! starts them: this same program, with the same arguments less the flag, and torchrun's
//! environment (RANK = LOCAL_RANK = r, WORLD_SIZE = LOCAL_WORLD_SIZE = N, MASTER_ADDR =
//! 127.0.0.1, MASTER_PORT = a free port). Rank 0's output is shown; rank r's goes to
//! `<out>/logs/rank-r.log`. When a worker fails the others are given `grace` to stop by
//! themselves (they notice within dist.timeout), then stopped; the exit status is the first
//! failure's.
use anyhow::{bail, Context};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Arguments without `--nproc-per-node N` / `--nproc-per-node=N`.
pub fn strip_flag(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a == "--nproc-per-node" {
            skip = true;
        } else if !a.starts_with("--nproc-per-node=") {
            out.push(a.clone());
        }
    }
    out
}

fn spawn(r: usize, n: usize, port: u16, args: &[String], logs: &Path) -> crate::Result<Child> {
    let exe = std::env::current_exe().context("cannot find this program to start the workers")?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("RANK", r.to_string())
        .env("LOCAL_RANK", r.to_string())
        .env("WORLD_SIZE", n.to_string())
        .env("LOCAL_WORLD_SIZE", n.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    if r > 0 {
        let path = logs.join(format!("rank-{r}.log"));
        let f = std::fs::File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        cmd.stdout(f.try_clone()?).stderr(f).stdin(Stdio::null());
    }
    cmd.spawn().with_context(|| format!("cannot start worker {r}"))
}

/// Starts `n` workers with `args` (this program's arguments, the flag removed) and waits for all;
/// Ok when every one succeeded.
pub fn run(n: usize, args: &[String], out: &Path, grace: Duration) -> crate::Result<()> {
    if n == 0 {
        bail!("--nproc-per-node 0: give at least 1");
    }
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("{}: cannot create", logs.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut children = Vec::new();
    for r in 0..n {
        children.push(spawn(r, n, port, args, &logs)?);
    }
    let mut status: Vec<Option<ExitStatus>> = vec![None; n];
    let mut failed_at: Option<(usize, Instant)> = None;
    while status.iter().any(Option::is_none) {
        for (r, c) in children.iter_mut().enumerate() {
            if status[r].is_none() {
                status[r] = c.try_wait()?;
                if status[r].is_some_and(|s| !s.success()) && failed_at.is_none() {
                    failed_at = Some((r, Instant::now()));
                }
            }
        }
        if let Some((_, t)) = failed_at {
            if t.elapsed() > grace {
                for (r, c) in children.iter_mut().enumerate() {
                    if status[r].is_none() {
                        let _ = c.kill();
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some((r, _)) = failed_at {
        let log = if r == 0 {
            String::new()
        } else {
            format!(" (its output: {})", logs.join(format!("rank-{r}.log")).display())
        };
        let codes: Vec<String> = status.iter().enumerate().map(|(r, s)| format!("rank {r}: {}", describe(s))).collect();
        bail!("worker rank {r} failed first{log}; {}", codes.join(", "));
    }
    Ok(())
}

fn describe(s: &Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match s {
        Some(s) if s.success() => "ok".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "failed".into(),
        },
        None => "running".into(),
    }
}
