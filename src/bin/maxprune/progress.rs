//! Progress rendering: one [`Bars`] observes every kind of the library's events and draws them
//! as indicatif bars and lines on stderr.

use std::path::Path;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use maxprune::data::dataset::Dataset;
use maxprune::data::fetch::FetchEvent;
use maxprune::demo::DemoEvent;
use maxprune::progress::Observer;
use maxprune::prune::pruner::Pruner;
use maxprune::prune::schedule::{ScheduleEvent, ScheduleReport, run_schedule};
use maxprune::relevance::RelevanceEvent;
use maxprune::report::{markdown_row, markdown_table};
use maxprune::reproduce::ReproduceEvent;
use maxprune::train::{Event, RunDir};

/// Renders the library's progress events: bars for epochs, relevance passes and downloads,
/// a line per finished schedule row and per reproduction stage. `quiet` keeps all of it off
/// (the demo's own messages excepted: they are its output).
pub(crate) struct Bars {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Bars {
    pub(crate) fn new(quiet: bool) -> Bars {
        Bars { bar: None, quiet }
    }

    /// Starts a bar of `len` with `template`, unless quiet.
    fn start(&mut self, len: u64, template: &str, message: String) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(len).with_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(message);
        self.bar = Some(bar);
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    /// Prints `line` on stderr, unless quiet.
    fn line(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

impl Observer<Event> for Bars {
    fn event(&mut self, event: &Event) {
        match event {
            Event::EpochStart { epoch, epochs, steps } => self.start(
                *steps as u64,
                "epoch {msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
                format!("{epoch}/{epochs}"),
            ),
            Event::Step { step, loss } => {
                if let Some(b) = &self.bar {
                    b.set_position(*step as u64 + 1);
                    if step % 20 == 0 {
                        b.set_prefix(format!("{loss:.3}"));
                    }
                }
            }
            Event::EpochEnd(m) => {
                self.finish();
                let val = m
                    .val
                    .as_ref()
                    .map_or(String::new(), |v| format!(", val acc {:.2}%", 100.0 * v.accuracy));
                self.line(&format!(
                    "epoch {}: train loss {:.4}{val}, test acc {:.2}% (loss {:.4}), {:.0} img/s",
                    m.epoch,
                    m.train_loss,
                    100.0 * m.test.accuracy,
                    m.test.loss,
                    m.train_img_per_s
                ));
            }
        }
    }
}

impl Observer<RelevanceEvent> for Bars {
    fn event(&mut self, event: &RelevanceEvent) {
        let RelevanceEvent::Traced { done, total } = *event;
        if self.bar.is_none() {
            self.start(
                total as u64,
                "{msg} [{bar:30}] {pos}/{len} {per_sec}",
                "relevance".into(),
            );
        }
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
        }
        if done >= total {
            self.finish();
        }
    }
}

impl Observer<ScheduleEvent> for Bars {
    fn event(&mut self, event: &ScheduleEvent) {
        match event {
            ScheduleEvent::Relevance(e) => self.event(e),
            ScheduleEvent::Train(e) => self.event(e),
            ScheduleEvent::Row(row) => self.line(&markdown_row(row)),
        }
    }
}

impl Observer<ReproduceEvent> for Bars {
    fn event(&mut self, event: &ReproduceEvent) {
        match event {
            ReproduceEvent::Stage { number, total, label } => self.line(&format!("[{number}/{total}] {label}")),
            ReproduceEvent::Work(e) => self.event(e),
        }
    }
}

impl Observer<DemoEvent> for Bars {
    fn event(&mut self, event: &DemoEvent) {
        match event {
            DemoEvent::Training {
                params,
                examples: [train, val, test],
            } => eprintln!(
                "demo 1/2: train lenet5-maxout ({params} parameters) on the built-in Fashion-MNIST subset ({train} train, {val} val, {test} test)"
            ),
            DemoEvent::Trained { last, dir } => println!(
                "demo: trained, test accuracy {:.2}% after {} epochs ({})",
                100.0 * last.test.accuracy,
                last.epoch,
                dir.display()
            ),
            DemoEvent::Pruning { retrain_epochs } => eprintln!(
                "demo 2/2: arg-max relevance -> drop the least relevant piece of every unit -> retrain {retrain_epochs} epochs"
            ),
            DemoEvent::Work(e) => self.event(e),
        }
    }
}

impl Observer<FetchEvent> for Bars {
    fn event(&mut self, event: &FetchEvent) {
        match event {
            FetchEvent::Start { name, total } => self.start(
                total.unwrap_or(0),
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                name.clone(),
            ),
            FetchEvent::Progress(n) => {
                if let Some(b) = &self.bar {
                    b.set_position(*n);
                }
            }
            FetchEvent::Done { name, cached } => {
                self.finish();
                let how = if *cached { "already present" } else { "downloaded" };
                self.line(&format!("{name}: {how}, checksum ok"));
            }
        }
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
    let device = maxprune::device();
    let report = run_schedule(source, out, pruner, data, resume, &device, &mut Bars::new(quiet))?;
    print!("{}", markdown_table(&report.rows));
    println!(
        "result: step {} of {}; report in {}",
        report.final_step,
        out.display(),
        out.join("report.md").display()
    );
    Ok(report)
}
