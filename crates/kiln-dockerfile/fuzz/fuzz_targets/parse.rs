//! Fuzzes the Dockerfile parser: no input may panic the syntax parser, the typed view, the
//! BuildKit dump or the error renderer, and reported spans must lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    match kiln_dockerfile::parse_syntax(&src) {
        Ok(tree) => {
            let _ = tree.dump_buildkit_ast();
        }
        Err(err) => {
            assert!(err.span.end <= src.len());
            let _ = err.render("Dockerfile", &src);
        }
    }
    if let Err(err) = kiln_dockerfile::parse(&src) {
        assert!(err.span.end <= src.len());
        assert!(err.render("Dockerfile", &src).len() < 4_096, "rendered errors stay short");
    }
    // The input as one word to expand: deep `${…}` nesting and long repetitions must end in
    // a value within the limits or a short error, never a stack overflow.
    let env = [("A", "a b"), ("B", "aaaa")];
    match kiln_dockerfile::ShellLexer::new('\\').process_word(&src, &env[..]) {
        Ok(value) => assert!(value.len() <= kiln_dockerfile::MAX_EXPANDED_WORD_LENGTH.max(src.len())),
        Err(err) => assert!(err.to_string().len() < 2_000, "expansion errors stay short"),
    }
});
