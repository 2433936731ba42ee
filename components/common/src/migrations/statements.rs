//! Splitting a migration file into statements. Plain `std`, no crate items: `build.rs` compiles this
//! same file (`#[path]`) to write each migration without its comments, and the runner splits what it
//! embedded with it, so the build and the runner cannot disagree on what a statement is.

/// Splits a migration file into statements: a statement ends with `;` at the end of a line. `--` comments
/// are dropped (the files keep `--` out of string literals).
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let code = line.split("--").next().unwrap_or_default().trim_end();
        if code.trim().is_empty() {
            continue;
        }
        current.push_str(code);
        current.push('\n');
        if code.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}
