//! Argument parsing and dispatch for the `ebm` binary.
mod args;
mod attack_cmd;
mod bench_cmd;
mod data_cmd;
mod diagnose_cmd;
mod download_cmd;
mod eval_cmd;
mod experiment_cmd;
mod fid_cmd;
mod logz_cmd;
mod sample_cmd;
#[cfg(test)]
mod tests;
mod train_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "ebm", version, about = "Train and evaluate deep energy-based models (JEM, IGEBM, ...) on libtorch")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Versions of tch and libtorch, CUDA and cuDNN availability, threads.
    Info(InfoArgs),
    /// What a data set spec resolves to: count, classes, shape, value range; optionally a PNG grid.
    Data(data_cmd::DataArgs),
    /// Fetch CIFAR-10, CIFAR-100 or SVHN from their official sources (resumable, MD5-checked) into
    /// the folders their data specs read.
    Download(download_cmd::DownloadArgs),
    /// Train a model from a TOML config.
    Train(train_cmd::TrainArgs),
    /// Draw samples from a checkpoint: a .npy array, or a PNG (image grid, or scatter plot of 2-D points).
    Sample(sample_cmd::SampleArgs),
    /// Accuracy, NLL of p(y|x), ECE and mean energy of a checkpoint on a data set.
    Eval(eval_cmd::EvalArgs),
    /// Calibration: ECE, MCE, the per-bin table and a reliability diagram.
    Calibrate(eval_cmd::CalibrateArgs),
    /// Out-of-distribution detection: AUROC, AUPR, FPR95 per OOD set and score; ROC plot; scores CSV.
    Ood(eval_cmd::OodArgs),
    /// Sample quality: FID and KID (with its standard deviation over subsets) of a checkpoint's
    /// samples, or of any image set, against a reference data set, with the standard Inception network.
    Fid(fid_cmd::FidArgs),
    /// log Z of a checkpoint by annealed importance sampling, with its standard error (and the exact
    /// grid value for 2-D models); log-likelihoods of a data set.
    Logz(logz_cmd::LogzArgs),
    /// Chain diagnostics of a checkpoint's sampler: R-hat and bulk-ESS of the energy traces,
    /// acceptance rate, KSD of the draws, MMD against data, and a verdict.
    Diagnose(diagnose_cmd::DiagnoseArgs),
    /// Robust accuracy of a classifier under PGD (L-infinity or L2), optionally with JEM's
    /// Langevin refinement of the inputs.
    Attack(attack_cmd::AttackArgs),
    /// Reproduce experiments whose truth is known (`is-mle`: seed 004, section 7).
    #[command(subcommand)]
    Experiment(experiment_cmd::Experiment),
    /// Time training iterations, SGLD and the data loader.
    Bench(bench_cmd::BenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info(a) => {
            let info = ebm::device::info();
            if a.json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                println!("ebm              {}", info.ebm_version);
                println!("tch              {}", info.tch_version);
                println!("libtorch         {}", info.libtorch_version);
                println!("CUDA available   {}", info.cuda_available);
                println!("CUDA devices     {}", info.cuda_device_count);
                println!("cuDNN available  {}", info.cudnn_available);
                println!("cuDNN version    {}", info.cudnn_version.map_or("-".into(), |v| v.to_string()));
                println!("CUDA runtime     {}", info.cuda_runtime_version.map_or("-".into(), |v| v.to_string()));
                println!("threads          {} (inter-op {})", info.threads, info.interop_threads);
                println!("MKL / OpenMP     {} / {}", info.mkl, info.openmp);
            }
            Ok(())
        }
        Command::Data(a) => data_cmd::run(a),
        Command::Download(a) => download_cmd::run(a),
        Command::Train(a) => train_cmd::run(a),
        Command::Sample(a) => sample_cmd::run(a),
        Command::Bench(a) => bench_cmd::run(a),
        Command::Experiment(e) => experiment_cmd::run(e),
        Command::Eval(a) => eval_cmd::eval(a),
        Command::Calibrate(a) => eval_cmd::calibrate(a),
        Command::Ood(a) => eval_cmd::ood(a),
        Command::Logz(a) => logz_cmd::run(a),
        Command::Fid(a) => fid_cmd::run(a),
        Command::Diagnose(a) => diagnose_cmd::run(a),
        Command::Attack(a) => attack_cmd::run(a),
    }
}
