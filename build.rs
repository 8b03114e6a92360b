//! Records what `--version` prints beside the crate version: the git commit the binary was
//! built from (`SENTRY_K8S_BUILD_COMMIT` when set, e.g. by an image build without `.git`,
//! else `git rev-parse`), and the compiler's version.

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SENTRY_K8S_BUILD_COMMIT");
    // A new commit moves HEAD or the branch it points to; rebuild the version then.
    for path in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("SENTRY_K8S_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "rustc unknown".into());
    println!("cargo:rustc-env=SENTRY_K8S_COMMIT={commit}");
    println!("cargo:rustc-env=SENTRY_K8S_RUSTC={rustc_version}");
}
