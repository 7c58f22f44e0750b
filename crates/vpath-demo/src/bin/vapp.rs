//! vApp as a stand-alone binary (the `vpath` binary exposes the same entry
//! point as a hidden subcommand).
fn main() -> std::process::ExitCode {
    vpath_demo::vapp_main(std::env::args().skip(1).collect())
}
