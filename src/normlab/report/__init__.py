"""Reports: figures, animations and a self-contained HTML page built from run directories only.

``write_report(paths, *, out)`` writes ``out/report.html``; ``normlab.report.tensorboard`` exports
a run as TensorBoard event files. Nothing here trains or evaluates a model.
"""

from normlab.report.report import write_report

__all__ = ["write_report"]
