//! `podnet-lab`: the seed's cluster in network namespaces. Not built yet (issue 5); it says so
//! and fails.

fn main() -> std::process::ExitCode {
    eprintln!("podnet-lab: not implemented yet");
    std::process::ExitCode::from(2)
}
