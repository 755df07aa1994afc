//! `ebm experiment`: reproductions where the truth is known.
use super::args::Threads;
use ebm::experiments::is_mle::{self, Proposal};
use ebm::experiments::{rbm, toy2d};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Experiment {
    /// Seed 004, section 7: Geyer's importance-sampling NLL J_BL(theta) of a 1-D Gaussian EBM with a
    /// fixed proposal q1 = N(2, 2^2) and a theta-dependent q2 = N(2, (2 + theta)^2), M in {100, 5000}.
    IsMle(IsMleArgs),
    /// Train an MLP energy with each objective on 2-D densities whose log-density is known,
    /// then the exact log Z, KL(data || model), held-out log-likelihood against the truth's, and a
    /// PNG of true and learnt densities per (objective, density).
    Toy2d(Toy2dArgs),
    /// A binary RBM trained by CD-k and PCD on noisy bars-and-stripes: exact log Z, held-out
    /// log-likelihood and KL(data || model) against the truth and an independent-Bernoulli
    /// baseline, and AIS's log Z beside the exact one.
    Rbm(RbmArgs),
}

#[derive(clap::Args, Debug)]
pub struct RbmArgs {
    /// Image side of bars-and-stripes (side^2 visible units, at most 20: side 4).
    #[arg(long, default_value_t = 4)]
    pub side: usize,
    /// Probability that each pixel of a pattern is flipped.
    #[arg(long, default_value_t = 0.05)]
    pub flip: f64,
    /// Hidden units.
    #[arg(long, default_value_t = 16)]
    pub hidden: usize,
    /// Training images.
    #[arg(long, default_value_t = 2000)]
    pub points: usize,
    /// Held-out images.
    #[arg(long, default_value_t = 5000)]
    pub test_points: usize,
    /// Passes over the training images.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Images per update (and PCD's persistent chains).
    #[arg(long, default_value_t = 20)]
    pub batch: usize,
    /// Learning rate of the gradient ascent.
    #[arg(long, default_value_t = 0.02)]
    pub lr: f64,
    /// Block Gibbs sweeps per update (CD-k; PCD's chains advance as many).
    #[arg(long, default_value_t = 1)]
    pub k: usize,
    /// AIS chains.
    #[arg(long, default_value_t = 100)]
    pub ais_chains: usize,
    /// AIS inverse temperatures (linearly spaced in [0, 1]).
    #[arg(long, default_value_t = 10_000)]
    pub ais_temps: usize,
    /// Seed of the data and the training.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub threads: Threads,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct Toy2dArgs {
    /// pcd, cd, sm, ssm, dsm, nce, is-mle, is-mle-adaptive, mpf, ksd, learned-sampler or all.
    #[arg(long, default_value = "all")]
    pub objective: String,
    /// 8gaussians, rings, checkerboard or all.
    #[arg(long, default_value = "all")]
    pub density: String,
    /// Training epochs over the points, for every (objective, density).
    #[arg(long, default_value_t = 3)]
    pub epochs: u64,
    /// Training points per density.
    #[arg(long, default_value_t = 20_000)]
    pub points: usize,
    /// Points of the held-out sample.
    #[arg(long, default_value_t = 10_000)]
    pub test_points: usize,
    /// Folder for the figures and the run folders (runs/OBJECTIVE-DENSITY, replaced).
    #[arg(long, default_value = "toy2d")]
    pub out: PathBuf,
    /// Seed of the training points, the held-out sample and every run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the models train: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub threads: Threads,
    /// Override a config key of every run, after the objective's recommended settings:
    /// --set optim.lr=3e-4 --set objective.gen_updates=3.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct IsMleArgs {
    /// Independent runs per proposal and M.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Folder for the PNG figures (one per proposal and M).
    #[arg(long, default_value = "is-mle")]
    pub out: PathBuf,
    /// Seed of the data and of every run's draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub threads: Threads,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(e: Experiment) -> anyhow::Result<()> {
    match e {
        Experiment::IsMle(a) => is_mle_cmd(a),
        Experiment::Toy2d(a) => toy2d_cmd(a),
        Experiment::Rbm(a) => rbm_cmd(a),
    }
}

fn rbm_cmd(a: RbmArgs) -> anyhow::Result<()> {
    a.threads.apply(Some(1));
    let o = rbm::Options {
        data: rbm::BarsStripesSpec { side: a.side, flip: a.flip },
        hidden: a.hidden,
        points: a.points,
        test_points: a.test_points,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        k: a.k,
        ais_chains: a.ais_chains,
        ais_temps: a.ais_temps,
        seed: a.seed,
        ..Default::default()
    };
    let json = a.json;
    let r = rbm::run(&o, |row| {
        if !json {
            eprintln!(
                "{}: held-out LL {:.4}, KL {:.4}, {:.1} s",
                row.method, row.held_out_ll, row.kl, row.train_seconds
            );
        }
    })?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", rbm::table(&r));
    }
    Ok(())
}

fn toy2d_cmd(a: Toy2dArgs) -> anyhow::Result<()> {
    let o = toy2d::Options {
        objectives: toy2d::parse_objectives(&a.objective)?,
        densities: toy2d::parse_densities(&a.density)?,
        epochs: a.epochs,
        points: a.points,
        test_points: a.test_points,
        seed: a.seed,
        out: a.out,
        device: a.device,
        extra: a.threads.get().map(|n| format!("train.threads={n}")).into_iter().chain(a.set).collect(),
        ..Default::default()
    };
    let json = a.json;
    let r = toy2d::run(&o, |row| {
        if !json {
            eprintln!(
                "{} on {}: KL {:.4}, held-out LL {:.4} (truth {:.4}), {:.0} s",
                row.objective, row.density, row.kl, row.held_out_ll, row.truth_ll, row.train_seconds
            );
        }
    })?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", toy2d::table(&r));
        println!("figures: {}", o.out.display());
    }
    Ok(())
}

fn is_mle_cmd(a: IsMleArgs) -> anyhow::Result<()> {
    if a.runs == 0 {
        anyhow::bail!("--runs must be positive");
    }
    a.threads.apply(None);
    tch::manual_seed(a.seed as i64);
    let r = is_mle::run(&[100, 5000], a.runs, a.seed);
    let lo = r.true_nll.iter().copied().fold(f64::INFINITY, f64::min);
    let mut files = Vec::new();
    for s in &r.settings {
        let (tag, label) = match s.proposal {
            Proposal::Fixed => ("q1", "q1 = N(2, 2^2)"),
            Proposal::ThetaDependent => ("q2", "q2 = N(2, (2 + theta)^2)"),
        };
        let path = a.out.join(format!("is-mle-{tag}-M{}.png", s.m));
        let title = format!("{label}, N = {}, M = {}, {} runs", r.n, s.m, r.runs);
        ebm::eval::plots::band_plot(
            &r.grid,
            (&s.curves.0, &s.curves.1, &s.curves.2),
            &r.true_nll,
            (lo - 20.0, lo + 200.0),
            &title,
            &path,
        )?;
        files.push(path);
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "theta* = {}, N = {}, exact MLE (RMS of the data) = {:.4}, {} runs",
        r.theta_star, r.n, r.exact_mle, r.runs
    );
    println!(
        "{:<16} {:>5} {:>12} {:>12} {:>16} {:>16}",
        "proposal", "M", "mean est.", "MSE vs MLE", "spread th<=2", "spread th>2"
    );
    for s in &r.settings {
        let p = match s.proposal {
            Proposal::Fixed => "q1 fixed",
            Proposal::ThetaDependent => "q2 theta-dep.",
        };
        println!(
            "{:<16} {:>5} {:>12.4} {:>12.6} {:>16.3} {:>16.3}",
            p, s.m, s.mean_estimate, s.mse_vs_mle, s.spread_low, s.spread_high
        );
    }
    for f in files {
        println!("figure: {}", f.display());
    }
    Ok(())
}
