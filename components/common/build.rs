//! Writes every `migrations/*.sql` file (and `migrations/intake/*.sql`, the intake database's) into
//! `OUT_DIR` without its comments and with its whitespace compacted outside string literals, with the
//! checksum of the file as written next to it (`<name>.checksum`); `src/migrations.rs` embeds both. The
//! comments and the indentation are for people reading the files, and were about 16 KB of every
//! component; the checksum stays the one of the whole file, which is what every database migrated so far
//! recorded in `schema_migrations`.

use std::path::Path;
use std::{env, fs};

use sha2::{Digest, Sha256};

#[path = "src/migrations/statements.rs"]
mod statements;

fn main() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations");
    // The app's database's migrations, and the intake database's in their own folder.
    write_migrations(&source, &out);
    write_migrations(&source.join("intake"), &out.join("intake"));
}

fn write_migrations(source: &Path, out: &Path) {
    fs::create_dir_all(out).expect("creating a folder in OUT_DIR");
    println!("cargo:rerun-if-changed={}", source.display());
    for entry in fs::read_dir(source).expect("reading a migrations folder") {
        let path = entry.expect("listing a migrations folder").path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().expect("a file name").to_owned();
        let text = fs::read_to_string(&path).expect("reading a migration");
        // Re-split by the runner into the same statements: each is one line now, ending in its `;`.
        let compacted: Vec<String> = statements::statements(&text)
            .iter()
            .map(|statement| statements::compact(statement))
            .collect();
        let mut stripped = compacted.join(";\n");
        stripped.push_str(";\n");
        write_if_changed(&out.join(&name), &stripped);
        let digest = Sha256::digest(text.as_bytes());
        let checksum: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut checksum_name = name;
        checksum_name.push(".checksum");
        write_if_changed(&out.join(checksum_name), &checksum);
    }
}

/// Leaves a file that already says `text` untouched, so its modification time does not rebuild the crate.
fn write_if_changed(path: &Path, text: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    fs::write(path, text).expect("writing into OUT_DIR");
}
