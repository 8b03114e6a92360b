//! What is generated from the code stays generated: the README's table of variables comes
//! from the settings table (`UPDATE_GENERATED=1 cargo test` rewrites it).

use sentry_kubernetes::config::docs;

const BEGIN: &str = "<!-- settings: generated from src/config/settings.rs; UPDATE_GENERATED=1 cargo test regenerates it -->\n";
const END: &str = "<!-- settings:end -->";

#[test]
fn the_readme_table_of_variables_is_the_settings_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme.find(BEGIN).expect("README has the settings marker") + BEGIN.len();
    let end = start
        + readme[start..]
            .find(END)
            .expect("README has the end marker");
    let expected = docs::markdown_table();
    if readme[start..end] == expected {
        return;
    }
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        std::fs::write(path, updated).unwrap();
        return;
    }
    panic!(
        "README.md's table of variables differs from src/config/settings.rs; \
         run `UPDATE_GENERATED=1 cargo test --release the_readme_table` and commit"
    );
}
