//! [`Local`] as the build's [`StepExecutor`]: COPY/ADD through `copy_exec`, RUN through
//! `run_exec`, WORKDIR's directory through `copy_exec::make_dir`.

use std::collections::BTreeMap;

use kiln_oci::Digest;
use kiln_plan::{Action, KeyInputs, Step};

use super::copy_exec::{self, PreparedCopy};
use super::error::StepError;
use super::local::{Local, copy_inputs_memo_key};
use super::model::{LayerInfo, StepContext};
use super::run_exec;
use super::seams::StepExecutor;

impl StepExecutor for Local<'_> {
    type Prepared = PreparedCopy;

    fn key_inputs(
        &self,
        step: &Step,
        inputs: &mut KeyInputs,
        ctx: &StepContext<'_>,
    ) -> Result<Option<PreparedCopy>, StepError> {
        match &step.action {
            Action::Copy(copy) => {
                let fingerprint = copy_exec::context_fingerprint(self, copy);
                let memo = copy_inputs_memo_key(copy, ctx.layers, ctx.deps, fingerprint.as_ref());
                if let Some(remembered) = memo.as_deref().and_then(|m| self.recall_copy_inputs(m)) {
                    // The destination is an immutable layer chain and the source one too, or
                    // context files of the same content: the inputs are what they were when
                    // this COPY was last planned, and the plan (a walk of both trees) is only
                    // made again if the step has to run.
                    for (label, digest) in remembered {
                        inputs.add_input(label, digest);
                    }
                    return Ok(None);
                }
                let prepared = copy_exec::prepare(self, copy, ctx.layers, ctx.deps, ctx.platform)?;
                let before = inputs.inputs.clone();
                prepared.add_key_inputs(inputs);
                if let Some(memo) = &memo {
                    let added: BTreeMap<String, Digest> = inputs
                        .inputs
                        .iter()
                        .filter(|(label, _)| !before.contains_key(*label))
                        .map(|(l, d)| (l.clone(), d.clone()))
                        .collect();
                    self.remember_copy_inputs(memo, &added);
                }
                Ok(Some(prepared))
            }
            Action::Run(run) => {
                run_exec::add_key_inputs(self, run, ctx.deps, ctx.platform, inputs)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn execute(
        &self,
        step: &Step,
        prepared: Option<PreparedCopy>,
        ctx: &StepContext<'_>,
    ) -> Result<Option<LayerInfo>, StepError> {
        let parent = ctx.parent_chain();
        match &step.action {
            Action::Copy(copy) => {
                let prepared = match prepared {
                    Some(prepared) => prepared,
                    None => copy_exec::prepare(self, copy, ctx.layers, ctx.deps, ctx.platform)?,
                };
                let dir = prepared.materialize(self)?;
                let layer = self.commit(&dir, parent, ctx.in_image)?;
                if let Some(layer) = &layer {
                    prepared.remember_copies(self, &layer.chain);
                }
                Ok(layer)
            }
            Action::MakeDir { path, user } => {
                copy_exec::make_dir(self, path, user, ctx.layers, parent, ctx.in_image)
            }
            Action::Run(run) => run_exec::run(self, run, ctx),
            Action::None => Ok(None),
            other => Err(StepError::Unsupported {
                description: format!("{other:?}"),
            }),
        }
    }
}
