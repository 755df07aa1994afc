//! torchrun's environment contract: RANK, WORLD_SIZE, LOCAL_RANK (and LOCAL_WORLD_SIZE),
//! MASTER_ADDR, MASTER_PORT — what `torchrun`, SLURM wrappers and `ebm train --nproc-per-node`
//! set for each worker (https://pytorch.org/docs/stable/elastic/run.html, "Environment
//! Variables").
use anyhow::{anyhow, bail};

/// One worker's place in the run, as its environment states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    /// Workers on this machine (LOCAL_WORLD_SIZE; WORLD_SIZE when unset).
    pub local_world: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl Env {
    /// Rank `rank` of `world` on one machine, meeting at 127.0.0.1:`port` (the tests' rendezvous).
    pub fn loopback(rank: usize, world: usize, port: u16) -> Env {
        Env { rank, world, local_rank: rank, local_world: world, master_addr: "127.0.0.1".into(), master_port: port }
    }

    /// The worker's place from the process environment; None when WORLD_SIZE is not set (a plain
    /// one-process run).
    pub fn from_process() -> crate::Result<Option<Env>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The same from any variable lookup (tests). Every missing or malformed variable is named.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> crate::Result<Option<Env>> {
        let Some(world) = get("WORLD_SIZE") else { return Ok(None) };
        let number = |k: &str, v: &str| -> crate::Result<usize> {
            v.trim().parse().map_err(|_| anyhow!("environment variable {k} = {v:?}: not a whole number"))
        };
        let need = |k: &str| {
            get(k).ok_or_else(|| {
                anyhow!("environment variable {k} is not set but WORLD_SIZE is: a distributed worker needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (torchrun sets them all)")
            })
        };
        let world = number("WORLD_SIZE", &world)?;
        if world == 0 {
            bail!("environment variable WORLD_SIZE = 0: must be at least 1");
        }
        let rank = number("RANK", &need("RANK")?)?;
        if rank >= world {
            bail!("environment variable RANK = {rank}: must be below WORLD_SIZE = {world}");
        }
        let local_rank = get("LOCAL_RANK").map(|v| number("LOCAL_RANK", &v)).transpose()?.unwrap_or(rank);
        let local_world = get("LOCAL_WORLD_SIZE").map(|v| number("LOCAL_WORLD_SIZE", &v)).transpose()?.unwrap_or(world);
        let master_addr = need("MASTER_ADDR")?.trim().to_string();
        if master_addr.is_empty() {
            bail!("environment variable MASTER_ADDR is empty: give rank 0's host name or address");
        }
        let port = need("MASTER_PORT")?;
        let master_port = match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => bail!("environment variable MASTER_PORT = {port:?}: must be a port number in 1..=65535"),
        };
        Ok(Some(Env { rank, world, local_rank, local_world, master_addr, master_port }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> crate::Result<Option<Env>> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn torchruns_variables_are_read_and_bad_ones_named() {
        assert_eq!(env(&[]).unwrap(), None);
        let full =
            [("WORLD_SIZE", "4"), ("RANK", "3"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "n1"), ("MASTER_PORT", "29500")];
        let e = env(&full).unwrap().unwrap();
        assert_eq!((e.rank, e.world, e.local_rank, e.local_world, e.master_port), (3, 4, 1, 4, 29500));
        let err = |pairs: &[(&str, &str)]| format!("{:#}", env(pairs).unwrap_err());
        assert!(err(&[("WORLD_SIZE", "2")]).contains("RANK is not set"));
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "2")]).contains("RANK = 2: must be below WORLD_SIZE = 2"));
        let bad_port = [("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")];
        assert!(err(&bad_port).contains("MASTER_PORT = \"70000\""));
        assert!(err(&[("WORLD_SIZE", "two")]).contains("WORLD_SIZE = \"two\""));
    }
}
