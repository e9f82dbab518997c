//! Shared helpers: plan a Dockerfile, drive every stage's `StageState` over fake base
//! configs, and render the result as stable text for snapshots.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kiln_oci::{ImageConfiguration, Platform};
use kiln_plan::{
    Action, BaseSource, BuildGraph, PlanError, PlanOptions, StageBase, StageId, StageOutput,
    StageState, Step, plan,
};

pub(crate) fn amd64() -> Platform {
    Platform::new("linux", "amd64")
}

pub(crate) fn options() -> PlanOptions {
    PlanOptions::new(amd64()).build_platform(amd64())
}

pub(crate) fn parse(src: &str) -> kiln_dockerfile::Dockerfile {
    kiln_dockerfile::parse(src).unwrap_or_else(|e| panic!("parse failed: {e}\n{src}"))
}

pub(crate) fn plan_src(src: &str, options: &PlanOptions) -> Result<BuildGraph, PlanError> {
    plan(&parse(src), options)
}

/// The config a fake registry returns for an image: PATH, LANG, a CMD and WORKDIR.
pub(crate) fn image_config(platform: &Platform) -> ImageConfiguration {
    let mut config = ImageConfiguration::new(platform);
    config.config.env = vec![
        "PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
        "LANG=C.UTF-8".to_owned(),
    ];
    config.config.cmd = vec!["sh".to_owned()];
    config
}

/// Expands every planned stage in order; image bases get `image_config`, or `bases[name]`.
pub(crate) fn expand_all(
    graph: &BuildGraph,
    bases: &BTreeMap<String, ImageConfiguration>,
) -> Result<Vec<(StageId, Vec<Step>, StageOutput)>, PlanError> {
    let mut outputs: BTreeMap<StageId, StageOutput> = BTreeMap::new();
    let mut all = Vec::new();
    for stage in &graph.stages {
        let image;
        let base = match &stage.base {
            BaseSource::Scratch => StageBase::Scratch,
            BaseSource::Stage(id) => StageBase::Stage(&outputs[id]),
            BaseSource::Image(reference) => {
                image = bases
                    .get(&reference.to_string())
                    .cloned()
                    .unwrap_or_else(|| image_config(&stage.platform));
                StageBase::Image(&image)
            }
            BaseSource::NamedContext(name) => {
                image = bases
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| image_config(&stage.platform));
                StageBase::Image(&image)
            }
        };
        let mut state = StageState::new(graph, stage, base)?;
        let mut steps = Vec::new();
        while let Some(step) = state.next_step()? {
            steps.push(step);
        }
        let output = state.finish();
        outputs.insert(stage.id, output.clone());
        all.push((stage.id, steps, output));
    }
    Ok(all)
}

/// A stable text rendering of a plan.
pub(crate) fn render_plan(graph: &BuildGraph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "target: {}", graph.target);
    for stage in &graph.stages {
        let deps: Vec<String> = stage.deps.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "stage {} name={:?} progress={:?} base={} platform={} deps=[{}] steps={} instructions={} triggers={}",
            stage.id,
            stage.name.as_deref().unwrap_or(""),
            stage.progress_name,
            base_text(&stage.base),
            stage.platform,
            deps.join(","),
            stage.step_total,
            stage.instructions.len(),
            stage.triggers.len(),
        );
        if let Some(from) = stage.from_progress() {
            let _ = writeln!(out, "  {from}");
        }
    }
    for warning in &graph.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

pub(crate) fn base_text(base: &BaseSource) -> String {
    match base {
        BaseSource::Scratch => "scratch".to_owned(),
        BaseSource::Stage(id) => format!("stage:{id}"),
        BaseSource::Image(r) => format!("image:{r}"),
        BaseSource::NamedContext(n) => format!("context:{n}"),
    }
}

/// Plan + expansion rendered: the plan, then every step with progress, history and action.
pub(crate) fn render_build(src: &str, options: &PlanOptions) -> String {
    let graph = match plan_src(src, options) {
        Ok(g) => g,
        Err(e) => return format!("plan error: {e}\n"),
    };
    let mut out = render_plan(&graph);
    match expand_all(&graph, &BTreeMap::new()) {
        Err(e) => {
            let _ = writeln!(out, "expand error: {e}");
        }
        Ok(stages) => {
            for (id, steps, output) in stages {
                let _ = writeln!(out, "--- stage {id}");
                for step in &steps {
                    render_step(&mut out, step);
                }
                let config = serde_json::to_string(&output.image.config).unwrap_or_default();
                let _ = writeln!(out, "  config: {config}");
            }
        }
    }
    out
}

pub(crate) fn render_step(out: &mut String, step: &Step) {
    if let Some(progress) = &step.progress {
        let _ = writeln!(out, "  # {progress}");
    }
    let _ = writeln!(
        out,
        "  history: {} (empty_layer={})",
        step.created_by.as_deref().unwrap_or("<none>"),
        step.empty_layer
    );
    match &step.action {
        Action::None => {}
        other => {
            let _ = writeln!(
                out,
                "  action: {}",
                serde_json::to_string(other).unwrap_or_default()
            );
        }
    }
}
