//! Parsing speed on a generated 5,000-line Dockerfile (target: at least 50 MB/s).
//!
//! Run with `cargo bench -p kiln-dockerfile --bench parse`; divan reports bytes per second.

use divan::counter::BytesCount;

fn main() {
    divan::main();
}

/// A realistic mix: stages, continued RUN lines with cache mounts, ENV/LABEL pairs, JSON
/// forms, heredocs and comments, repeated up to `lines` lines.
fn generate(lines: usize) -> String {
    let block = "\
# build stage
FROM --platform=$BUILDPLATFORM python:3.12-slim AS builder
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=\"/opt/venv/bin:$PATH\"
WORKDIR /app
COPY --chown=app:app --chmod=0644 requirements.txt pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \\
    python -m venv /opt/venv && \\
    pip install --no-compile -r requirements.txt && \\
    rm -rf /tmp/* /var/tmp/*
RUN <<EOF
set -eux
apt-get update
apt-get install -y --no-install-recommends curl ca-certificates
EOF
LABEL org.opencontainers.image.title=\"kiln bench\" org.opencontainers.image.version=1.0
EXPOSE 8000/tcp 8443
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD [\"curl\", \"-f\", \"http://localhost:8000/health\"]
USER 10001:10001
CMD [\"uvicorn\", \"app.main:app\", \"--host\", \"0.0.0.0\", \"--port\", \"8000\"]

";
    let per_block = block.lines().count();
    block.repeat(lines.div_ceil(per_block))
}

#[divan::bench]
fn parse_syntax_5000_lines(bencher: divan::Bencher<'_, '_>) {
    let src = generate(5_000);
    bencher
        .counter(BytesCount::of_str(&src))
        .bench(|| kiln_dockerfile::parse_syntax(divan::black_box(&src)).map(|t| t.nodes.len()));
}

#[divan::bench]
fn parse_typed_5000_lines(bencher: divan::Bencher<'_, '_>) {
    let src = generate(5_000);
    bencher
        .counter(BytesCount::of_str(&src))
        .bench(|| kiln_dockerfile::parse(divan::black_box(&src)).map(|d| d.instructions.len()));
}
