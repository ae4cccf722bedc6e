//! Progress rendering: indicatif bars for training, and schedule rows as they finish.

use std::path::Path;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use maxprune::data::dataset::Dataset;
use maxprune::prune::pruner::Pruner;
use maxprune::prune::schedule::{ScheduleReport, run_schedule};
use maxprune::report::{StepRow, markdown_row, markdown_table};
use maxprune::train::{Event, Observer, RunDir, Silent};

/// Renders training progress as indicatif bars.
pub(crate) struct Bars {
    pub(crate) bar: Option<ProgressBar>,
}

impl Observer for Bars {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::EpochStart { epoch, epochs, steps } => {
                let bar = ProgressBar::new(*steps as u64).with_style(
                    ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_message(format!("{epoch}/{epochs}"));
                self.bar = Some(bar);
            }
            Event::Step { step, loss } => {
                if let Some(b) = &self.bar {
                    b.set_position(*step as u64 + 1);
                    if step % 20 == 0 {
                        b.set_prefix(format!("{loss:.3}"));
                    }
                }
            }
            Event::EpochEnd(m) => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let val = m
                    .val
                    .as_ref()
                    .map_or(String::new(), |v| format!(", val acc {:.2}%", 100.0 * v.accuracy));
                eprintln!(
                    "epoch {}: train loss {:.4}{val}, test acc {:.2}% (loss {:.4}), {:.0} img/s",
                    m.epoch,
                    m.train_loss,
                    100.0 * m.test.accuracy,
                    m.test.loss,
                    m.train_img_per_s
                );
            }
        }
    }
}

pub(crate) fn observer(quiet: bool) -> Box<dyn Observer> {
    if quiet {
        Box::new(Silent)
    } else {
        Box::new(Bars { bar: None })
    }
}

/// Runs a schedule, printing its rows as they finish and its table at the end.
pub(crate) fn run_and_print(
    source: &RunDir,
    out: &Path,
    pruner: &dyn Pruner,
    data: &Dataset,
    resume: bool,
    quiet: bool,
) -> Result<ScheduleReport> {
    let report = run_schedule(
        source,
        out,
        pruner,
        data,
        resume,
        observer(quiet).as_mut(),
        &mut print_row(quiet),
    )?;
    print!("{}", markdown_table(&report.rows));
    println!(
        "result: step {} of {}; report in {}",
        report.final_step,
        out.display(),
        out.join("report.md").display()
    );
    Ok(report)
}

/// Prints each finished schedule row as a Markdown table row (unless quiet).
pub(crate) fn print_row(quiet: bool) -> impl FnMut(&StepRow) {
    move |r| {
        if !quiet {
            eprintln!("{}", markdown_row(r));
        }
    }
}
