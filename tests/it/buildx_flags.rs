//! `docker buildx build`'s flags in kiln: the README's compatibility table is checked against
//! `kiln build --help` (so neither drifts), and every `key=value` flag refuses a key it does
//! not implement with a usage error naming it.

use std::path::Path;

use crate::common::{kiln, kiln_in, run_fails, write};

/// The flags of `docker buildx build` (buildx 0.19's `--help`, less the hidden legacy ones).
const BUILDX_FLAGS: &[&str] = &[
    "add-host",
    "allow",
    "annotation",
    "attest",
    "build-arg",
    "build-context",
    "builder",
    "cache-from",
    "cache-to",
    "call",
    "cgroup-parent",
    "check",
    "debug",
    "file",
    "iidfile",
    "label",
    "load",
    "metadata-file",
    "network",
    "no-cache",
    "no-cache-filter",
    "output",
    "platform",
    "progress",
    "provenance",
    "pull",
    "push",
    "quiet",
    "sbom",
    "secret",
    "shm-size",
    "ssh",
    "tag",
    "target",
    "ulimit",
];

fn readme() -> String {
    fs_err::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The table's rows: (long flag without `--`, status).
fn table_rows(readme: &str) -> Vec<(String, String)> {
    let begin = readme
        .find("<!-- buildx-flags:begin -->")
        .expect("table start marker");
    let end = readme
        .find("<!-- buildx-flags:end -->")
        .expect("table end marker");
    readme[begin..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flag = cells[1]
                .trim_matches('`')
                .rsplit("--")
                .next()
                .unwrap()
                .to_owned();
            (flag, cells[2].to_owned())
        })
        .collect()
}

/// The long flags `kiln build --help` lists (without `--help` and `--version`).
fn help_flags() -> Vec<String> {
    let out = kiln().args(["build", "--help"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line
                .strip_prefix('-')
                .filter(|rest| !rest.starts_with('-'))
                .map_or(line, |rest| rest.get(3..).unwrap_or(""));
            let name = line.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name[..end].to_owned())
        })
        .filter(|f| f != "help" && f != "version")
        .collect()
}

#[test]
fn the_readme_table_matches_kiln_build_help() {
    let readme = readme();
    let rows = table_rows(&readme);
    let named: Vec<&str> = rows.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(named, BUILDX_FLAGS, "one row per buildx flag, in order");
    let help = help_flags();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\n");
    for (flag, status) in &rows {
        match status.as_str() {
            "yes" | "differs" => assert!(
                help.contains(flag),
                "--{flag} is `{status}` in README.md but not in kiln build --help"
            ),
            "no" => {
                assert!(
                    !help.contains(flag),
                    "--{flag} is in kiln build --help: mark it yes or differs in README.md"
                );
                let out = run_fails(
                    kiln_in(&tmp.path().join("store"))
                        .args(["build", &format!("--{flag}"), "x"])
                        .arg(&ctx),
                    2,
                );
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(stderr.contains(&format!("--{flag}")), "{stderr}");
            }
            other => panic!("--{flag}: status `{other}` is not yes, differs or no"),
        }
    }
    // Every flag kiln has is in the table or in the list of kiln's own.
    let own_begin = readme.find("<!-- kiln-flags -->").unwrap();
    let own_end = readme.find("<!-- /kiln-flags -->").unwrap();
    let own = &readme[own_begin..own_end];
    for flag in &help {
        assert!(
            BUILDX_FLAGS.contains(&flag.as_str()) || own.contains(&format!("`--{flag}`")),
            "--{flag} is in kiln build --help but neither in the buildx table nor in kiln's own flags"
        );
    }
    for own_flag in own.split('`').filter(|s| s.starts_with("--")) {
        assert!(
            help.contains(&own_flag[2..].to_owned()),
            "README lists {own_flag} as kiln's own, but kiln build --help has no such flag"
        );
    }
}

#[test]
fn every_key_value_flag_names_an_unknown_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\n");
    let store = tmp.path().join("store");
    let cases: &[(&str, &str)] = &[
        ("--output", "type=oci,dest=o.tar,bogus-key=1"),
        ("--output", "type=docker,dest=o.tar,bogus-key=1"),
        ("--output", "type=local,dest=o,bogus-key=1"),
        ("--output", "type=tar,dest=o.tar,bogus-key=1"),
        ("--output", "type=image,name=a:1,bogus-key=1"),
        ("--output", "type=registry,name=a:1,bogus-key=1"),
        ("--output", "type=bogus-key"),
        ("--cache-from", "type=registry,ref=r/c:1,bogus-key=1"),
        ("--cache-from", "type=local,src=dir,bogus-key=1"),
        ("--cache-from", "type=bogus-key,ref=x"),
        ("--cache-to", "type=registry,ref=r/c:1,bogus-key=1"),
        ("--cache-to", "type=local,dest=dir,bogus-key=1"),
        ("--cache-to", "type=inline,bogus-key=1"),
        ("--cache-to", "type=bogus-key"),
        ("--secret", "id=s,src=f,bogus-key=1"),
        ("--secret", "id=s,type=bogus-key"),
        ("--ulimit", "bogus-key=1"),
        ("--allow", "bogus-key"),
        ("--annotation", "bogus-key:k=v"),
        ("--attest", "type=sbom,bogus-key=1"),
        ("--attest", "type=provenance,bogus-key=1"),
        ("--attest", "type=bogus-key"),
        ("--sbom", "bogus-key=1"),
        ("--provenance", "bogus-key=1"),
        ("--provenance", "mode=bogus-key"),
    ];
    for (flag, value) in cases {
        let out = run_fails(kiln_in(&store).args(["build", flag, value]).arg(&ctx), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("bogus-key"),
            "{flag} {value}: the unknown key is not named: {stderr}"
        );
    }
    // RUN --mount's keys are the Dockerfile's: an unknown one fails the build (exit 1) at
    // its line, before any step, as BuildKit's parser does.
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nRUN --mount=type=bind,bogus-key=1 true\n",
    );
    let out = run_fails(kiln_in(&store).args(["build"]).arg(&ctx), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bogus-key") && stderr.contains(":2"),
        "{stderr}"
    );
}

#[test]
fn load_keeps_the_image_in_the_local_store_under_its_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let store = tmp.path().join("store");
    // buildx --load without a tag loads a nameless image into docker; kiln's store keeps
    // images by name, so it asks for one.
    let out = run_fails(kiln_in(&store).args(["build", "--load"]).arg(&ctx), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-t NAME"));
    let oci = tmp.path().join("o.tar");
    crate::common::run_ok(
        kiln_in(&store)
            .args([
                "build",
                "--progress",
                "quiet",
                "--load",
                "-t",
                "loaded:1",
                "-o",
            ])
            .arg(format!("type=oci,dest={}", oci.display()))
            .arg(&ctx),
    );
    assert!(oci.is_file());
    let images = crate::common::run_ok(kiln_in(&store).arg("images"));
    assert!(images.contains("loaded"), "{images}");
}
