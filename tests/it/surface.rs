//! The public surface of the library crates an embedder uses: the names `kiln` (the facade)
//! and `kiln_build` export at their roots, snapshotted. A new public name, or one that
//! disappears, shows up as a snapshot change to review: the surface is what embedders need
//! (DESIGN.md §1.6), not every type the engine uses inside.

use std::path::Path;

/// `kind name` for every public item at the root of the crate whose `lib.rs` is `path`; a
/// `pub use` lists each name it brings in (renames by their new name, globs as `path::*`),
/// without the path it is defined at inside the crate.
fn public_names(path: &Path) -> Vec<String> {
    let text = fs_err::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let file = syn::parse_file(&text).expect("lib.rs parses");
    let mut names = Vec::new();
    for item in &file.items {
        let (visibility, entry) = match item {
            syn::Item::Use(u) => {
                if matches!(u.vis, syn::Visibility::Public(_)) {
                    use_names(&u.tree, "", &mut names);
                }
                continue;
            }
            syn::Item::Fn(f) => (&f.vis, format!("fn {}", f.sig.ident)),
            syn::Item::Struct(s) => (&s.vis, format!("struct {}", s.ident)),
            syn::Item::Enum(e) => (&e.vis, format!("enum {}", e.ident)),
            syn::Item::Trait(t) => (&t.vis, format!("trait {}", t.ident)),
            syn::Item::Type(t) => (&t.vis, format!("type {}", t.ident)),
            syn::Item::Const(c) => (&c.vis, format!("const {}", c.ident)),
            syn::Item::Static(s) => (&s.vis, format!("static {}", s.ident)),
            syn::Item::Mod(m) => (&m.vis, format!("mod {}", m.ident)),
            _ => continue,
        };
        if matches!(visibility, syn::Visibility::Public(_)) {
            names.push(entry);
        }
    }
    names.sort();
    names
}

fn use_names(tree: &syn::UseTree, prefix: &str, out: &mut Vec<String>) {
    match tree {
        syn::UseTree::Path(p) => use_names(&p.tree, &format!("{prefix}{}::", p.ident), out),
        // The name as embedders see it, not where it is defined inside.
        syn::UseTree::Name(n) => out.push(format!("use {}", n.ident)),
        syn::UseTree::Rename(r) => out.push(format!("use {}", r.rename)),
        syn::UseTree::Glob(_) => out.push(format!("use {prefix}*")),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_names(t, prefix, out)),
    }
}

fn surface(relative: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names = public_names(&root.join(relative));
    format!("{} public names\n{}\n", names.len(), names.join("\n"))
}

#[test]
fn the_facade_exports_what_embedders_need() {
    insta::assert_snapshot!("surface_kiln", surface("src/lib.rs"));
}

#[test]
fn kiln_build_exports_what_the_facade_and_the_cli_need() {
    insta::assert_snapshot!(
        "surface_kiln_build",
        surface("crates/kiln-build/src/lib.rs")
    );
}
