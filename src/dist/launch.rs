//! `ebm train --nproc-per-node N`: N local workers, as `torchrun --standalone --nproc-per-node N`
//! starts them: this same program, with the same arguments less the flag, and torchrun's
//! environment (RANK = LOCAL_RANK = r, WORLD_SIZE = LOCAL_WORLD_SIZE = N, MASTER_ADDR =
//! 127.0.0.1, MASTER_PORT = a free port). Rank 0's output is shown; rank r's goes to
//! `<out>/logs/rank-r.log`. When a worker fails the others are given `grace` to stop by
//! themselves (they notice within dist.timeout), then stopped; the exit status is the first
//! failure's.
//!
//! Signals: the workers run in their own process group, so a signal reaches them only through
//! this launcher, which passes each SIGINT or SIGTERM it receives on to every running worker, once:
//! Ctrl-C at the terminal and `kill -TERM` of the launcher alone both make every rank stop at the
//! same step with one checkpoint (the ranks all-reduce the stop), and a second signal makes them
//! exit at once, as for one process. Should the launcher itself die, the kernel sends its workers
//! SIGTERM (Linux's parent-death signal), which stops them the same way.
use anyhow::{bail, Context};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The signals the launcher passes on: each with the flag its handler raises.
pub type Forward = Vec<(i32, Arc<AtomicBool>)>;

/// Raises a flag on each of SIGINT and SIGTERM, for [`run`] to pass on.
pub fn forward_signals() -> crate::Result<Forward> {
    let mut out = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(sig, flag.clone()).with_context(|| format!("cannot handle signal {sig}"))?;
        out.push((sig, flag));
    }
    Ok(out)
}

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

/// This program as worker `r` of `n` meeting at 127.0.0.1:`port` (torchrun's variables), in its
/// own process group, sent SIGTERM should this process die; arguments and output are the caller's.
pub fn worker_command(r: usize, n: usize, port: u16) -> crate::Result<Command> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find this program to start the workers")?;
    let mut cmd = Command::new(exe);
    cmd.env("RANK", r.to_string())
        .env("LOCAL_RANK", r.to_string())
        .env("WORLD_SIZE", n.to_string())
        .env("LOCAL_WORLD_SIZE", n.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    // Its own process group: the terminal's Ctrl-C reaches the workers through run() only.
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only the child's own settings.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// A free port on 127.0.0.1 for the rendezvous (bound, then released).
pub fn free_port() -> crate::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(r: usize, n: usize, port: u16, args: &[String], logs: &Path) -> crate::Result<Child> {
    let mut cmd = worker_command(r, n, port)?;
    cmd.args(args);
    if r > 0 {
        let path = logs.join(format!("rank-{r}.log"));
        let f = std::fs::File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        cmd.stdout(f.try_clone()?).stderr(f).stdin(Stdio::null());
    }
    cmd.spawn().with_context(|| format!("cannot start worker {r}"))
}

/// Starts `n` workers with `args` (this program's arguments, the flag removed) and waits for all,
/// passing on the signals of `forward`; Ok when every one succeeded.
pub fn run(n: usize, args: &[String], out: &Path, grace: Duration, forward: &Forward) -> crate::Result<()> {
    if n == 0 {
        bail!("--nproc-per-node 0: give at least 1");
    }
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("{}: cannot create", logs.display()))?;
    let port = free_port()?;
    let mut children = Vec::new();
    for r in 0..n {
        children.push(spawn(r, n, port, args, &logs)?);
    }
    let mut status: Vec<Option<ExitStatus>> = vec![None; n];
    let mut failed_at: Option<(usize, Instant)> = None;
    while status.iter().any(Option::is_none) {
        for (sig, flag) in forward {
            if flag.swap(false, Ordering::SeqCst) {
                for (r, c) in children.iter().enumerate() {
                    if status[r].is_none() {
                        // SAFETY: kill(2) on our own child's pid (not reaped: its status is unknown).
                        unsafe { libc::kill(c.id() as libc::pid_t, *sig) };
                    }
                }
            }
        }
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
