use ebm::config::ModelConfig;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Network preset (wrn-28-10, wrn-28-2, wrn-16-2, convnet-small) or a TOML file.
    #[arg(long, default_value = "wrn-28-10")]
    pub preset: String,
    /// Override the WRN depth.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Override the WRN widen factor (or ConvNet width).
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch: i64,
    #[arg(long, default_value_t = 20)]
    pub sgld_steps: usize,
    /// Timed iterations (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Also measure the data loader on this spec (augmented images per second).
    #[arg(long)]
    pub loader: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let device = ebm::device::parse_device(&a.device)?;
    let mut model = ModelConfig::from_preset(&a.preset)?;
    if let Some(d) = a.depth {
        model.depth = d;
    }
    if let Some(w) = a.width {
        model.width = w;
    }
    model.validate()?;
    let loader =
        a.loader.as_deref().map(|spec| ebm::bench::loader_throughput(spec, a.batch as usize, 200)).transpose()?;
    let t = ebm::bench::train_iterations(&model, a.batch, a.sgld_steps, a.iters.max(1), 1, device)?;
    if a.json {
        println!("{}", serde_json::json!({"train": t, "loader": loader}));
        return Ok(());
    }
    println!("model              {} ({} parameters)", t.model, t.parameters);
    println!("device             {} ({} threads)", t.device, t.threads);
    println!("batch / SGLD steps {} / {}", t.batch, t.sgld_steps);
    println!("s per iteration    {:.4}", t.seconds_per_iter);
    println!("SGLD steps per s   {:.2}", t.sgld_steps_per_second);
    println!("images per s       {:.1}", t.images_per_second);
    if let Some(m) = t.peak_rss_mib {
        println!("peak RSS           {m:.0} MiB");
    }
    if let Some(l) = loader {
        println!("loader             {:.0} augmented images/s ({}, batch {})", l.images_per_second, l.spec, l.batch);
    }
    Ok(())
}
