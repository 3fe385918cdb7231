use clap::Parser;

#[derive(Parser)]
#[command(name = "albatross-autoscale", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
