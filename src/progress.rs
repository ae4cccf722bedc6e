//! How long work reports progress: one trait, [`Observer`], for every kind of event.
//!
//! Each long-running part of the library has its own event type, named after it: training's
//! [`crate::train::Event`], a relevance pass's [`crate::relevance::RelevanceEvent`], a
//! schedule's [`crate::prune::schedule::ScheduleEvent`] (which carries the training and
//! relevance events of its steps), [`crate::reproduce::ReproduceEvent`],
//! [`crate::demo::DemoEvent`] and [`crate::data::fetch::FetchEvent`]. Work that runs other work
//! forwards that work's events inside its own, so one observer (the CLI's progress bars) sees
//! everything. The library never prints.

/// Receives the progress events of some work.
///
/// Any `FnMut(&E)` closure is an observer of `E`:
///
/// ```
/// use maxprune::progress::Observer;
///
/// let mut seen = Vec::new();
/// let mut count = |n: &usize| seen.push(*n);
/// let observer: &mut dyn Observer<usize> = &mut count;
/// observer.event(&3);
/// assert_eq!(seen, [3]);
/// ```
pub trait Observer<E: ?Sized> {
    /// Called for every event, in order.
    fn event(&mut self, event: &E);
}

impl<E: ?Sized, F: FnMut(&E)> Observer<E> for F {
    fn event(&mut self, event: &E) {
        self(event)
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl<E: ?Sized> Observer<E> for Silent {
    fn event(&mut self, _: &E) {}
}

/// Forwards the events of inner work to `outer`, each wrapped by `wrap` into the outer work's
/// event type.
pub fn forward<'a, E: Clone, O, T: Observer<O> + ?Sized>(
    outer: &'a mut T,
    wrap: impl Fn(E) -> O + 'a,
) -> impl FnMut(&E) + 'a {
    move |e: &E| outer.event(&wrap(e.clone()))
}
