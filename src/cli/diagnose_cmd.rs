//! `ebm diagnose`: chain diagnostics of a checkpoint's sampler (see `eval::diagnose`): R-hat and
//! bulk-ESS of the energy traces of fresh chains, the acceptance rate, KSD of the draws (and of a
//! data set) under the model, MMD of the draws against the data set, and a verdict line.
use super::eval_cmd::{open, Common};
use anyhow::{anyhow, bail, Context};
use ebm::config::{SamplerConfig, SamplerKind};
use ebm::data;
use ebm::eval::{classify, diagnose, draw};
use ebm::sampling::buffer::uniform;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    pub common: Common,
    /// Independent chains, started in U(-r, r) (overdispersed, as R-hat needs).
    #[arg(long, default_value_t = 16)]
    pub chains: i64,
    /// Transitions of the sampler (the checkpoint's, or --sampler's) per chain (the shared --sgld-steps).
    #[arg(long = "sgld-steps", alias = "steps", value_name = "K", default_value_t = 1000)]
    pub steps: usize,
    /// Chain to diagnose instead of the checkpoint's: langevin, mala, hmc, independent-mh or
    /// importance-resampling (`sgld.sampler`); its settings (step size, leapfrog steps, ...) stay
    /// the checkpoint's.
    #[arg(long)]
    pub sampler: Option<String>,
    /// Share of each chain dropped as warm-up before judging it, in [0, 1).
    #[arg(long, default_value_t = 0.5)]
    pub burn_in: f64,
    /// Data set whose first --max-points examples the draws are compared with (MMD) and whose KSD
    /// under the model is reported.
    #[arg(long)]
    pub data: Option<String>,
    /// Most draws (pooled over chains, thinned evenly) and data points used by MMD and KSD.
    #[arg(long, default_value_t = 1000)]
    pub max_points: usize,
    /// Random relabellings of the MMD permutation test.
    #[arg(long, default_value_t = 200)]
    pub permutations: usize,
    /// Half-width r of the chains' starting box (default: as `ebm sample --from noise`).
    #[arg(long)]
    pub init_range: Option<f64>,
    /// Seed of libtorch's generator (starts, sampler noise, permutations).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn check(a: &DiagnoseArgs) -> anyhow::Result<()> {
    if a.chains < 2 {
        bail!("--chains {}: R-hat needs at least 2 chains", a.chains);
    }
    if !(0.0..1.0).contains(&a.burn_in) {
        bail!("--burn-in {}: must be in [0, 1)", a.burn_in);
    }
    if a.steps as f64 * (1.0 - a.burn_in) < 8.0 {
        bail!("--sgld-steps {} with --burn-in {}: at least 8 kept draws per chain are needed", a.steps, a.burn_in);
    }
    if a.max_points < 2 {
        bail!("--max-points {}: at least 2", a.max_points);
    }
    Ok(())
}

/// The checkpoint's sampler settings with `--sampler`'s kind, if given (checked as a config would be).
fn sampler_config(a: &DiagnoseArgs, cfg: &SamplerConfig) -> anyhow::Result<SamplerConfig> {
    let mut cfg = cfg.clone();
    if let Some(name) = &a.sampler {
        cfg.kind = serde_json::from_value::<SamplerKind>(json!(name)).map_err(|_| {
            anyhow!("--sampler {name}: unknown sampler (expected langevin, mala, hmc, independent-mh or importance-resampling)")
        })?;
        cfg.validate().with_context(|| format!("--sampler {name} with the checkpoint's sampler settings"))?;
    }
    Ok(cfg)
}

pub fn run(a: DiagnoseArgs) -> anyhow::Result<()> {
    check(&a)?;
    let (m, device) = open(&a.common)?;
    let sampler_cfg = sampler_config(&a, &m.config.sampler)?;
    tch::manual_seed(a.seed as i64);
    let model =
        draw::Model { net: &m.net, config: &m.config, buffer: m.buffer.as_ref(), name: m.dir.display().to_string() };
    let (range, range_from, note) = draw::chain_range(&model, a.init_range)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let data = match &a.data {
        Some(spec) => {
            let ds = data::load(spec, &a.common.resize.options(m.config.data.resize))?;
            classify::check_shape(&m.net, &ds)?;
            let n = ds.len().min(a.max_points);
            if n < 2 {
                bail!("{spec}: {} examples; MMD and KSD need at least 2", ds.len());
            }
            Some(classify::input_batch(&ds, 0, n, m.config.data.noise_sigma).0.to_device(device))
        }
        None => None,
    };
    let sampler = ebm::sampling::from_config(&sampler_cfg, (-range, range));
    let mut dims = vec![a.chains];
    dims.extend(m.net.input_shape());
    let x0 = uniform(&dims, range, device);
    let energy = |x: &tch::Tensor| m.net.energy(x, false);
    let o = diagnose::Options {
        steps: a.steps,
        burn_in: a.burn_in,
        max_points: a.max_points,
        permutations: a.permutations,
    };
    let t0 = std::time::Instant::now();
    let chains = diagnose::run_chains(&energy, sampler.as_ref(), &x0, &o);
    let r = diagnose::judge(&energy, &chains, data.as_ref(), &o)?;
    let seconds = t0.elapsed().as_secs_f64();
    if a.common.json {
        let mut v = serde_json::to_value(&r)?;
        v["checkpoint"] = json!(m.dir);
        v["sampler"] = json!(sampler.name());
        v["init_range"] = json!(range);
        v["data"] = json!(a.data);
        v["seconds"] = json!(seconds);
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} chains x {} {} transitions from U(-{range:.4}, {range:.4}) ({range_from}); the first {} of each dropped as warm-up ({seconds:.1} s)",
        r.chains,
        r.steps,
        sampler.name(),
        r.steps - r.kept_per_chain
    );
    println!(
        "energy trace: mean {:.4}; R-hat {:.4} (rank-normalised split, folded); bulk-ESS {:.0}",
        r.energy_mean, r.rhat, r.ess_bulk
    );
    if let Some(acc) = r.acceptance {
        println!("acceptance rate {acc:.3}");
    }
    let k = &r.ksd_samples;
    println!(
        "KSD^2_u(draws | model) = {:.5} (h = {:.4}; about 0 when the draws follow the model)",
        k.ksd2, k.bandwidth
    );
    if let (Some(kd), Some(mm), Some(spec)) = (&r.ksd_data, &r.mmd, &a.data) {
        println!("KSD^2_u({spec} | model) = {:.5} (h = {:.4}; the model's fit to the data)", kd.ksd2, kd.bandwidth);
        println!(
            "MMD^2_u(draws, {spec}) = {:.5} (h = {:.4}), permutation p = {:.3} ({} permutations)",
            mm.mmd2, mm.bandwidth, mm.p_value, mm.permutations
        );
    }
    println!("kernel: {}", r.kernel);
    println!("verdict: {}", r.verdict);
    Ok(())
}
