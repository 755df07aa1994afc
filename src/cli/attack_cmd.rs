//! `ebm attack`: robust accuracy of a classifier checkpoint under PGD (see `eval::attack`), as
//! JEM's `attack_model.py`, optionally with JEM's defence of K Langevin steps of input refinement
//! (the checkpoint's sampler) before classifying.
use super::eval_cmd::{load, open, Common};
use anyhow::bail;
use ebm::eval::attack::{self, Norm, Pgd};
use ebm::eval::classify;
use serde_json::json;
use tch::Tensor;

#[derive(clap::Args, Debug)]
pub struct AttackArgs {
    #[command(flatten)]
    pub common: Common,
    /// Labelled data set spec to attack (see `ebm data --help`).
    #[arg(long)]
    pub data: String,
    /// The attack's ball: linf or l2.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// Radius of the ball, in the model's input scale (images in [-1, 1]: 8/255 in [0, 1] pixels
    /// is 16/255 here); repeat for a curve.
    #[arg(long, required = true)]
    pub eps: Vec<f64>,
    /// PGD iterations (--sgld-steps are the defence's sampler steps).
    #[arg(long = "pgd-steps", alias = "steps", value_name = "N", default_value_t = 20)]
    pub steps: usize,
    /// Step length of each iteration (default 2.5 eps / pgd-steps, Madry et al.'s choice).
    #[arg(long)]
    pub step_size: Option<f64>,
    /// JEM's defence: this many steps of the checkpoint's sampler refine each input before it is
    /// classified (the attack differentiates through them as the identity, BPDA); 0: none.
    #[arg(long = "sgld-steps", default_value_t = 0)]
    pub sgld_steps: usize,
    /// Attack only the first N examples.
    #[arg(long)]
    pub n: Option<usize>,
    /// Seed of libtorch's generator (the refinement's noise).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// (eps, clean correct, robust correct, examples) for each --eps.
type Curve = Vec<(f64, i64, i64, usize)>;

fn attack_all(a: &AttackArgs, norm: Norm) -> anyhow::Result<(Curve, String)> {
    let (m, device) = open(&a.common)?;
    if !m.config.model.is_conditional() {
        bail!("{}: this model has an energy head; an attack needs a classifier", m.dir.display());
    }
    let ds = load(&a.data, &m, &a.common)?;
    if ds.labels.is_none() {
        bail!("{}: unlabelled; an attack needs labels", ds.name);
    }
    let n = a.n.map_or(ds.len(), |n| n.min(ds.len()));
    if n == 0 {
        bail!("{}: no examples to attack", ds.name);
    }
    tch::manual_seed(a.seed as i64);
    let is_image = m.net.input_shape().len() == 3;
    let clamp = is_image.then_some((-1.0, 1.0));
    let sampler = ebm::sampling::from_config(&m.config.sampler, clamp.unwrap_or((-1.0, 1.0)));
    let energy = |x: &Tensor| m.net.energy(x, false);
    let logits = |x: &Tensor| m.net.forward(x, false).logits.expect("a classifier");
    let refine = |x: &Tensor| sampler.sample(&energy, x, a.sgld_steps).x;
    let refine: Option<&dyn Fn(&Tensor) -> Tensor> = (a.sgld_steps > 0).then_some(&refine as _);
    let mut curve = Vec::new();
    for &eps in &a.eps {
        let p = Pgd {
            norm,
            eps,
            steps: a.steps,
            step_size: a.step_size.unwrap_or(2.5 * eps / a.steps.max(1) as f64),
            clamp,
        };
        if eps > 0.0 {
            p.check()?;
        }
        let (mut clean, mut robust) = (0, 0);
        for start in (0..n).step_by(a.common.eval_batch) {
            let end = (start + a.common.eval_batch).min(n);
            let (x, y) = classify::input_batch(&ds, start, end, m.config.data.noise_sigma);
            let (c, r) =
                attack::attack_batch(&logits, refine, &x.to_device(device), &y.expect("labels").to_device(device), &p);
            clean += c;
            robust += r;
        }
        curve.push((eps, clean, robust, n));
    }
    Ok((curve, sampler.name().to_string()))
}

pub fn run(a: AttackArgs) -> anyhow::Result<()> {
    let norm = Norm::parse(&a.norm)?;
    if a.steps == 0 {
        bail!("--pgd-steps 0: PGD needs at least one iteration");
    }
    if let Some(bad) = a.eps.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
        bail!("--eps {bad}: must be a finite number >= 0");
    }
    let t0 = std::time::Instant::now();
    let (curve, sampler) = attack_all(&a, norm)?;
    let seconds = t0.elapsed().as_secs_f64();
    let defence =
        if a.sgld_steps > 0 { format!("{} {sampler} steps of refinement (BPDA)", a.sgld_steps) } else { "none".into() };
    if a.common.json {
        let rows: Vec<_> = curve
            .iter()
            .map(|(eps, c, r, n)| json!({"eps": eps, "clean_accuracy": *c as f64 / *n as f64, "robust_accuracy": *r as f64 / *n as f64, "examples": n}))
            .collect();
        println!(
            "{}",
            json!({"data": a.data, "norm": norm.name(), "steps": a.steps, "sgld_steps": a.sgld_steps, "defence": defence, "results": rows, "seconds": seconds})
        );
        return Ok(());
    }
    println!("PGD-{} ({} iterations) on {}; defence: {defence}", norm.name(), a.steps, a.data);
    println!("{:>10} {:>10} {:>10} {:>8}", "eps", "clean acc", "robust acc", "examples");
    for (eps, c, r, n) in &curve {
        println!("{eps:>10.5} {:>10.4} {:>10.4} {n:>8}", *c as f64 / *n as f64, *r as f64 / *n as f64);
    }
    println!("({seconds:.1} s)");
    Ok(())
}
