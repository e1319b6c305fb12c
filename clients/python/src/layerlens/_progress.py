"""Progress of attributions: the watcher that reads AttributeStream's progress events.

Model.attribute(progress=True) runs over the daemon's AttributeStream, which sends
progress events while the passes run and ends with the same answer Attribute gives. The
stream is read by _generate.collect_stream, so interrupting the kernel (KeyboardInterrupt)
cancels the call and the daemon stops the work within one pass.

Most attributions end in well under a second; a progress line for each would only
clutter a notebook. The line appears once a job has run for DISPLAY_DELAY_S, and then
stays with its final state ("done", "cancelled") so the cell shows what happened.
"""

import time

from layerlens import _generate

# A progress display appears only for jobs that run longer than this.
DISPLAY_DELAY_S = 0.5
# The notebook line is redrawn at most this often (tqdm limits itself).
_MIN_REDRAW_INTERVAL_S = 0.1


class AttributeWatcher:
    """Receives AttributeStream progress events; `events` keeps every one (for callers
    and tests), and, when `show`, a notebook line or a terminal bar shows the latest."""

    name = "attribute"

    def __init__(self, show, method):
        self._show = bool(show)
        self._method = method
        self._started = time.monotonic()
        self._view = None
        self.events = []

    def on_progress(self, progress):
        self.events.append(progress)
        if not self._show:
            return
        if self._view is None:
            if time.monotonic() - self._started < DISPLAY_DELAY_S:
                return
            self._view = _open_view(f"{self.name} ({self._method})")
            if self._view is None:
                self._show = False
                return
        self._view.show(progress)

    def finish(self, outcome):
        if self._view is not None:
            self._view.close(outcome, self.events[-1] if self.events else None)


def describe(progress):
    """`1200/5000 rows · forward passes · pass 12/50 · 3.1 s` for one progress event."""
    parts = [f"{progress.rows_done}/{progress.rows_total} rows"]
    if progress.phase:
        parts.append(progress.phase)
    if progress.passes_total:
        parts.append(f"pass {progress.passes_done}/{progress.passes_total}")
    parts.append(f"{progress.elapsed_seconds:.1f} s")
    return " · ".join(parts)


def _open_view(name):
    """A notebook line under IPython's kernel, a tqdm bar on a terminal that has tqdm,
    otherwise None (nothing is shown)."""
    return _generate._open_progress_view(name, _NotebookView, _TqdmView)


class _NotebookView:
    """An output line that the running job redraws in place (an IPython display handle)."""

    def __init__(self, name):
        from IPython.display import display

        self.name = name
        self._drawn_at = 0.0
        self._handle = display(_generate._ProgressLine(f"{name}: running"), display_id=True)

    def show(self, progress):
        now = time.monotonic()
        if now - self._drawn_at < _MIN_REDRAW_INTERVAL_S:
            return
        self._drawn_at = now
        self._handle.update(_generate._ProgressLine(f"{self.name}: {_bar(progress)} {describe(progress)}"))

    def close(self, outcome, last):
        where = f" after {describe(last)}" if last is not None else ""
        self._handle.update(_generate._ProgressLine(f"{self.name}: {outcome}{where}"))


def _bar(progress, width=20):
    """A text bar of the current phase, e.g. `[######--------------]`."""
    fraction = progress.rows_done / progress.rows_total if progress.rows_total else 0.0
    filled = min(width, int(round(fraction * width)))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class _TqdmView:
    """A tqdm bar on stderr for terminals; it counts the current phase's rows."""

    def __init__(self, tqdm_class, name):
        self._bar = tqdm_class(desc=name, total=None, unit="rows", leave=False)

    def show(self, progress):
        if self._bar.total != progress.rows_total:
            self._bar.reset(total=progress.rows_total)
        self._bar.update(progress.rows_done - self._bar.n)
        self._bar.set_postfix_str(progress.phase, refresh=True)

    def close(self, outcome, last):
        self._bar.close()
