fn main() {
    napi_build::setup();
    // `buildInfo().tailscaleCrate` reports the version the lock file resolved, never a copy of it.
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    println!("cargo:rerun-if-changed={lock_path}");
    let lock = std::fs::read_to_string(lock_path).expect("the workspace's Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|entry| entry.contains("\nname = \"tailscale\"\n"))
        .and_then(|entry| entry.lines().find_map(|line| line.strip_prefix("version = \"")))
        .map(|rest| rest.trim_end_matches('"').to_string())
        .expect("the tailscale crate in Cargo.lock");
    println!("cargo:rustc-env=TAILSCALE_CRATE_VERSION={version}");
    // `buildInfo().profile`: which build a program loaded ("debug" or "release").
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=ADDON_PROFILE={profile}");
}
