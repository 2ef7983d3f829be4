//! The Python readers of `tests/py/` (pyarrow, DuckDB, fastavro, confluent-kafka, boto3),
//! run with the test venv's python.

use std::process::Command;

use super::{python, repo_root, run_with_stdin};

/// Runs `tests/py/<script>` with the venv python and returns its stdout; panics with its
/// stderr when it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    run_python_stdin(script, args, b"")
}

/// [`run_python`] with `stdin` fed to the script.
pub fn run_python_stdin(script: &str, args: &[&str], stdin: &[u8]) -> String {
    let path = repo_root().join("tests/py").join(script);
    assert!(path.is_file(), "{} does not exist", path.display());
    let mut cmd = Command::new(python());
    cmd.arg(&path).args(args);
    let (ok, stdout, stderr) = run_with_stdin(cmd, stdin);
    assert!(
        ok,
        "{script} {args:?} failed:\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
    );
    stdout
}

/// [`run_python`] for scripts that print one JSON document.
pub fn run_python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = run_python(script, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{out}"))
}
