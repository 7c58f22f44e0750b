//! Runs the demo and prints the report.
//! usage: demo VAPP_BINARY [--quick] [--no-overhead] [--concurrency N] [--json FILE]
use vpath_demo::{run, DemoOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(vapp) = args.first() else {
        anyhow::bail!(
            "usage: demo VAPP_BINARY [--quick] [--no-overhead] [--concurrency N] [--json FILE]"
        );
    };
    let cmd = vec![vapp.clone()];
    let mut opts = if args.iter().any(|a| a == "--quick") {
        DemoOptions::quick(cmd)
    } else {
        DemoOptions::new(cmd)
    };
    if let Some(i) = args.iter().position(|a| a == "--concurrency") {
        opts.concurrency = args.get(i + 1).map_or(Ok(8), |v| v.parse())?;
    }
    if args.iter().any(|a| a == "--no-overhead") {
        opts.overhead = None;
    }
    let report = run(&opts)?;
    print!("{}", report.render_text());
    if let Some(i) = args.iter().position(|a| a == "--json") {
        if let Some(p) = args.get(i + 1) {
            std::fs::write(p, serde_json::to_string_pretty(&report.to_json())?)?;
        }
    }
    Ok(())
}
