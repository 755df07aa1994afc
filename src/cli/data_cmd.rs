use super::args::Resize;
use anyhow::Context;
use ebm::data;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// A data set spec: cifar10:DIR[:train|test], cifar100:DIR[:train|test], svhn:DIR[:train|test], folder:DIR,
    /// npy:IMAGES.npy[,LABELS.npy], synthetic:shapes[:N][:test], noise:uniform[:N],
    /// noise:gaussian[:N], constant[:N], interp:SPEC, toy2d:NAME[:N]
    pub spec: String,
    /// Write a PNG grid of the first 64 images here.
    #[arg(long)]
    pub grid: Option<PathBuf>,
    #[command(flatten)]
    pub resize: Resize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: DataArgs) -> anyhow::Result<()> {
    let opts = a.resize.options(None);
    let t0 = std::time::Instant::now();
    let ds = data::load(&a.spec, &opts)?;
    let secs = t0.elapsed().as_secs_f64();
    let (lo, hi) = ds.value_range();
    let counts = ds.class_counts();
    if a.json {
        let v = serde_json::json!({
            "spec": a.spec, "count": ds.len(), "shape": ds.shape, "classes": ds.classes,
            "class_counts": counts, "labelled": ds.labels.is_some(), "min": lo, "max": hi, "load_seconds": secs,
        });
        println!("{v}");
    } else {
        println!("spec      {}", a.spec);
        println!("count     {}", ds.len());
        println!("shape     {:?}", ds.shape);
        if ds.labels.is_some() {
            let listed: Vec<String> = ds.classes.iter().zip(&counts).map(|(c, n)| format!("{c} ({n})")).collect();
            println!("classes   {}: {}", ds.num_classes(), listed.join(", "));
        } else {
            println!("classes   unlabelled");
        }
        println!("range     [{lo:.4}, {hi:.4}]");
        println!("loaded in {secs:.2} s");
    }
    if let Some(path) = &a.grid {
        if !ds.is_image() {
            anyhow::bail!("{}: --grid needs an image set; this one holds points of shape {:?}", a.spec, ds.shape);
        }
        let n = ds.len().min(64);
        let (x, _) = ds.batch(&(0..n).collect::<Vec<_>>());
        ebm::eval::grid::save_grid(&x, 8, path).with_context(|| format!("{}: grid", path.display()))?;
        if !a.json {
            println!("grid      {}", path.display());
        }
    }
    Ok(())
}
