//! `ebm eval`, `ebm calibrate` and `ebm ood`: evaluation of a checkpoint.
use super::args::{Resize, Threads};
use anyhow::{bail, Context};
use ebm::data::{self, Dataset};
use ebm::eval::{calibration, classify, ood, plots, scores};
use ebm::train::checkpoint::{self, Loaded, Weights};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Common {
    /// Checkpoint folder, or a run folder (its newest checkpoint).
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Which weights: the moving average (`[ema]`) when the checkpoint has one (auto), or the
    /// average (ema) or the trained weights (raw) explicitly.
    #[arg(long, value_enum, default_value_t = Weights::Auto)]
    pub weights: Weights,
    /// Where the model runs: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Examples per forward pass (results do not depend on it). Formerly --batch.
    #[arg(long = "eval-batch", alias = "batch", value_name = "N", default_value_t = 200)]
    pub eval_batch: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub threads: Threads,
    #[command(flatten)]
    pub resize: Resize,
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub common: Common,
    /// Labelled data set spec to evaluate on (see `ebm data --help`).
    #[arg(long)]
    pub data: String,
}

#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub common: Common,
    /// Labelled data set spec whose confidences are binned (see `ebm data --help`).
    #[arg(long)]
    pub data: String,
    /// Equal-width confidence bins.
    #[arg(long, default_value_t = 20)]
    pub bins: usize,
    /// Write the reliability diagram here (PNG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct OodArgs {
    #[command(flatten)]
    pub common: Common,
    /// In-distribution data spec (the positive class).
    #[arg(long = "in")]
    pub in_spec: String,
    /// Out-of-distribution data specs.
    #[arg(long = "ood", required = true)]
    pub ood: Vec<String>,
    /// Scores: logpx, maxsoftmax, gradnorm, energy (default: logpx, maxsoftmax, gradnorm for
    /// classifiers; energy, gradnorm for energy heads).
    #[arg(long = "score")]
    pub score: Vec<String>,
    /// Write one row per example (set, index, label, each score).
    #[arg(long)]
    pub scores_out: Option<PathBuf>,
    /// Write ROC curves here (PNG; one per OOD set, for the first score).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

pub fn open(c: &Common) -> anyhow::Result<(Loaded, tch::Device)> {
    let device = ebm::device::parse_device(&c.device)?;
    if c.eval_batch == 0 {
        bail!("--eval-batch must be positive");
    }
    c.threads.apply(None);
    Ok((checkpoint::load_model_weights(&c.ckpt, device, c.weights)?, device))
}

/// Loads a data set as the model's own data (resized by --resize, else as the run was trained):
/// shape and labels checked.
pub fn load(spec: &str, m: &Loaded, c: &Common) -> anyhow::Result<Dataset> {
    let ds = data::load(spec, &c.resize.options(m.config.data.resize))?;
    classify::check_compatible(&m.net, &ds)?;
    Ok(ds)
}

/// An out-of-distribution set: only its example shape must fit the model (CIFAR-100's 100
/// classes against a CIFAR-10 model are fine; its labels are only written to --scores-out).
fn load_ood(spec: &str, m: &Loaded, c: &Common) -> anyhow::Result<Dataset> {
    let ds = data::load(spec, &c.resize.options(m.config.data.resize))?;
    classify::check_shape(&m.net, &ds)?;
    Ok(ds)
}

/// Confidence and correctness of every example of a labelled set.
fn confidences(
    m: &Loaded,
    ds: &Dataset,
    c: &Common,
    device: tch::Device,
) -> anyhow::Result<(classify::Outputs, Vec<f64>, Vec<bool>)> {
    if !m.config.model.is_conditional() {
        bail!("{}: this model has an energy head; accuracy and calibration need a classifier", m.dir.display());
    }
    if ds.labels.is_none() {
        bail!("{}: unlabelled; accuracy and calibration need labels", ds.name);
    }
    let out = classify::run_model(&m.net, ds, c.eval_batch, device, m.config.data.noise_sigma)?;
    let logits = out.logits.as_ref().expect("classifier");
    let labels = out.labels.as_ref().expect("labelled");
    let (conf, pred) = logits.softmax(1, tch::Kind::Double).max_dim(1, false);
    let conf: Vec<f64> = Vec::try_from(&conf)?;
    let correct: Vec<bool> =
        Vec::<i64>::try_from(&pred.eq_tensor(labels).to_kind(tch::Kind::Int64))?.into_iter().map(|v| v == 1).collect();
    Ok((out, conf, correct))
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let (m, device) = open(&a.common)?;
    let ds = load(&a.data, &m, &a.common)?;
    let (out, conf, correct) = confidences(&m, &ds, &a.common, device)?;
    let (acc, nll) = classify::accuracy_nll(out.logits.as_ref().unwrap(), out.labels.as_ref().unwrap());
    let cal = calibration::calibration(&conf, &correct, 20);
    let mean_energy = out.energy.mean(tch::Kind::Double).double_value(&[]);
    if a.common.json {
        println!(
            "{}",
            json!({"data": a.data, "count": ds.len(), "accuracy": acc, "nll": nll, "ece": cal.ece, "mean_energy": mean_energy, "checkpoint": m.dir, "weights": m.weights.label()})
        );
    } else {
        println!("checkpoint   {} ({} weights)", m.dir.display(), m.weights.label());
        println!("data         {} ({} examples)", a.data, ds.len());
        println!("accuracy     {:.2}%", 100.0 * acc);
        println!("NLL p(y|x)   {nll:.4}");
        println!("ECE (20 bins) {:.2}%", 100.0 * cal.ece);
        println!("mean E(x)    {mean_energy:.4}");
    }
    Ok(())
}

pub fn calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    if a.bins == 0 {
        bail!("--bins must be positive");
    }
    let (m, device) = open(&a.common)?;
    let ds = load(&a.data, &m, &a.common)?;
    let (_, conf, correct) = confidences(&m, &ds, &a.common, device)?;
    let cal = calibration::calibration(&conf, &correct, a.bins);
    if let Some(p) = &a.plot {
        plots::reliability_diagram(&cal, &format!("Reliability, {}", a.data), p)?;
    }
    if a.common.json {
        println!("{}", serde_json::to_string(&cal)?);
        return Ok(());
    }
    println!("data {} ({} examples), {} bins", a.data, cal.count, a.bins);
    println!(
        "ECE {:.2}%  MCE {:.2}%  accuracy {:.2}%  mean confidence {:.2}%",
        100.0 * cal.ece,
        100.0 * cal.mce,
        100.0 * cal.accuracy,
        100.0 * cal.mean_confidence
    );
    println!("{:>14} {:>7} {:>9} {:>11}", "bin", "count", "accuracy", "confidence");
    for b in &cal.bins {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.4}", v));
        println!("({:.3}, {:.3}] {:>7} {:>9} {:>11}", b.lo, b.hi, b.count, f(b.accuracy), f(b.confidence));
    }
    if let Some(p) = &a.plot {
        println!("reliability diagram: {}", p.display());
    }
    Ok(())
}

pub fn ood(a: OodArgs) -> anyhow::Result<()> {
    let (m, device) = open(&a.common)?;
    let names: Vec<String> = if a.score.is_empty() {
        if m.config.model.is_conditional() {
            vec!["logpx".into(), "maxsoftmax".into(), "gradnorm".into()]
        } else {
            vec!["energy".into(), "gradnorm".into()]
        }
    } else {
        a.score.clone()
    };
    let kinds: Vec<scores::Score> = names.iter().map(|s| scores::Score::parse(s)).collect::<anyhow::Result<_>>()?;
    let noise = m.config.data.noise_sigma;
    let mut sets = vec![(a.in_spec.clone(), load(&a.in_spec, &m, &a.common)?)];
    for s in &a.ood {
        sets.push((s.clone(), load_ood(s, &m, &a.common)?));
    }
    let all: Vec<Vec<Vec<f64>>> = sets
        .iter()
        .map(|(_, ds)| scores::score_dataset(&m.net, ds, &kinds, a.common.eval_batch, device, noise))
        .collect::<anyhow::Result<_>>()?;
    let mut results = Vec::new();
    let mut curves = Vec::new();
    for (j, (spec, _)) in sets.iter().enumerate().skip(1) {
        for (k, kind) in kinds.iter().enumerate() {
            let r = ood::ood_metrics(&all[0][k], &all[j][k]);
            if k == 0 {
                curves.push((format!("{spec} ({})", kind.name()), ood::roc_curve(&all[0][k], &all[j][k]), r.auroc));
            }
            results.push(json!({"ood": spec, "score": kind.name(), "auroc": r.auroc, "aupr": r.aupr, "fpr95": r.fpr95,
                                "n_in": all[0][k].len(), "n_ood": all[j][k].len()}));
        }
    }
    if let Some(path) = &a.scores_out {
        write_scores(path, &sets, &all, &names)?;
    }
    if let Some(p) = &a.plot {
        plots::roc_plot(&curves, &format!("ROC, in-distribution {}", a.in_spec), p)?;
    }
    if a.common.json {
        println!("{}", json!({"in": a.in_spec, "results": results}));
        return Ok(());
    }
    println!("in-distribution: {} ({} examples); positive class = in-distribution", a.in_spec, sets[0].1.len());
    println!("{:<36} {:<11} {:>7} {:>7} {:>7}", "OOD set", "score", "AUROC", "AUPR", "FPR95");
    for r in &results {
        println!(
            "{:<36} {:<11} {:>7.4} {:>7.4} {:>7.4}",
            r["ood"].as_str().unwrap(),
            r["score"].as_str().unwrap(),
            r["auroc"].as_f64().unwrap(),
            r["aupr"].as_f64().unwrap(),
            r["fpr95"].as_f64().unwrap()
        );
    }
    Ok(())
}

fn write_scores(
    path: &PathBuf,
    sets: &[(String, Dataset)],
    all: &[Vec<Vec<f64>>],
    names: &[String],
) -> anyhow::Result<()> {
    let tmp = path.with_extension("csv.tmp");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?,
    );
    writeln!(f, "set,in_distribution,index,label,{}", names.join(","))?;
    for (j, (spec, ds)) in sets.iter().enumerate() {
        for i in 0..ds.len() {
            let label = ds.labels.as_ref().map_or(String::new(), |l| l[i].to_string());
            let vals: Vec<String> = all[j].iter().map(|v| format!("{:.9e}", v[i])).collect();
            writeln!(f, "\"{}\",{},{i},{label},{}", spec.replace('"', "\"\""), (j == 0) as u8, vals.join(","))?;
        }
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
