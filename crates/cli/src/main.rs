//! `freehold`: the command-line front end. Parses arguments, formats output, and reports
//! errors as one line with a non-zero exit; all real work lives in the library crates.

mod bench;
mod inspect;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "freehold",
    version,
    about = "Own your AI: run open-weight models locally"
)]
struct Cli {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::Tokenize(a) => run::tokenize(a),
        Command::Perplexity(a) => run::perplexity(a),
        Command::Bench(a) => bench::bench(a),
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
