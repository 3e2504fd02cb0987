//! `podnet-agent`: the per-node route agent. Not built yet (issue 4); it says so and fails.

fn main() -> std::process::ExitCode {
    eprintln!("podnet-agent: not implemented yet");
    std::process::ExitCode::from(2)
}
