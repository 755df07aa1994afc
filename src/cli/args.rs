//! Flags shared by several subcommands, defined once so that they are spelt, parsed and documented
//! the same everywhere (`#[command(flatten)]` them into a subcommand's arguments):
//! - [`Resize`], `--resize N`: image folders of another size than the model's, resized on load;
//! - [`Threads`], `--threads N`: libtorch's CPU threads, on every command that computes.
//!
//! The vocabulary the subcommands share (old spellings stay as hidden aliases, so earlier command
//! lines still run): `--sgld-steps` is the sampler's steps per chain draw (the config key
//! `sgld.steps`; alias `--steps` on `sample`, `--sampler-steps` on `bench`), `--batch` is a
//! training batch (`data.batch_size`), `--eval-batch` is how many examples an evaluation runs per
//! forward pass (alias `--batch` on `eval`, `calibrate`, `ood`, `logz`), `--device` is `auto`
//! unless given.
use ebm::data::LoadOptions;

/// `--resize N` for every command that loads data sets.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Resize {
    /// Image folders (folder:DIR): resize images that are not N x N to N x N (bilinear) instead of
    /// stopping at the first one. `ebm train` records it as data.resize, so a resumed run and the
    /// evaluations of its checkpoints resize the same way unless --resize is given again.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub resize: Option<u32>,
}

impl Resize {
    /// The load options of `--resize`, else of `recorded` (a checkpoint's `data.resize`).
    pub fn options(&self, recorded: Option<u32>) -> LoadOptions {
        LoadOptions { resize: self.resize.or(recorded), ..LoadOptions::default() }
    }
}

/// `--threads N` for every command that computes with libtorch.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Threads {
    /// libtorch's CPU threads. Default: `train`, `bench` and `experiment toy2d` take the
    /// config's train.threads (toy2d's config says 1), `sample` and `logz` use one thread for
    /// models on points (they run fastest so), the rest libtorch's own default (one per core);
    /// 0 means the default too.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl Threads {
    /// The thread count asked for, if any (0 counts as not asked).
    pub fn get(&self) -> Option<usize> {
        self.threads.filter(|&n| n > 0)
    }

    /// Sets libtorch's CPU threads to `--threads`, else to `fallback` when there is one.
    pub fn apply(&self, fallback: Option<usize>) {
        if let Some(n) = self.get().or(fallback) {
            tch::set_num_threads(n as i32);
        }
    }
}
