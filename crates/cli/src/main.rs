//! `freehold`: the command-line front end. Parses arguments, formats output, and reports
//! errors as one line with a non-zero exit; all real work lives in the library crates.

mod bench;
mod fit;
mod inspect;
mod license_cmd;
mod pull;
mod run;
mod serve;
mod store_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "freehold",
    version,
    about = "Own your AI: run open-weight models locally"
)]
struct Cli {
    /// Use no network source (also FREEHOLD_OFFLINE=1); local commands work as usual.
    #[arg(long, global = true)]
    offline: bool,
    /// Licence policy file (TOML) that pull, import, run, serve and license obey (also
    /// FREEHOLD_POLICY); without one nothing is enforced.
    #[arg(long, global = true, value_name = "FILE")]
    policy: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate from a model: a one-shot answer with PROMPT, an interactive chat without.
    Run(run::RunArgs),
    /// Show what a GGUF model file holds.
    Inspect(inspect::InspectArgs),
    /// Print the token ids and pieces of TEXT.
    Tokenize(run::TokenizeArgs),
    /// Measure perplexity over a text file the way llama-perplexity does.
    Perplexity(run::PerplexityArgs),
    /// Measure prompt and generation speed the way llama-bench does.
    Bench(bench::BenchArgs),
    /// Will a model fit in this machine's memory, how fast will it decode, and which
    /// quantization of it fits best.
    Fit(fit::FitArgs),
    /// Fetch a model from a hub (hf://ORG/REPO) or an OCI registry (oci://HOST/REPO:TAG) into the store.
    Pull(pull::PullArgs),
    /// Publish a stored model to an OCI registry (oci://HOST/REPO:TAG).
    Push(pull::PushArgs),
    /// Import a GGUF file, a model directory or an exported archive into the store.
    Import(store_cmd::ImportArgs),
    /// List the models in the store.
    List(store_cmd::ListArgs),
    /// Show a stored model: config summary, layers and digests.
    Show(store_cmd::ShowArgs),
    /// Remove models from the store (their files go at the next `gc`).
    Rm(store_cmd::RmArgs),
    /// Re-hash stored models and name every missing or corrupt blob.
    Verify(store_cmd::VerifyArgs),
    /// Delete files no stored model uses, and leftovers of interrupted writes.
    Gc(store_cmd::GcArgs),
    /// Write a stored model to one tar file (OCI image layout) that `import` reads back.
    Export(store_cmd::ExportArgs),
    /// Serve models over an OpenAI-compatible HTTP API (continuous batching).
    Serve(serve::ServeArgs),
    /// A model's licence with evidence, its terms with the operative clauses quoted, and the
    /// policy verdict (a policy check, not legal advice).
    License(license_cmd::LicenseArgs),
    /// Write a CycloneDX 1.6 ML-BOM (JSON) for a model.
    Bom(license_cmd::BomArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.offline {
        store::set_process_offline(true);
    }
    if let Some(p) = &cli.policy {
        // Single-threaded here; every command reads the policy through this one variable.
        std::env::set_var(::license::policy::POLICY_ENV, p);
    }
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Fit(a) => fit::fit(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::License(a) => license_cmd::license(a),
        Command::Bom(a) => license_cmd::bom_cmd(a),
        Command::Tokenize(a) => run::tokenize(a),
        Command::Perplexity(a) => run::perplexity(a),
        Command::Bench(a) => bench::bench(a),
        Command::Pull(a) => pull::pull(a),
        Command::Push(a) => pull::push(a),
        Command::Import(a) => store_cmd::import(a),
        Command::List(a) => store_cmd::list(a),
        Command::Show(a) => store_cmd::show(a),
        Command::Rm(a) => store_cmd::rm(a),
        Command::Verify(a) => store_cmd::verify(a),
        Command::Gc(a) => store_cmd::gc(a),
        Command::Export(a) => store_cmd::export(a),
        Command::Serve(a) => serve::serve(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined, so scripts can grep it.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::FAILURE
        }
    }
}
