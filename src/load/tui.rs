//! `fiblab load --tui`: a live view of a run, redrawn once a second: throughput and
//! p99 latency per request class as sparklines over the last minute, and the totals.
//! `q`, `Esc` or Ctrl-C stops the run early; the text report follows as usual.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::widgets::{Block, Paragraph, Sparkline};

use super::report::Report;
use super::{Hooks, LoadSpec, Tick, run as run_load};

/// Seconds of history on screen.
const HISTORY: usize = 60;

struct View {
    title: String,
    labels: Vec<String>,
    throughput: Vec<VecDeque<u64>>,
    p99: Vec<VecDeque<u64>>,
    last: Option<Tick>,
}

impl View {
    fn record(&mut self, tick: &Tick) {
        for (c, (&ok, &p99)) in tick.class_ok.iter().zip(&tick.class_p99_us).enumerate() {
            push_bounded(&mut self.throughput[c], ok);
            push_bounded(&mut self.p99[c], p99);
        }
        self.last = Some(tick.clone());
    }

    fn draw(&self, terminal: &mut DefaultTerminal) -> io::Result<()> {
        terminal.draw(|frame| {
            let classes = self.labels.len();
            let mut rows = vec![Constraint::Length(3)];
            rows.extend((0..classes * 2).map(|_| Constraint::Min(4)));
            let areas = Layout::vertical(rows).split(frame.area());
            let status = match &self.last {
                Some(t) => format!(
                    "second {}  {} req/s  {} errors   (q: stop)",
                    t.second + 1,
                    t.ok,
                    t.errors
                ),
                None => "warming up...   (q: stop)".to_string(),
            };
            frame.render_widget(
                Paragraph::new(status).block(Block::bordered().title(self.title.as_str())),
                areas[0],
            );
            for c in 0..classes {
                let ok: Vec<u64> = self.throughput[c].iter().copied().collect();
                let p99: Vec<u64> = self.p99[c].iter().copied().collect();
                let now_ok = ok.last().copied().unwrap_or(0);
                let now_p99 = p99.last().copied().unwrap_or(0);
                frame.render_widget(
                    Sparkline::default()
                        .block(
                            Block::bordered().title(format!("{}: {now_ok} req/s", self.labels[c])),
                        )
                        .data(&ok),
                    areas[1 + 2 * c],
                );
                frame.render_widget(
                    Sparkline::default()
                        .block(
                            Block::bordered()
                                .title(format!("{}: p99 {now_p99} µs", self.labels[c])),
                        )
                        .data(&p99),
                    areas[2 + 2 * c],
                );
            }
        })?;
        Ok(())
    }
}

fn push_bounded(series: &mut VecDeque<u64>, value: u64) {
    if series.len() == HISTORY {
        series.pop_front();
    }
    series.push_back(value);
}

/// Runs `spec` with the live view on the terminal, then restores the terminal.
pub fn run(spec: &LoadSpec, interrupt: Arc<AtomicBool>) -> io::Result<Report> {
    let classes = spec.mix.classes.len();
    let mut view = View {
        title: format!(
            " fiblab load {} ({} connections) ",
            spec.addr, spec.connections
        ),
        labels: spec.mix.classes.iter().map(|c| c.label.clone()).collect(),
        throughput: vec![VecDeque::new(); classes],
        p99: vec![VecDeque::new(); classes],
        last: None,
    };
    let mut terminal = ratatui::try_init()?;
    let mut failure = None;
    let _ = view.draw(&mut terminal);
    let result = {
        let mut on_second = |tick: &Tick| {
            view.record(tick);
            if let Err(e) = view.draw(&mut terminal) {
                failure.get_or_insert(e);
            }
        };
        let mut quit_key = || {
            matches!(event::poll(Duration::ZERO), Ok(true))
                && matches!(event::read(), Ok(Event::Key(k)) if k.code == KeyCode::Char('q')
                    || k.code == KeyCode::Esc
                    || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
        };
        run_load(
            spec,
            interrupt,
            Hooks {
                on_second: Some(&mut on_second),
                should_stop: Some(&mut quit_key),
                ..Hooks::default()
            },
        )
    };
    ratatui::try_restore()?;
    if let Some(e) = failure {
        return Err(e);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_keeps_one_minute_per_class() {
        let mut view = View {
            title: String::new(),
            labels: vec!["n=1".into(), "n=36".into()],
            throughput: vec![VecDeque::new(); 2],
            p99: vec![VecDeque::new(); 2],
            last: None,
        };
        for second in 0..100 {
            view.record(&Tick {
                second,
                ok: 10,
                errors: 0,
                class_ok: vec![9, 1],
                class_p99_us: vec![second, 7],
            });
        }
        assert_eq!(view.throughput[0].len(), HISTORY);
        assert_eq!(
            view.p99[0].front(),
            Some(&40),
            "the oldest second kept is 100 - 60"
        );
        assert_eq!(view.p99[1].back(), Some(&7));
        assert_eq!(view.last.as_ref().map(|t| t.second), Some(99));
    }
}
