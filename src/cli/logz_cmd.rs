//! `ebm logz`: the log-partition function of a checkpoint by annealed importance sampling, with its
//! standard error; the exact grid value beside it for 2-D models; log-likelihoods of a data set.
use super::eval_cmd::{load, open, Common};
use anyhow::bail;
use ebm::eval::{classify, logz};
use ebm::sampling::ais::{self, AisConfig, Transition};
use serde_json::json;
use tch::Kind;

#[derive(clap::Args, Debug)]
pub struct LogzArgs {
    #[command(flatten)]
    pub common: Common,
    /// Independent AIS chains (annealed --eval-batch at a time).
    #[arg(long, default_value_t = 512)]
    pub chains: i64,
    /// Intermediate distributions between the base and the model (a sigmoid schedule).
    #[arg(long, default_value_t = 1000)]
    pub temps: usize,
    /// Transition at each temperature: hmc or mala.
    #[arg(long, default_value = "hmc")]
    pub sampler: String,
    /// Initial step size (HMC: leapfrog step; MALA: proposal variance); adapted unless --no-adapt.
    #[arg(long, default_value_t = 0.05)]
    pub step: f64,
    /// Leapfrog steps per HMC transition.
    #[arg(long, default_value_t = 5)]
    pub leapfrog: usize,
    /// Keep the step size fixed instead of adapting it towards the target acceptance rate.
    #[arg(long)]
    pub no_adapt: bool,
    /// Standard deviation of the Gaussian base distribution N(0, s^2 I).
    #[arg(long, default_value_t = 1.0)]
    pub base_std: f64,
    /// Also report the mean log-likelihood log p(x) = -E(x) - log Z on this data set.
    #[arg(long)]
    pub data: Option<String>,
    /// Half-width r of the square [-r, r]^2 of the exact grid integral (2-D models).
    #[arg(long, default_value_t = 8.0)]
    pub grid_range: f64,
    /// Cells per side of the grid.
    #[arg(long, default_value_t = 800)]
    pub grid_cells: i64,
    /// Seed of libtorch's generator: the base draws and the transitions' noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The AIS settings of the flags.
fn ais_config(a: &LogzArgs) -> anyhow::Result<AisConfig> {
    let transition = match a.sampler.as_str() {
        "hmc" => Transition::Hmc { leapfrog: a.leapfrog },
        "mala" => Transition::Mala,
        other => bail!("--sampler {other}: unknown; use hmc or mala"),
    };
    Ok(AisConfig {
        chains: a.chains,
        batch: (a.common.eval_batch as i64).min(a.chains.max(1)),
        temps: a.temps,
        base_std: a.base_std,
        transition,
        step: a.step,
        adapt: !a.no_adapt,
        target_acceptance: if transition == Transition::Mala { 0.57 } else { 0.65 },
    })
}

/// Mean log-likelihood of the data set `spec` under log Z = `log_z` ± `log_z_se`: (spec,
/// examples, mean log p(x), its standard error, input dimension).
fn data_likelihood(
    spec: &str,
    m: &ebm::train::checkpoint::Loaded,
    c: &Common,
    device: tch::Device,
    (log_z, log_z_se): (f64, f64),
) -> anyhow::Result<(String, usize, f64, f64, i64)> {
    let ds = load(spec, m, c)?;
    let out = classify::run_model(&m.net, &ds, c.eval_batch, device, m.config.data.noise_sigma)?;
    let e = out.energy.to_kind(Kind::Double);
    let n = e.size()[0] as f64;
    let mean_e = e.mean(Kind::Double).double_value(&[]);
    let se_e = e.std(true).double_value(&[]) / n.sqrt();
    let d: i64 = m.net.input_shape().iter().product();
    Ok((spec.to_string(), n as usize, -mean_e - log_z, (se_e * se_e + log_z_se * log_z_se).sqrt(), d))
}

pub fn run(a: LogzArgs) -> anyhow::Result<()> {
    let (m, device) = open(&a.common)?;
    if a.common.threads.get().is_none() && m.config.model.input_shape.len() == 1 {
        // Points, not images: tensors this small run fastest on one thread (32 s against 401 s for
        // the README's 8gaussians run on the 2-core machine under load).
        tch::set_num_threads(1);
    }
    let cfg = ais_config(&a)?;
    tch::manual_seed(a.seed as i64);
    let shape = m.net.input_shape();
    let t0 = std::time::Instant::now();
    let est = ais::estimate(&|x: &tch::Tensor| m.net.energy(x, false), &shape, &cfg, device)?;
    let seconds = t0.elapsed().as_secs_f64();
    let grid = (shape == [2])
        .then(|| logz::grid_log_z(&m.net, -a.grid_range, a.grid_range, a.grid_cells, device))
        .transpose()?;
    let data = a
        .data
        .as_deref()
        .map(|spec| data_likelihood(spec, &m, &a.common, device, (est.log_z, est.std_err)))
        .transpose()?;
    if a.common.json {
        let mut o = json!({
            "checkpoint": m.dir, "log_z": est.log_z, "std_err": est.std_err, "ess": est.ess,
            "chains": est.chains, "temps": est.temps, "sampler": a.sampler, "acceptance": est.acceptance,
            "final_step": est.final_step, "base_std": a.base_std, "seconds": seconds,
        });
        if let Some(g) = grid {
            o["grid_log_z"] = json!(g);
        }
        if let Some((spec, n, ll, se, d)) = &data {
            o["data"] = json!({"spec": spec, "examples": n, "log_likelihood": ll, "std_err": se,
                "bits_per_dim": -ll / (*d as f64 * std::f64::consts::LN_2)});
        }
        println!("{o}");
        return Ok(());
    }
    println!(
        "log Z = {:.4} ± {:.4} (AIS: {} chains, {} temperatures, {}, acceptance {:.3}, ESS {:.1}, {:.1} s)",
        est.log_z, est.std_err, est.chains, est.temps, a.sampler, est.acceptance, est.ess, seconds
    );
    if let Some(g) = grid {
        let r = a.grid_range;
        println!(
            "grid log Z = {g:.4} (exact on [-{r}, {r}]^2, {c}x{c} cells); AIS - grid = {:+.4} ({:+.1} standard errors)",
            est.log_z - g,
            (est.log_z - g) / est.std_err,
            c = a.grid_cells
        );
    }
    if let Some((spec, n, ll, se, d)) = data {
        println!(
            "{spec}: mean log p(x) = {ll:.4} ± {se:.4} nats over {n} examples ({:.4} bits/dim, on the model's input scale)",
            -ll / (d as f64 * std::f64::consts::LN_2)
        );
    }
    if est.ess < (0.1 * est.chains as f64).max(10.0) {
        eprintln!(
            "warning: ESS {:.1} of {} chains: the weights are dominated by a few chains and the standard error is \
             unreliable; raise --temps",
            est.ess, est.chains
        );
    }
    Ok(())
}
