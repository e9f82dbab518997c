//! Snapshots of plans and expanded steps for a corpus of multi-stage Dockerfiles.

mod common;

use common::{options, render_build};
use kiln_oci::Platform;
use kiln_plan::PlanOptions;

macro_rules! case {
    ($name:ident, $options:expr, $src:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), render_build($src, &$options));
        }
    };
}

case!(
    python_two_stage,
    options(),
    r#"# syntax=docker/dockerfile:1
ARG PY=3.12
FROM python:${PY}-slim AS builder
WORKDIR /src
COPY requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip pip install --prefix=/install -r requirements.txt
COPY . .

FROM python:${PY}-slim
ARG PY
ENV APP_HOME=/app PYVER=$PY
WORKDIR $APP_HOME
COPY --from=builder /install /usr/local
COPY --chown=1000:1000 --chmod=755 --from=builder /src/app ./app
USER 1000
EXPOSE 8000 9000-9001/udp
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost:8000/ || exit 1
ENTRYPOINT ["python", "-m", "app"]
CMD ["--port", "8000"]
"#
);

case!(
    global_args_and_platform_args,
    options()
        .build_arg("VERSION", "2.0")
        .build_arg("UNUSED", "x")
        .build_arg("HTTP_PROXY", "http://p:3128"),
    r"ARG BASE=busybox
ARG VERSION=1.0
ARG FLAVOR=${BASE}-${VERSION}
FROM ${BASE}:latest AS one
RUN echo $VERSION $TARGETARCH
ARG VERSION
ARG TARGETARCH
ARG FLAVOR
RUN echo $VERSION $TARGETARCH $FLAVOR
ARG LOCAL=default
ARG LOCAL2
RUN echo $LOCAL
"
);

case!(
    env_arg_precedence,
    options().build_arg("A", "from-build-arg"),
    r"FROM busybox
ARG A=arg-default
ENV A=from-env B=${A}
RUN echo $A
ENV C=one
ARG C=arg-after-env
RUN echo $C
LABEL a=$A c=$C
"
);

case!(
    target_pruning_with_broken_stage,
    options().target("Good"),
    r"FROM busybox AS base
RUN echo base

FROM $UNDEFINED_GARBAGE!!:: AS broken
COPY --from=${nope} / /

FROM base AS good
RUN echo good

FROM busybox
COPY --from=broken / /
"
);

case!(
    stage_references,
    options(),
    r"FROM busybox AS First
RUN touch /a
FROM busybox AS second
RUN touch /b
FROM alpine:3.19
COPY --from=first /a /from-name
COPY --from=1 /b /from-index
COPY --from=SECOND /b /from-upper
COPY --from=nginx:alpine /etc/nginx/nginx.conf /nginx.conf
COPY --from=scratch / /empty
RUN --mount=type=bind,from=first,source=/a,target=/mnt/a cat /mnt/a
"
);

case!(
    named_contexts,
    options()
        .named_context("assets")
        .named_context("alpine")
        .named_context("builder"),
    r"FROM golang:1.22 AS builder
RUN go build -o /out/app ./...
FROM docker.io/library/alpine:latest
COPY --from=builder /out/app /app
COPY --from=assets /static /static
"
);

case!(
    single_stage_progress_and_shell_forms,
    options(),
    r#"FROM busybox
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN echo shell form | cat
RUN ["echo", "exec", "form"]
CMD echo cmd shell
ENTRYPOINT ["/entry"]
STOPSIGNAL SIGQUIT
VOLUME /data /logs
MAINTAINER someone
ONBUILD RUN echo later
"#
);

case!(
    workdir_chain_and_copy_destinations,
    options(),
    r"FROM scratch
WORKDIR app
WORKDIR src
WORKDIR ../lib
COPY a.txt .
COPY b.txt sub/
COPY c.txt /abs
COPY d e /multi/
WORKDIR /
"
);

case!(
    entrypoint_resets_inherited_cmd_only,
    options().all_stages(true),
    r#"FROM busybox AS inherits
ENTRYPOINT ["/bin/app"]

FROM busybox AS sets
CMD ["--help"]
ENTRYPOINT /bin/app

FROM sets AS child
ENTRYPOINT ["/bin/other"]
"#
);

case!(
    heredocs,
    options(),
    "FROM busybox
RUN <<EOF
echo one
echo two
EOF
RUN <<EOF
#!/bin/sh
echo script
EOF
RUN cat <<A > /a && cat <<B > /b
alpha
A
beta
B
ARG NAME=world
COPY <<hello.txt <<'raw.txt' /files/
hello $NAME
hello.txt
raw $NAME
raw.txt
"
);

case!(
    onbuild_from_stage,
    options(),
    r"FROM busybox AS base
ONBUILD COPY --from=assets /a /a
ONBUILD RUN echo triggered
FROM busybox AS assets
RUN touch /a
FROM base
RUN echo main
"
);

case!(
    platform_flags,
    PlanOptions::new(Platform::with_variant("linux", "arm", Some("v7")))
        .build_platform(common::amd64()),
    r"FROM --platform=$BUILDPLATFORM golang:1.22 AS build
ARG TARGETOS TARGETARCH TARGETVARIANT TARGETPLATFORM BUILDPLATFORM
RUN echo $BUILDPLATFORM $TARGETPLATFORM $TARGETOS/$TARGETARCH/$TARGETVARIANT
FROM --platform=linux/arm64 busybox AS other
FROM build AS derived
RUN echo derived
FROM busybox
COPY --from=derived /out /out
COPY --from=other /x /x
"
);

case!(
    run_mounts_and_flags,
    options().build_arg("CACHE_ID", "pip"),
    r"FROM busybox AS deps
FROM busybox
ARG CACHE_ID
WORKDIR /work
RUN --mount=type=cache,id=$CACHE_ID,target=.cache,sharing=locked \
    --mount=type=secret,id=token,env=TOKEN \
    --mount=type=secret,id=npmrc \
    --mount=type=ssh \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=type=bind,from=deps,target=/deps,rw \
    --mount=target=/ctx \
    --network=none --security=insecure \
    make
"
);

case!(
    all_stages,
    options().all_stages(true),
    r"FROM busybox AS a
RUN echo a
FROM busybox AS b
RUN echo b
FROM busybox
RUN echo final
"
);
