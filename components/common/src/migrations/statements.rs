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

/// `statement` with each run of whitespace outside its string literals made one space. The files are
/// indented for people; what is embedded is in every component, and what a migration creates is stored
/// in the schema that every new connection parses.
// `build.rs` calls it; in the crate only the tests do, to check what was embedded.
#[cfg_attr(not(test), allow(dead_code))]
pub fn compact(statement: &str) -> String {
    let mut out = String::with_capacity(statement.len());
    let mut in_literal = false;
    let mut space = false;
    for c in statement.chars() {
        if c == '\'' {
            in_literal = !in_literal;
        } else if !in_literal && c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_ends_with_a_semicolon_that_ends_its_line() {
        let sql = "CREATE TABLE t (\n    a TEXT -- why\n);\n-- a comment\nCREATE TRIGGER x BEGIN UPDATE t SET a = 1; END;\n";
        assert_eq!(
            statements(sql),
            [
                "CREATE TABLE t (\n    a TEXT\n)",
                "CREATE TRIGGER x BEGIN UPDATE t SET a = 1; END"
            ]
        );
    }

    #[test]
    fn compacting_keeps_string_literals_as_written() {
        assert_eq!(
            compact("SELECT  'a  b', '''  c'\n   FROM t\n  WHERE x = '\n'"),
            "SELECT 'a  b', '''  c' FROM t WHERE x = '\n'"
        );
    }
}
