//! Building an image from Rust and printing the progress event stream.
//!
//! ```text
//! cargo run --example embed                 # a demo context in a temporary store
//! cargo run --example embed -- DIR [NAME]   # DIR/Dockerfile into $KILN_ROOT (or the default store)
//! ```
//!
//! Each event is printed as one JSON line (what `kiln build --progress rawjson` prints), then
//! the manifest digest and image ID.
#![expect(clippy::print_stdout, reason = "an example prints its events")]

use std::process::ExitCode;

use kiln::{Builder, Event};

/// The demo Dockerfile: no base image and no RUN, so it builds on any machine offline.
const DEMO_DOCKERFILE: &str = "\
FROM scratch
COPY hello.txt /srv/hello.txt
ENV GREETING=hello
WORKDIR /srv
LABEL org.opencontainers.image.title=embed-demo
CMD [\"/srv/hello.txt\"]
";

fn main() -> ExitCode {
    // This executable is the RUN sandbox helper too: let it take over when re-executed.
    if let Some(code) = kiln::run_sandbox_helper_if_requested() {
        return code;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let demo;
    let (builder, name) = if let Some(dir) = args.next() {
        let name = args
            .next()
            .unwrap_or_else(|| "embed-example:latest".to_owned());
        let builder = Builder::new(dir)
            .store_root(kiln::default_store_root())
            .tag(&name);
        (builder, name)
    } else {
        demo = tempfile::tempdir()?;
        let context = demo.path().join("context");
        fs_err::create_dir_all(&context)?;
        fs_err::write(context.join("hello.txt"), "hello from kiln\n")?;
        let builder = Builder::new(&context)
            .dockerfile_text(DEMO_DOCKERFILE)
            .store_root(demo.path().join("store"))
            .tag("embed-demo:latest");
        (builder, "embed-demo:latest".to_owned())
    };
    let print = |event: Event| {
        // Events serialize as `{"event":"step_started","step":1,…}`.
        match serde_json::to_string(&event) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("unprintable event {event:?}: {e}"),
        }
    };
    let outcome = builder.build(&print)?;
    println!("built {name}");
    println!("manifest {}", outcome.manifest_digest);
    println!("image id {}", outcome.config_digest);
    Ok(())
}
